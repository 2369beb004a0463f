"""TvltConfig: the fields, defaults and validation of the TVLT architecture, saved as ``config.json``.

Fields and defaults follow the Hugging Face port (transformers <= 4.40.2, ``model_type="tvlt"``), so a
``config.json`` written by that port loads here and vice versa. Extra fields of this project:

- ``num_labels`` (default 2, the ``PretrainedConfig`` default the port inherits), kept in step with
  ``id2label`` / ``label2id`` as in ``PretrainedConfig``;
- ``classifier_pooler`` (default False): the original release's fine-tuning head layout
  (pooler dense + tanh on CLS, then the MLP), needed to load ``TVLT-MOSEI-SA``-style checkpoints;
- ``attn_implementation`` ("sdpa" or "eager"): fused ``scaled_dot_product_attention`` or plain math
  (identical semantics; "eager" is used automatically when attention weights are requested).

Keyword policy (the port's): the generic ``PretrainedConfig`` fields (``torchscript``, ``torch_dtype``,
``architectures``, ``problem_type``, ``is_encoder_decoder``, ...) are attributes with the port's defaults; any
other unknown key is stored as an attribute too (users keep their own fields in configs, other tools write extra
keys) and logged once by name. The framework's Hydra layer (``tvlt.lit``) stays strict: it checks its keys with
:meth:`TvltConfig.check_known_keys` first, so a typo in YAML is an error naming the key.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from tvlt.activations import ACTIVATIONS

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"

# The generic ``PretrainedConfig`` fields (transformers 4.40) every config carries, with the port's defaults. They
# are plain attributes; only return_dict / output_* / torchscript / torch_dtype / id2label change behaviour here.
GENERIC_DEFAULTS: dict[str, Any] = {
    "torchscript": False, "torch_dtype": None, "use_bfloat16": False, "tf_legacy_loss": False, "pruned_heads": {},
    "tie_word_embeddings": True, "chunk_size_feed_forward": 0, "is_encoder_decoder": False, "is_decoder": False,
    "cross_attention_hidden_size": None, "add_cross_attention": False, "tie_encoder_decoder": False,
    "architectures": None, "finetuning_task": None, "tokenizer_class": None, "prefix": None, "bos_token_id": None,
    "pad_token_id": None, "eos_token_id": None, "sep_token_id": None, "decoder_start_token_id": None,
    "task_specific_params": None, "problem_type": None,
}
# Bookkeeping keys transformers writes or passes; read and dropped (``_name_or_path`` is kept as ``name_or_path``).
_BOOKKEEPING_KEYS = frozenset({"transformers_version", "model_type", "_commit_hash", "_name_or_path", "name_or_path",
                               "_attn_implementation", "_attn_implementation_internal", "id2label", "label2id"})
_logged_unknown: set[str] = set()  # unknown keys already reported in this process (each is logged once)

# Keys a Hugging Face ``PretrainedConfig`` knows besides the model's own fields (generic fields, generation
# defaults, bookkeeping): stored without a log line.
HF_STANDARD_KEYS = frozenset(
    """return_dict output_hidden_states output_attentions torchscript torch_dtype use_bfloat16 tf_legacy_loss
    pruned_heads tie_word_embeddings chunk_size_feed_forward is_encoder_decoder is_decoder
    cross_attention_hidden_size add_cross_attention tie_encoder_decoder max_length min_length do_sample
    early_stopping num_beams num_beam_groups diversity_penalty temperature top_k top_p typical_p
    repetition_penalty length_penalty no_repeat_ngram_size encoder_no_repeat_ngram_size bad_words_ids
    num_return_sequences output_scores return_dict_in_generate forced_bos_token_id forced_eos_token_id
    remove_invalid_values exponential_decay_length_penalty suppress_tokens begin_suppress_tokens architectures
    finetuning_task id2label label2id tokenizer_class prefix bos_token_id pad_token_id eos_token_id
    sep_token_id decoder_start_token_id task_specific_params problem_type _name_or_path transformers_version
    model_type _attn_implementation _commit_hash gradient_checkpointing""".split()
)

_AUDIO_MASK_TYPES = {"frame-level": "frame-level", "frame_level": "frame-level",
                     "patch-level": "patch-level", "patch_level": "patch-level"}
# "classification" and "regression" are the port's (its losses: CrossEntropyLoss, MSELoss); the multi-label BCE
# is this project's addition, named as PretrainedConfig.problem_type names it.
LOSS_TYPES = ("classification", "regression", "multi_label_classification")


class TvltConfig:
    """Configuration of a TVLT model (encoder, MAE decoder, heads).

    Args mirror the Hugging Face port; see ``docs/model.md`` for the meaning of each. Sizes are in pixels
    (``image_size``, ``image_patch_size``) or spectrogram bins (``spectrogram_length`` time frames at
    ~86.13 frames/s, ``frequency_length`` mel bins).

    Any other keyword is stored as an attribute (generic ``PretrainedConfig`` fields with the port's defaults;
    keys the model does not know are logged once by name), as the port does.

    Raises:
        ValueError: a field has a bad value (the message names it), ``model_type`` is not "tvlt", or ``num_labels``
            contradicts a non-default ``id2label``.
    """

    model_type = "tvlt"
    is_composition = False  # PretrainedConfig's flag for configs built from sub-configs

    def __init__(
        self,
        image_size: int = 224,
        spectrogram_length: int = 2048,
        frequency_length: int = 128,
        image_patch_size: list[int] | tuple[int, int] = (16, 16),
        audio_patch_size: list[int] | tuple[int, int] = (16, 16),
        num_image_channels: int = 3,
        num_audio_channels: int = 1,
        num_frames: int = 8,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-6,
        qkv_bias: bool = True,
        use_mean_pooling: bool = False,
        decoder_num_attention_heads: int = 16,
        decoder_hidden_size: int = 512,
        decoder_num_hidden_layers: int = 8,
        decoder_intermediate_size: int = 2048,
        pixel_mask_ratio: float = 0.75,
        audio_mask_ratio: float = 0.15,
        audio_mask_type: str = "frame-level",
        task_matching: bool = True,
        task_mae: bool = True,
        loss_type: str = "classification",
        num_labels: int | None = None,
        classifier_pooler: bool = False,
        attn_implementation: str = "sdpa",
        return_dict: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        **kwargs: Any,
    ) -> None:
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        # HF stores its attention choice under a private key; honour it only if it names one we have.
        hf_attn = kwargs.pop("_attn_implementation", None)
        self.name_or_path = str(kwargs.pop("_name_or_path", kwargs.pop("name_or_path", "")))
        if kwargs.get("model_type", "tvlt") != "tvlt":
            raise ValueError(f"TvltConfig: model_type must be 'tvlt', got {kwargs['model_type']!r}")
        for key in _BOOKKEEPING_KEYS:
            kwargs.pop(key, None)
        for key, default in GENERIC_DEFAULTS.items():
            setattr(self, key, copy.deepcopy(kwargs.pop(key, default)))
        self.torch_dtype = _as_torch_dtype(self.torch_dtype)
        unknown = sorted(k for k in kwargs if k not in HF_STANDARD_KEYS and k not in _logged_unknown)
        if unknown:
            _logged_unknown.update(unknown)
            logger.warning("TvltConfig: storing key(s) the model does not use: %s", unknown)
        self._extra_keys = sorted(kwargs)
        for key, value in kwargs.items():  # unknown and generation keys: kept as attributes, as PretrainedConfig
            setattr(self, key, value)

        self.image_size = image_size
        self.spectrogram_length = spectrogram_length
        self.frequency_length = frequency_length
        self.image_patch_size = list(image_patch_size)
        self.audio_patch_size = list(audio_patch_size)
        self.num_image_channels = num_image_channels
        self.num_audio_channels = num_audio_channels
        self.num_frames = num_frames
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.qkv_bias = qkv_bias
        self.use_mean_pooling = use_mean_pooling
        self.decoder_num_attention_heads = decoder_num_attention_heads
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_hidden_layers = decoder_num_hidden_layers
        self.decoder_intermediate_size = decoder_intermediate_size
        self.pixel_mask_ratio = pixel_mask_ratio
        self.audio_mask_ratio = audio_mask_ratio
        self.audio_mask_type = _AUDIO_MASK_TYPES.get(audio_mask_type, audio_mask_type)
        self.task_matching = task_matching
        self.task_mae = task_mae
        self.loss_type = loss_type
        self.id2label, self.label2id = _label_maps(num_labels, id2label, label2id)
        self.classifier_pooler = classifier_pooler
        if attn_implementation == "sdpa" and hf_attn == "eager":
            attn_implementation = "eager"
        self.attn_implementation = attn_implementation
        self.return_dict = return_dict
        self.output_attentions = output_attentions
        self.output_hidden_states = output_hidden_states
        self.validate()

    # ------------------------------------------------------------------ validation
    @classmethod
    def field_names(cls) -> list[str]:
        import inspect

        return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the first bad one."""

        def fail(field: str, msg: str) -> None:
            raise ValueError(f"TvltConfig.{field}: {msg} (got {getattr(self, field)!r})")

        for field in ("image_size", "spectrogram_length", "frequency_length", "num_image_channels",
                      "num_audio_channels", "num_frames", "hidden_size", "num_hidden_layers",
                      "num_attention_heads", "intermediate_size", "decoder_num_attention_heads",
                      "decoder_hidden_size", "decoder_num_hidden_layers", "decoder_intermediate_size",
                      "num_labels"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(field, "must be a positive integer")
        for field in ("image_patch_size", "audio_patch_size"):
            value = getattr(self, field)
            if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
                fail(field, "must be two positive integers [height, width]")
        ph, pw = self.image_patch_size
        if self.image_size % ph or self.image_size % pw:
            fail("image_patch_size", f"must divide image_size={self.image_size}")
        th, fw = self.audio_patch_size
        if self.spectrogram_length % th:
            fail("audio_patch_size", f"time size must divide spectrogram_length={self.spectrogram_length}")
        if self.frequency_length % fw:
            fail("audio_patch_size", f"frequency size must divide frequency_length={self.frequency_length}")
        if self.hidden_size % self.num_attention_heads:
            fail("hidden_size", f"must be divisible by num_attention_heads={self.num_attention_heads}")
        if self.decoder_hidden_size % self.decoder_num_attention_heads:
            fail("decoder_hidden_size",
                 f"must be divisible by decoder_num_attention_heads={self.decoder_num_attention_heads}")
        for field in ("pixel_mask_ratio", "audio_mask_ratio"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                fail(field, "must be in [0, 1)")
        for field in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                fail(field, "must be in [0, 1)")
        for field in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or value <= 0:
                fail(field, "must be a positive number")
        if self.audio_mask_type not in ("frame-level", "patch-level"):
            fail("audio_mask_type", "must be 'frame-level' or 'patch-level' ('patch_level' is also accepted)")
        if self.hidden_act not in ACTIVATIONS:
            fail("hidden_act", f"must be one of {sorted(ACTIVATIONS)}")
        if self.loss_type not in LOSS_TYPES:
            fail("loss_type", f"must be one of {LOSS_TYPES}")
        if self.attn_implementation not in ("sdpa", "eager"):
            fail("attn_implementation", "must be 'sdpa' or 'eager'")
        for field in ("qkv_bias", "use_mean_pooling", "task_matching", "task_mae", "classifier_pooler",
                      "return_dict", "output_attentions", "output_hidden_states"):
            if not isinstance(getattr(self, field), bool):
                fail(field, "must be a bool")

    # ------------------------------------------------------------------ derived sizes
    @property
    def num_patches_per_frame(self) -> int:
        """Patches of one video frame: (image_size / patch_h) * (image_size / patch_w), 196 by default."""
        return (self.image_size // self.image_patch_size[0]) * (self.image_size // self.image_patch_size[1])

    @property
    def num_freq_patches(self) -> int:
        """Audio patches along frequency: frequency_length / patch_w, 8 by default."""
        return self.frequency_length // self.audio_patch_size[1]

    @property
    def max_audio_time_patches(self) -> int:
        """Rows of the audio position table: spectrogram_length / patch_h, 128 by default."""
        return self.spectrogram_length // self.audio_patch_size[0]

    @property
    def num_labels(self) -> int:
        """Number of classifier outputs: ``len(id2label)``. Setting it rebuilds ``id2label`` / ``label2id`` with
        ``LABEL_i`` names when the count changes (as ``PretrainedConfig``)."""
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        if value != len(getattr(self, "id2label", None) or {}):
            self.id2label, self.label2id = _label_maps(value, None, None)

    @property
    def use_return_dict(self) -> bool:
        """Default of ``return_dict`` in forward: ``return_dict`` unless ``torchscript`` (as ``PretrainedConfig``)."""
        return self.return_dict and not self.torchscript

    @classmethod
    def known_keys(cls) -> frozenset[str]:
        """The model's own fields and the generic ``PretrainedConfig`` keys."""
        return frozenset(cls.field_names()) | HF_STANDARD_KEYS

    @classmethod
    def check_known_keys(cls, keys: Any, where: str = "TvltConfig") -> None:
        """Strict key check for callers that want it (the Hydra layer): raise ``ValueError`` naming every key that
        is neither a TVLT field nor a generic ``PretrainedConfig`` key."""
        unknown = sorted(set(keys) - cls.known_keys())
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known fields: {sorted(cls.field_names())}")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """All fields, the generic ``PretrainedConfig`` fields, stored extra keys and ``model_type``; JSON-ready
        (``torch_dtype`` as its name, e.g. "float16")."""
        out = {name: copy.deepcopy(getattr(self, name)) for name in self.field_names()}
        for name in GENERIC_DEFAULTS:
            out[name] = copy.deepcopy(getattr(self, name))
        out["torch_dtype"] = _dtype_name(self.torch_dtype)
        out["id2label"] = {int(k): v for k, v in self.id2label.items()}
        out["label2id"] = dict(self.label2id)
        for name in self._extra_keys:
            if hasattr(self, name):
                out[name] = copy.deepcopy(getattr(self, name))
        out["model_type"] = self.model_type
        return out

    def to_json_string(self, use_diff: bool = True) -> str:
        """``to_dict()`` as indented JSON. ``use_diff`` is accepted for the port's signature; the whole config is
        always written (one format to read back)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        Path(json_file_path).write_text(self.to_json_string(use_diff))

    def update(self, config_dict: dict[str, Any]) -> None:
        """Set attributes from a dict, as ``PretrainedConfig.update`` (no validation until the model is built)."""
        for key, value in config_dict.items():
            setattr(self, key, value)
            if key not in self.known_keys() and key not in self._extra_keys:
                self._extra_keys = sorted({*self._extra_keys, key})

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> "TvltConfig":
        """Build from a dict; ``kwargs`` override it. ``return_unused_kwargs=True`` returns ``(config, {})`` (every
        key is used or stored), as the port's signature allows."""
        return_unused = kwargs.pop("return_unused_kwargs", False)
        config = cls(**{**config_dict, **kwargs})
        return (config, {}) if return_unused else config

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike, **overrides: Any) -> "TvltConfig":
        path = Path(json_file)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read TVLT config {path}: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"TVLT config {path} must hold a JSON object")
        try:
            return cls.from_dict(data, **overrides)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> Path:
        """Write ``config.json`` into ``save_directory`` (created); returns its path. ``push_to_hub=True`` raises
        ``NotImplementedError`` (nothing is uploaded)."""
        if kwargs.pop("push_to_hub", False):
            raise NotImplementedError("TvltConfig.save_pretrained: push_to_hub is not supported (nothing is uploaded)")
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / CONFIG_NAME
        self.to_json_file(path)
        return path

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, subfolder: str = "",
                        **overrides: Any) -> "TvltConfig":
        """Read ``config.json`` from a directory (``subfolder`` inside it, as the port) or the json file itself,
        either local or a Hugging Face Hub name (:func:`tvlt.hub.resolve`, which takes ``cache_dir``, ``revision``,
        ``token``, ``local_files_only``, ``force_download``); ``overrides`` win.

        Raises:
            FileNotFoundError (an ``OSError``, as the port raises): no config at the path, or a Hub name that
            cannot be resolved.
        """
        from tvlt.hub import HUB_OPTIONS, resolve

        overrides.pop("return_unused_kwargs", None)
        hub = {key: overrides.pop(key) for key in HUB_OPTIONS if key in overrides}
        for key in ("resume_download", "proxies", "trust_remote_code", "_from_auto", "_from_pipeline",
                    "_commit_hash"):
            overrides.pop(key, None)  # the port's loader bookkeeping: no effect here
        path = resolve(pretrained_model_name_or_path, subfolder, **hub)
        if subfolder:
            path = path / subfolder
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no TVLT config at {path} (a directory or config.json is needed, local or "
                                    "a Hub name owner/name)")
        config = cls.from_json_file(path, **overrides)
        config.name_or_path = str(pretrained_model_name_or_path)
        return config

    def __deepcopy__(self, memo: dict[int, Any]) -> "TvltConfig":
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            setattr(new, key, value if isinstance(value, torch.dtype) else copy.deepcopy(value, memo))
        return new

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TvltConfig) and self.to_dict() == other.to_dict()

    __hash__ = None  # mutable, compared by value

    def __repr__(self) -> str:
        return f"TvltConfig {self.to_json_string()}"


