"""Saving and loading TVLT weights: Hugging Face format, the original release, Lightning checkpoints.

Checkpoints from elsewhere are untrusted: files are read with safetensors or ``torch.load(weights_only=True)``.

Formats recognised by :func:`load_checkpoint`:

- **Hugging Face port** (``model.safetensors`` / ``pytorch_model.bin``): keys as in ``TvltModel`` (bare) or a head
  model (``tvlt.`` prefix). Either loads into any of the three classes; the prefix is added or removed as needed.
- **Original TVLT release** (``TVLT.ckpt``, ``TVLT-MOSEI-SA.ckpt``; REFERENCE B.8): timm-style names
  (``blocks.N.attn.qkv``, ``patch_embed_v.proj``, ``decoder_blocks``, ``mae_score_video``, ``matching_score``,
  ``classifier.{0.dense,1,2,4}``) converted by :func:`convert_original_state_dict`: the fused qkv projection is
  split into query/key/value and the 1020-row audio position tables and 64-row temporal tables are sliced to the
  configured sizes (logged). The fine-tuned head needs ``TvltConfig(classifier_pooler=True)``.
- **Lightning checkpoints**: the ``state_dict`` entry is used and wrapper prefixes ``model.``, ``module.``,
  ``transformer.`` (and ``_orig_mod.`` from torch.compile) are stripped.

Rules: every encoder weight (everything of the base ``TvltModel``) must be present with the right shape, else a
ValueError lists the offending keys and shapes. Head weights the target has but the file lacks keep their fresh
initialisation; weights the target has no place for are ignored. Both are logged and returned in a
:class:`LoadReport`.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from tvlt.configuration import CONFIG_NAME, TvltConfig
from tvlt.hub import resolve

logger = logging.getLogger(__name__)

SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
WRAPPER_PREFIXES = ("model.", "module.", "transformer.", "_orig_mod.")
BASE_PREFIX = "tvlt."


@dataclass
class LoadReport:
    """What a load did. ``loaded``: target keys filled from the file; ``newly_initialized``: head keys the file
    lacked or had with another shape (fresh init kept); ``ignored``: file keys with no place in the target;
    ``notes``: conversions made; ``mismatched``: ``(key, file shape, model shape)`` of re-initialised heads."""

    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    newly_initialized: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def loading_info(self) -> dict[str, list]:
        """The port's ``output_loading_info`` dict: missing / unexpected / mismatched keys and error messages."""
        return {"missing_keys": list(self.newly_initialized), "unexpected_keys": list(self.ignored),
                "mismatched_keys": list(self.mismatched), "error_msgs": []}

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.source} ({self.format} format)"]
        lines += [f"  note: {n}" for n in self.notes]
        if self.newly_initialized:
            lines.append(f"  newly initialised (not in the file): {self.newly_initialized}")
        if self.ignored:
            lines.append(f"  ignored (no place in the model): {self.ignored}")
        return "\n".join(lines)

    __str__ = summary


# ------------------------------------------------------------------------------------------------ file reading
class CheckpointError(ValueError):
    """``ckpt_path`` is missing, not a PyTorch checkpoint, or holds objects that ``weights_only=True`` refuses;
    the message names the file."""


