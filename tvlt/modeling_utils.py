"""The ``transformers.PreTrainedModel`` surface that code written for the Hugging Face port uses beyond ``forward``.

:class:`HFModelMixin` gives the TVLT models the attributes and methods a user's script, ``transformers.Trainer``
and ``peft`` read from the port's classes (transformers 4.40): ``device``, ``dtype``, ``main_input_name``,
``base_model``, ``get_input_embeddings`` (the two patch projections), ``can_generate``,
``num_parameters``, gradient checkpointing with ``gradient_checkpointing_kwargs``, ``enable_input_require_grads``,
the ``_keys_to_ignore_on_*`` / ``_tied_weights_keys`` / ``_keep_in_fp32_modules`` class attributes, and
``save_pretrained`` / ``from_pretrained`` (the file formats and loading rules live in :mod:`tvlt.checkpoints`).
It holds no model code: the models stay in :mod:`tvlt.modeling`.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch
from torch import nn

from tvlt.layers import TvltDecoder, TvltEncoder


class HFModelMixin:
    """Mixed into :class:`tvlt.modeling.TvltPreTrainedModel` (an ``nn.Module`` with ``config`` and
    ``base_model_prefix``)."""

    main_input_name: ClassVar[str] = "pixel_values"  # first forward argument, as the port
    supports_gradient_checkpointing: ClassVar[bool] = True
    # TVLT has no tied weights, no keys to skip and no module kept in fp32 (all None, as in the port)
    _keys_to_ignore_on_load_missing: ClassVar[list[str] | None] = None
    _keys_to_ignore_on_load_unexpected: ClassVar[list[str] | None] = None
    _keys_to_ignore_on_save: ClassVar[list[str] | None] = None
    _tied_weights_keys: ClassVar[list[str] | None] = None
    _keep_in_fp32_modules: ClassVar[list[str] | None] = None
    _no_split_modules: ClassVar[list[str] | None] = None
    # attention: SDPA is the default here (the port has eager attention only, _supports_sdpa=False there)
    _supports_sdpa: ClassVar[bool] = True
    _supports_flash_attn_2: ClassVar[bool] = False
    is_parallelizable: ClassVar[bool] = False

    # ------------------------------------------------------------------ placement
    @property
    def device(self) -> torch.device:
        """Device of the first parameter."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the first floating-point parameter."""
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    @property
    def base_model(self) -> nn.Module:
        """The ``TvltModel`` inside a head model (``self.tvlt``), or the model itself."""
        return getattr(self, self.base_model_prefix, self)

    # ------------------------------------------------------------------ embeddings and generation
    def get_input_embeddings(self) -> tuple[nn.Module, nn.Module]:
        """The pixel and audio patch projections (Conv2d), as the port returns them."""
        base = self.base_model
        return base.pixel_embeddings.patch_embeddings, base.audio_embeddings.patch_embeddings

    def get_output_embeddings(self) -> None:
        """TVLT has no output embedding matrix."""
        return None

    def tie_weights(self) -> None:
        """Nothing to tie (kept for callers that always call it)."""

    @classmethod
    def can_generate(cls) -> bool:
        """TVLT has no ``generate``."""
        return False

    def enable_input_require_grads(self) -> None:
        """Make the patch-embedding outputs require grad, so reentrant gradient checkpointing with a frozen base
        (e.g. a LoRA fine-tune) still has a graph; as ``PreTrainedModel.enable_input_require_grads``."""
        def make_outputs_require_grad(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            output.requires_grad_(True)

        self._require_grads_hooks = [m.register_forward_hook(make_outputs_require_grad)
                                     for m in self.get_input_embeddings()]

    def disable_input_require_grads(self) -> None:
        for hook in getattr(self, "_require_grads_hooks", []):
            hook.remove()
        self._require_grads_hooks = []

    # ------------------------------------------------------------------ parameters
    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Number of parameters (``only_trainable``: those with ``requires_grad``). ``exclude_embeddings`` drops
        ``nn.Embedding`` weights, as the port; TVLT has none (its patch projections are convolutions)."""
        excluded = set()
        if exclude_embeddings:
            excluded = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        return sum(p.numel() for p in self.parameters()
                   if (p.requires_grad or not only_trainable) and id(p) not in excluded)

    # ------------------------------------------------------------------ gradient checkpointing
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Recompute encoder and decoder layers in backward. ``gradient_checkpointing_kwargs`` go to
        ``torch.utils.checkpoint.checkpoint`` (default ``{"use_reentrant": False}``; with ``use_reentrant=True`` and
        a frozen base, call :meth:`enable_input_require_grads`)."""
        kwargs = {"use_reentrant": False, **(gradient_checkpointing_kwargs or {})}
        for module in self.modules():
            if isinstance(module, (TvltEncoder, TvltDecoder)):
                module.gradient_checkpointing = True
                module.checkpoint_kwargs = kwargs

    def gradient_checkpointing_disable(self) -> None:
        for module in self.modules():
            if isinstance(module, (TvltEncoder, TvltDecoder)):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules()
                   if isinstance(m, (TvltEncoder, TvltDecoder)))

    def _apply_config_gradient_checkpointing(self) -> None:
        """Old configs carry ``gradient_checkpointing=True``; the port turns it on at init and drops the key."""
        if getattr(self.config, "gradient_checkpointing", False):
            self.gradient_checkpointing_enable()
            delattr(self.config, "gradient_checkpointing")

    # ------------------------------------------------------------------ files
    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True,
                        state_dict: dict[str, torch.Tensor] | None = None, safe_serialization: bool = True,
                        **kwargs: Any) -> None:
        """Write ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``); see
        :func:`tvlt.checkpoints.save_pretrained`. Raises ``TypeError`` naming options that are not supported
        (``push_to_hub``, sharding, variants)."""
        from tvlt.checkpoints import save_pretrained

        if kwargs:
            raise TypeError(f"{type(self).__name__}.save_pretrained: unsupported option(s) {sorted(kwargs)}")
        if is_main_process:
            save_pretrained(self, save_directory, safe_serialization=safe_serialization, state_dict=state_dict)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args: Any,
                        **kwargs: Any):
        """Build the model from a local directory (``config.json`` + weights), a checkpoint file, or
        ``None`` with ``config=`` and ``state_dict=``; see :func:`tvlt.checkpoints.from_pretrained` for the options
        (``torch_dtype``, ``output_loading_info``, ``subfolder``, ``ignore_mismatched_sizes``, config overrides)."""
        from tvlt.checkpoints import from_pretrained

        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained: positional model arguments are not supported "
                            f"(got {len(model_args)})")
        return from_pretrained(cls, pretrained_model_name_or_path, **kwargs)