def _label_maps(num_labels: int | None, id2label: dict | None, label2id: dict | None
                ) -> tuple[dict[int, str], dict[str, int]]:
    """``(id2label, label2id)`` as ``PretrainedConfig`` builds them: from ``id2label`` (keys made ints), else
    ``LABEL_i`` names for ``num_labels`` (default 2). A ``num_labels`` that contradicts an ``id2label`` with its own
    names raises; one that differs from a default ``LABEL_i`` map replaces it (``{**config.to_dict(),
    "num_labels": 3}`` builds a 3-label config)."""
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1):
        raise ValueError(f"TvltConfig.num_labels: must be a positive integer (got {num_labels!r})")
    if id2label:
        id2label = {int(k): v for k, v in id2label.items()}
        default_names = all(v == f"LABEL_{k}" for k, v in id2label.items())
        if num_labels is None or num_labels == len(id2label):
            label2id = dict(label2id) if label2id else {v: k for k, v in id2label.items()}
            return id2label, label2id
        if not default_names:
            raise ValueError(f"TvltConfig.num_labels: {num_labels} contradicts id2label with {len(id2label)} "
                             f"names {sorted(id2label.values())}")
    count = 2 if num_labels is None else num_labels
    id2label = {i: f"LABEL_{i}" for i in range(count)}
    return id2label, {v: k for k, v in id2label.items()}


def _as_torch_dtype(value: Any) -> Any:
    """"float16" / "torch.float16" / torch.float16 -> torch.float16; None and "auto" stay as given."""
    if value is None or value == "auto" or isinstance(value, torch.dtype):
        return value
    dtype = getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"TvltConfig.torch_dtype: not a torch dtype (got {value!r})")
    return dtype


def _dtype_name(value: Any) -> Any:
    return str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else value