def read_checkpoint(path: str | Path, map_location: str = "cpu", mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file. Checks first that the file exists
    and is a PyTorch zip checkpoint (what ``torch.save`` and Lightning write). Checkpoints are treated as untrusted:
    a file that ``weights_only`` refuses is reported, never loaded another way.

    Raises:
        CheckpointError: missing file, not a checkpoint, or unreadable with ``weights_only=True``.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint is not a file: {p}")
    if not zipfile.is_zipfile(p):
        raise CheckpointError(f"{p}: not a PyTorch checkpoint (a .ckpt/.pt file written by torch.save or Lightning "
                              "is a zip archive; this one is not: corrupt, truncated or another format)")
    try:
        return torch.load(p, map_location=map_location, weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, AttributeError, ValueError) as err:
        # torch's weights_only message suggests weights_only=False: not for files of unknown origin
        reason = (str(err).split("WeightsUnpickler error:")[-1].strip().splitlines() or [""])[0].split(". ")[0]
        if "weights_only" in reason or "trust" in reason:
            reason = ""
        raise CheckpointError(f"{p}: cannot be read as a checkpoint with weights_only=True ({type(err).__name__}"
                              f"{': ' + reason if reason else ''}). It is corrupt or holds objects other than "
                              "tensors and plain containers; it was not loaded.") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read tensors from a ``.safetensors`` file or a torch checkpoint (:func:`read_checkpoint`); unwrap a Lightning
    checkpoint's ``state_dict``. Raises FileNotFoundError, or ValueError (:class:`CheckpointError` for a torch file)
    naming the file if it cannot be read."""
    path = Path(path)
    if path.is_dir():
        path = weights_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own error types; name the file in ours
            raise ValueError(f"cannot read safetensors checkpoint {path}: {err}") from err
    return unwrap_state_dict(read_checkpoint(path), str(path))


def unwrap_state_dict(obj: Any, source: str = "<object>") -> dict[str, torch.Tensor]:
    """Return the tensor dict inside a checkpoint object (plain dict, or Lightning's ``{"state_dict": ...}``)."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ValueError(f"{source}: no state dict found (expected a dict of tensors or a Lightning checkpoint)")


def weights_file(directory: Path) -> Path:
    for name in (SAFETENSORS_NAME, PYTORCH_NAME):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no {SAFETENSORS_NAME} or {PYTORCH_NAME} in {directory}")


def strip_wrapper_prefixes(state_dict: dict[str, torch.Tensor], notes: list[str] | None = None
                           ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Strip ``model.`` / ``module.`` / ``transformer.`` / ``_orig_mod.`` when most keys carry them.

    Returns the stripped dict and the keys dropped because they lacked the prefix (e.g. a Lightning module's
    metric buffers)."""
    dropped: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            hits = [k for k in state_dict if k.startswith(prefix)]
            if hits and len(hits) * 2 > len(state_dict):
                dropped += [k for k in state_dict if not k.startswith(prefix)]
                state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
                if notes is not None:
                    notes.append(f"stripped prefix {prefix!r}")
                changed = True
    return state_dict, dropped


# ------------------------------------------------------------------------------------- original release format
def is_original_format(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k == "cls_token" or k.startswith(("blocks.", "patch_embed_v.", "patch_embed_a.")) for k in state_dict)


_LAYER_PARTS = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_RENAMES = {
    "cls_token": "tvlt.cls_embedding",
    "patch_embed_v.proj": "tvlt.pixel_embeddings.patch_embeddings.projection",
    "pos_embed_v": "tvlt.pixel_embeddings.pos_embed_v",
    "temporal_embed": "tvlt.pixel_embeddings.temporal_embed",
    "type_embed_v": "tvlt.pixel_embeddings.type_embed_v",
    "patch_embed_a.proj": "tvlt.audio_embeddings.patch_embeddings.projection",
    "pos_embed_a": "tvlt.audio_embeddings.pos_embed_a",
    "freq_embed": "tvlt.audio_embeddings.freq_embed",
    "type_embed_a": "tvlt.audio_embeddings.type_embed_a",
    "norm": "tvlt.layernorm",
    "decoder_embed": "encoder_to_decoder",
    "decoder_norm": "decoder.layernorm",
    "mask_token_v": "pixel_mask_token",
    "mask_token_a": "audio_mask_token",
    "decoder_pos_embed_v": "decoder_pixel_pos_embed",
    "decoder_pos_embed_a": "decoder_audio_pos_embed",
    "decoder_temporal_embed": "decoder_temporal_embed",
    "decoder_freq_embed": "decoder_freq_embed",
    "decoder_type_embed_v": "decoder_pixel_type_embed",
    "decoder_type_embed_a": "decoder_audio_type_embed",
    "mae_score_video": "pixel_mae_head",
    "mae_score_audio": "audio_mae_head",
    "matching_score": "matching_head",
    "classifier": "classifier",
}
# tables with more rows in the original release than the HF layout: new key -> config attribute giving rows
_SLICED_TABLES = {
    "tvlt.audio_embeddings.pos_embed_a": "max_audio_time_patches",
    "decoder_audio_pos_embed": "max_audio_time_patches",
    "tvlt.pixel_embeddings.temporal_embed": "num_frames",
    "decoder_temporal_embed": "num_frames",
}
_BLOCK = re.compile(r"^(blocks|decoder_blocks)\.(\d+)\.(.+)\.(weight|bias)$")


def convert_original_state_dict(state_dict: Mapping[str, torch.Tensor], config: TvltConfig | None = None,
                                notes: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Original TVLT release keys -> Hugging Face port keys (head-model layout, ``tvlt.`` prefix).

    Splits ``attn.qkv`` (3D, D) into query/key/value; slices ``pos_embed_a``/``decoder_pos_embed_a`` (1020 rows)
    to ``config.max_audio_time_patches`` and ``temporal_embed``/``decoder_temporal_embed`` (64 rows) to
    ``config.num_frames`` (defaults: 128 and 8), appending a message per slice to ``notes``.

    Raises ValueError naming keys it cannot map or tables with fewer rows than the config needs.
    """
    config = config or TvltConfig()
    notes = notes if notes is not None else []
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        match = _BLOCK.match(key)
        if match:
            stack, index, part, kind = match.groups()
            base = (f"tvlt.encoder.layer.{index}" if stack == "blocks" else f"decoder.decoder_layers.{index}")
            if part == "attn.qkv":
                for name, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                    out[f"{base}.attention.attention.{name}.{kind}"] = chunk.clone()
                continue
            if part in _LAYER_PARTS:
                out[f"{base}.{_LAYER_PARTS[part]}.{kind}"] = value
                continue
            unknown.append(key)
            continue
        head = key.split(".", 1)[0]
        for old in (key, head, ".".join(key.split(".")[:2])):
            if old in _RENAMES:
                suffix = key[len(old):]
                out[_RENAMES[old] + suffix] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"original-format checkpoint has keys this converter cannot map: {sorted(unknown)}")
    for key, attr in _SLICED_TABLES.items():
        if key in out:
            rows = getattr(config, attr)
            have = out[key].shape[1]
            if have < rows:
                raise ValueError(f"{key}: checkpoint table has {have} rows, config.{attr} needs {rows}")
            if have > rows:
                out[key] = out[key][:, :rows].clone()
                notes.append(f"{key}: sliced {have} -> {rows} rows (config.{attr})")
    for note in notes:
        logger.info("convert_original_state_dict: %s", note)
    return out


# --------------------------------------------------------------------------------------------- loading rules
def _base_prefix(model: nn.Module) -> str:
    """'tvlt.' for head models, '' for TvltModel."""
    return BASE_PREFIX if isinstance(getattr(model, "tvlt", None), nn.Module) else ""


def _align_base_prefix(state_dict: dict[str, torch.Tensor], prefix: str, notes: list[str]) -> dict[str, torch.Tensor]:
    has_prefixed = any(k.startswith(BASE_PREFIX) for k in state_dict)
    if prefix and not has_prefixed and "cls_embedding" in state_dict:
        notes.append("added prefix 'tvlt.' (bare TvltModel weights into a head model)")
        return {BASE_PREFIX + k: v for k, v in state_dict.items()}
    if not prefix and has_prefixed:
        notes.append("removed prefix 'tvlt.' (head-model weights into TvltModel; heads ignored)")
        return {(k[len(BASE_PREFIX):] if k.startswith(BASE_PREFIX) else "__head__." + k): v
                for k, v in state_dict.items()}
    return state_dict


def load_state_dict_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "<state_dict>",
                         format: str = "hf", notes: list[str] | None = None,
                         ignore_mismatched_heads: bool = False) -> LoadReport:
    """Load HF-format weights into ``model`` under this project's rules (see the module docstring).

    Raises ValueError listing every missing or mis-shaped encoder key (with shapes), every mis-shaped head key
    (unless ``ignore_mismatched_heads``, which keeps their fresh initialisation), or a fine-tuned original head
    that needs ``classifier_pooler=True``.
    """
    notes = list(notes or [])
    prefix = _base_prefix(model)
    source_sd = _align_base_prefix(dict(state_dict), prefix, notes)
    target = model.state_dict()
    is_encoder = (lambda k: k.startswith(prefix)) if prefix else (lambda k: True)

    if "classifier.0.dense.weight" in source_sd and "classifier.0.dense.weight" not in target \
            and any(k.startswith("classifier.") for k in target):
        raise ValueError(f"{source}: the checkpoint holds the original release's classifier head (pooler + MLP, "
                         "classifier.{0.dense,1,2,4}); build the model with TvltConfig(classifier_pooler=True)")

    missing = [k for k in target if k not in source_sd]
    mismatched = [k for k in target if k in source_sd and tuple(source_sd[k].shape) != tuple(target[k].shape)]
    bad_encoder = [k for k in missing + mismatched if is_encoder(k)]
    if bad_encoder:
        details = [f"{k}: expected {tuple(target[k].shape)}, "
                   + (f"file has {tuple(source_sd[k].shape)}" if k in source_sd else "missing in file")
                   for k in bad_encoder]
        raise ValueError(f"{source}: encoder weights missing or mis-shaped ({len(details)}):\n  "
                         + "\n  ".join(details))
    bad_heads = [k for k in mismatched if not is_encoder(k)]
    if bad_heads and not ignore_mismatched_heads:
        details = [f"{k}: expected {tuple(target[k].shape)}, file has {tuple(source_sd[k].shape)}" for k in bad_heads]
        raise ValueError(f"{source}: head weights mis-shaped (pass ignore_mismatched_heads=True to re-initialise "
                         f"them):\n  " + "\n  ".join(details))

    usable = {k: v for k, v in source_sd.items() if k in target and k not in bad_heads}
    model.load_state_dict(usable, strict=False)
    report = LoadReport(
        source=source,
        format=format,
        loaded=sorted(usable),
        newly_initialized=sorted([k for k in missing if not is_encoder(k)] + bad_heads),
        ignored=sorted(k.removeprefix("__head__.") for k in source_sd if k not in target),
        notes=notes,
        mismatched=[(k, tuple(source_sd[k].shape), tuple(target[k].shape)) for k in bad_heads],
    )
    logger.info(report.summary())
    # the head-only differences the port warns about: warned here too
    if report.newly_initialized:
        logger.warning("%s: heads not in the checkpoint were newly initialised: %s", source,
                       report.newly_initialized)
    if report.ignored:
        logger.warning("%s: checkpoint weights not used by %s: %s", source, type(model).__name__, report.ignored)
    return report


def load_checkpoint(model: nn.Module, path_or_state_dict: str | os.PathLike | Mapping[str, Any],
                    ignore_mismatched_heads: bool = False) -> LoadReport:
    """Load weights of any supported format (HF, original release, Lightning) into ``model``; return a report.

    ``path_or_state_dict``: a ``.safetensors``/``.bin``/``.ckpt``/``.pt`` file, a directory holding
    ``model.safetensors`` or ``pytorch_model.bin``, either as a Hub name (``owner/name/TVLT.ckpt``,
    ``owner/name``; :func:`tvlt.hub.resolve`), or an in-memory (possibly Lightning) state dict.
    """
    notes: list[str] = []
    if isinstance(path_or_state_dict, Mapping):
        source = "<state_dict>"
        state_dict = unwrap_state_dict(path_or_state_dict, source)
    else:
        source = str(path_or_state_dict)
        state_dict = read_state_dict(resolve(path_or_state_dict))  # a Hub name: owner/name[/file]
    state_dict, dropped = strip_wrapper_prefixes(state_dict, notes)
    if dropped:
        notes.append(f"dropped {len(dropped)} keys outside the model wrapper: {sorted(dropped)[:10]}")
    fmt = "hf"
    if is_original_format(state_dict):
        fmt = "original"
        config = getattr(model, "config", None)
        state_dict = convert_original_state_dict(state_dict, config, notes)
    return load_state_dict_into(model, state_dict, source=source, format=fmt, notes=notes,
                                ignore_mismatched_heads=ignore_mismatched_heads)


# ---------------------------------------------------------------------------------------- save/from_pretrained
def save_pretrained(model: nn.Module, directory: str | os.PathLike, safe_serialization: bool = True,
                    state_dict: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (``pytorch_model.bin`` if not safe_serialization).

    ``state_dict`` (default ``model.state_dict()``) replaces the weights written, as in the port (e.g. a
    ``Trainer`` passing its unwrapped state). Returns the weights file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.torch_dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())  # as the port
    model.config.save_pretrained(directory)
    source = model.state_dict() if state_dict is None else state_dict
    state = {k: v.detach().contiguous().cpu() for k, v in source.items()}
    other = directory / (PYTORCH_NAME if safe_serialization else SAFETENSORS_NAME)
    if other.is_file():  # a stale file of the other format would shadow or contradict the new one
        other.unlink()
    if safe_serialization:
        from safetensors.torch import save_file

        path = directory / SAFETENSORS_NAME
        save_file(state, str(path), metadata={"format": "pt"})
    else:
        path = directory / PYTORCH_NAME
        torch.save(state, path)
    logger.info("saved %d tensors and %s to %s", len(state), CONFIG_NAME, directory)
    return path


# from_pretrained options of the port that need the Hub or features this package does not have: refused by name
_UNSUPPORTED_LOAD_OPTIONS = frozenset({
    "resume_download", "proxies", "use_auth_token", "trust_remote_code", "mirror", "device_map", "max_memory", "offload_folder", "offload_state_dict",
    "load_in_8bit", "load_in_4bit", "quantization_config", "variant", "use_flash_attention_2", "from_tf",
    "from_flax", "low_cpu_mem_usage",
})


def from_pretrained(cls: type, pretrained_model_name_or_path: str | os.PathLike | None, *,
                    config: TvltConfig | str | os.PathLike | None = None,
                    state_dict: Mapping[str, torch.Tensor] | None = None,
                    torch_dtype: torch.dtype | str | None = None, output_loading_info: bool = False,
                    subfolder: str = "", ignore_mismatched_sizes: bool = False, local_files_only: bool | None = None,
                    use_safetensors: bool | None = None, attn_implementation: str | None = None,
                    cache_dir: str | os.PathLike | None = None, force_download: bool | None = None,
                    token: str | bool | None = None, revision: str | None = None, **kwargs: Any):
    """Build ``cls`` from a directory with ``config.json`` and weights, from a checkpoint file (any format
    :func:`load_checkpoint` reads) plus ``config``, or from ``None`` with ``config`` and ``state_dict``. The
    directory or file may be a Hugging Face Hub name (``ZinengTang/tvlt-base``; ``owner/name/file`` for one file),
    fetched into or found in the Hub cache (:func:`tvlt.hub.resolve`).

    Args mirror ``PreTrainedModel.from_pretrained`` of the port:
        config: a :class:`TvltConfig` or a directory / json file to read it from (default: the model directory).
        state_dict: weights to load instead of the directory's weights file.
        torch_dtype: dtype the model is cast to after loading: ``torch.float16``, ``"bfloat16"``, ... or
            ``"auto"`` (``config.torch_dtype`` if set, else the checkpoint's first floating dtype). Default float32
            whatever the checkpoint holds, as the port.
        output_loading_info: also return ``{"missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"}``
            (missing: head weights left at their fresh initialisation; unexpected: file weights the model has no
            place for; mismatched: ``(key, file shape, model shape)`` of heads re-initialised with
            ``ignore_mismatched_sizes=True``).
        subfolder: look inside this sub-directory of the model directory.
        ignore_mismatched_sizes: re-initialise head weights whose shapes differ (e.g. another ``num_labels``)
            instead of raising.
        local_files_only, cache_dir, force_download, token, revision: for Hub names, as ``huggingface_hub`` takes
            them (``HF_HUB_OFFLINE=1`` also keeps to the cache).
        use_safetensors: True requires ``model.safetensors``, False ``pytorch_model.bin``; None takes either.
        attn_implementation: "sdpa" or "eager" (a config override).
        **kwargs: config overrides; only keys the config knows (a typo raises ``TypeError``, as the port's model
            ``__init__`` does).

    The model is returned in eval mode with the load report on ``model.loading_report``.

    Raises:
        FileNotFoundError: no config or weights at the path, or a Hub name that cannot be resolved (named, with
            the reason).
        ValueError: missing or mis-shaped encoder weights (named, with shapes), mis-shaped heads without
            ``ignore_mismatched_sizes``, nothing to load, or an unknown ``torch_dtype``.
        TypeError: an option of the port this package does not support (``device_map``, ``revision``, ...) or an
            unknown keyword, named.
    """
    unsupported = sorted(k for k in kwargs if k in _UNSUPPORTED_LOAD_OPTIONS)
    if unsupported:
        raise TypeError(f"{cls.__name__}.from_pretrained: option(s) {unsupported} are not supported (loaded on "
                        "CPU; move the model with .to() afterwards)")
    kwargs.pop("_fast_init", None)  # the port's init shortcut; loading here never re-initialises loaded weights
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    hub = dict(local_files_only=local_files_only, cache_dir=cache_dir, force_download=force_download, token=token,
               revision=revision)
    path = None
    if pretrained_model_name_or_path is not None:
        path = resolve(pretrained_model_name_or_path, subfolder, **hub) / subfolder
    if path is None and state_dict is None:
        raise ValueError(f"{cls.__name__}.from_pretrained: nothing to load; pass a directory or file, or "
                         "config= and state_dict=")
    if not isinstance(config, TvltConfig):
        config_source = config if config is not None else path
        if config_source is None:
            raise ValueError(f"{cls.__name__}.from_pretrained(None, ...) needs config=")
        config_dir = resolve(config_source, **hub)
        config = TvltConfig.from_pretrained(config_dir if config_dir.is_dir() or config_dir.suffix == ".json"
                                            else config_dir.parent)
    else:
        config = TvltConfig.from_dict(config.to_dict())  # the caller's object stays unchanged
    unknown = sorted(k for k in kwargs if k not in TvltConfig.known_keys() and not hasattr(config, k))
    if unknown:
        raise TypeError(f"{cls.__name__}.from_pretrained got unexpected keyword argument(s) {unknown}")
    if kwargs:
        config = TvltConfig.from_dict(config.to_dict(), **kwargs)
    model = cls(config)

    source: Any = state_dict
    if source is None:
        source = _weights_path(path, use_safetensors)
    report = load_checkpoint(model, source, ignore_mismatched_heads=ignore_mismatched_sizes)
    dtype = _resolve_dtype(torch_dtype, config, source)
    if dtype is not None:
        model.to(dtype)
    model.loading_report = report
    model.eval()
    if output_loading_info:
        return model, report.loading_info()
    return model


def _weights_path(path: Path, use_safetensors: bool | None) -> Path:
    if not path.is_dir():
        return path
    names = {True: [SAFETENSORS_NAME], False: [PYTORCH_NAME], None: [SAFETENSORS_NAME, PYTORCH_NAME]}
    for name in names[use_safetensors]:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"no {' or '.join(names[use_safetensors])} in {path}")


def _resolve_dtype(torch_dtype: Any, config: TvltConfig, source: Any) -> torch.dtype | None:
    """The dtype to cast to: None keeps float32 (the port's default); "auto" reads the config, then the file."""
    if torch_dtype is None:
        return None
    if torch_dtype == "auto":
        if isinstance(config.torch_dtype, torch.dtype):
            return config.torch_dtype
        tensors = source if isinstance(source, Mapping) else read_state_dict(source)
        return next((t.dtype for t in tensors.values() if t.is_floating_point()), None)
    dtype = torch_dtype if isinstance(torch_dtype, torch.dtype) else getattr(torch, str(torch_dtype), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"from_pretrained: torch_dtype must be a floating torch dtype or 'auto', got {torch_dtype!r}")
    return dtype
