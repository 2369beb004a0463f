"""Shared pieces of the processors: :class:`BatchFeature`, JSON save/load, the port's keyword policy, padding.

``BatchFeature`` is the container every processor returns: a ``dict`` (so ``model(**batch)`` works) with attribute
access, ``.to(device)`` and conversion to numpy / torch chosen by ``return_tensors``, as in the Hugging Face port.

:class:`ProcessorConfigMixin` stores a processor's constructor arguments as JSON in ``preprocessor_config.json``,
the file name the Hugging Face port uses, and reads that port's files too (its bookkeeping keys are ignored).
Like the port, a processor keeps constructor keys it does not use as attributes (logged once by name);
:func:`note_no_effect` says once that an argument the port accepts has no effect (in the port either).

:func:`pad_sequences`: padding / truncating a batch of feature sequences along their first axis, with an
``attention_mask``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

logger = logging.getLogger(__name__)
_noted: set[tuple[str, str]] = set()  # (owner, argument) pairs already reported in this process

CONFIG_NAME = "preprocessor_config.json"

# Keys the Hugging Face port writes for its own bookkeeping; they carry no preprocessing setting.
HF_BOOKKEEPING_KEYS = frozenset(
    {
        "processor_class",
        "image_processor_type",
        "feature_extractor_type",
        "_valid_processor_keys",
        "auto_map",
        "transformers_version",
    }
)

ReturnTensors = Literal["np", "pt"] | None


def write_config_json(save_directory: str | os.PathLike, config: dict[str, Any]) -> Path:
    """Write ``config`` as ``save_directory/preprocessor_config.json`` (directory created if needed); returns the file."""
    path = Path(save_directory)
    path.mkdir(parents=True, exist_ok=True)
    file = path / CONFIG_NAME
    file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return file


def read_config_json(pretrained_path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """Read a processor config: ``pretrained_path`` is a directory holding ``preprocessor_config.json`` or the file.

    Returns the JSON object and the file it came from. Nothing is downloaded.

    Raises:
        FileNotFoundError: no config file at the path.
        ValueError: the file does not hold a JSON object.
    """
    file = Path(pretrained_path)
    if file.is_dir():
        file = file / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no {CONFIG_NAME} (nothing is downloaded; pass a local directory)")
    config = json.loads(file.read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{file}: expected a JSON object, got {type(config).__name__}")
    return config, file


def note_no_effect(owner: str, name: str, why: str) -> None:
    """Log once per process that ``owner`` accepted argument ``name`` without effect, and why."""
    if (owner, name) not in _noted:
        _noted.add((owner, name))
        logger.warning("%s: %s has no effect (%s)", owner, name, why)


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (np.ndarray, torch.Tensor, list, tuple)):
        items = [_to_numpy(v) for v in value]
        if len({np.shape(v) for v in items}) > 1:  # ragged: an object array of arrays, as the port's BatchFeature
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return out
        return np.stack(items)
    return np.asarray(value)


def _to_torch(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (np.ndarray, torch.Tensor)):
        return torch.stack([_to_torch(v) for v in value])
    return torch.from_numpy(np.ascontiguousarray(value))


class BatchFeature(dict):
    """Processor output: ``dict`` of arrays with attribute access (``batch.pixel_values``).

    Args:
        data: name -> array (numpy array, torch tensor, or list of them).
        tensor_type: ``"np"`` (numpy), ``"pt"`` (torch) or ``None`` (values kept as given).

    Raises:
        ValueError: unknown ``tensor_type``.
    """

    def __init__(self, data: dict[str, Any] | None = None, tensor_type: ReturnTensors = None) -> None:
        super().__init__(data or {})
        self.convert_to_tensors(tensor_type)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchFeature has no field {name!r}; fields: {sorted(self)}") from None

    def __getstate__(self) -> dict[str, Any]:  # picklable across DataLoader workers
        return dict(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.update(state)

    def convert_to_tensors(self, tensor_type: ReturnTensors = None) -> BatchFeature:
        """Convert every value in place to numpy (``"np"``) or torch (``"pt"``); ``None`` leaves them as they are."""
        if tensor_type is None:
            return self
        if tensor_type not in ("np", "pt"):
            raise ValueError(f"return_tensors must be 'np', 'pt' or None, got {tensor_type!r}")
        convert = _to_numpy if tensor_type == "np" else _to_torch
        for key, value in self.items():
            self[key] = convert(value)
        return self

    def to(self, *args: Any, **kwargs: Any) -> BatchFeature:
        """Move torch values like ``Tensor.to`` (device and/or dtype); a dtype applies to floating values only,
        so masks keep their integer type. Returns ``self``."""
        dtype = kwargs.get("dtype")
        if dtype is None:
            dtype = next((a for a in args if isinstance(a, torch.dtype)), None)
        device_args = [a for a in args if not isinstance(a, torch.dtype)]
        device_kwargs = {k: v for k, v in kwargs.items() if k != "dtype"}
        for key, value in self.items():
            if not isinstance(value, torch.Tensor):
                continue
            value = value.to(*device_args, **device_kwargs)
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            self[key] = value
        return self


class ProcessorConfigMixin:
    """JSON ``save_pretrained`` / ``from_pretrained`` for a processor whose settings are its constructor arguments.

    Subclasses set ``config_keys`` (the constructor arguments stored) and ``foreign_keys`` (keys of a sibling
    processor that may share a Hugging Face ``preprocessor_config.json`` and are skipped when loading), and may
    set ``section`` (the name of their block in a combined file written by :class:`~tvlt.TvltProcessor`).
    """

    config_keys: ClassVar[tuple[str, ...]] = ()
    foreign_keys: ClassVar[frozenset[str]] = frozenset()
    derived_keys: ClassVar[frozenset[str]] = frozenset()  # written by HF, recomputed here (checked, not passed)
    section: ClassVar[str] = ""

    # constructor keywords of the port that this processor accepts without effect: name -> why
    no_effect_keys: ClassVar[dict[str, str]] = {}

    def _store_extra_settings(self, kwargs: dict[str, Any]) -> None:
        """Keep keys the constructor does not use as attributes (the keyword policy, module docstring): those in
        ``no_effect_keys`` are noted once with the reason, others logged once by name."""
        self._extra_settings = sorted(kwargs)
        for key, value in kwargs.items():
            setattr(self, key, value)
            why = self.no_effect_keys.get(key, "not a setting of this processor; stored as an attribute")
            note_no_effect(type(self).__name__, key, why)

    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments as JSON-ready values (``mode`` included), plus stored extra keys."""
        out: dict[str, Any] = {}
        for key in (*self.config_keys, *getattr(self, "_extra_settings", ())):
            value = getattr(self, key)
            if isinstance(value, tuple):
                value = list(value)
            out[key] = value
        out[f"{self.section}_type"] = type(self).__name__
        return out

    def to_json_string(self) -> str:
        """``to_dict()`` as indented JSON (the content of ``preprocessor_config.json``)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike) -> None:
        Path(json_file_path).write_text(self.to_json_string())

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike, **overrides: Any) -> Any:
        """Build from a JSON file written by :meth:`to_json_file` / :meth:`save_pretrained` or by the port."""
        config, file = read_config_json(json_file)
        return cls.from_dict(config, source=str(file), **overrides)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> list[Path]:
        """Write ``preprocessor_config.json`` into ``save_directory`` (created if needed); returns the list of files
        written, as the port. ``push_to_hub`` raises ``NotImplementedError``."""
        if kwargs.pop("push_to_hub", False):
            raise NotImplementedError(f"{type(self).__name__}.save_pretrained: push_to_hub is not supported")
        if kwargs:
            raise TypeError(f"{type(self).__name__}.save_pretrained: unsupported option(s) {sorted(kwargs)}")
        return [write_config_json(save_directory, self.to_dict())]

    @classmethod
    def _kwargs_from_config(cls, config: dict[str, Any], source: str) -> dict[str, Any]:
        if cls.section in config and isinstance(config[cls.section], dict):
            config = config[cls.section]  # combined file written by TvltProcessor.save_pretrained
        for other in ("feature_extractor", "image_processor"):
            if other != cls.section and f"{other}_type" in config and f"{cls.section}_type" not in config:
                raise ValueError(
                    f"{source} holds a {config[f'{other}_type']} config, not a {cls.__name__} one "
                    "(TvltProcessor.from_pretrained reads such a directory, giving the other processor its defaults)"
                )
        kwargs: dict[str, Any] = {}
        for key, value in config.items():
            if key in HF_BOOKKEEPING_KEYS or key in cls.foreign_keys or key in cls.derived_keys:
                continue
            if key == f"{cls.section}_type" or key in ("feature_extractor", "image_processor"):
                continue
            kwargs[key] = value  # settings, and unknown keys (stored as attributes)
        return kwargs

    @classmethod
    def from_dict(cls, config: dict[str, Any], source: str = "config", **overrides: Any) -> Any:
        """Build from a config dict (ours, combined, or a Hugging Face one); ``overrides`` win."""
        kwargs = cls._kwargs_from_config(config, source)
        kwargs.update(overrides)
        instance = cls(**kwargs)
        if not overrides:  # overrides may legitimately change derived values (e.g. hop_length via sampling_rate)
            section = config.get(cls.section)
            instance._check_derived(section if isinstance(section, dict) else config, source)
        return instance

    def _check_derived(self, config: dict[str, Any], source: str) -> None:
        for key in self.derived_keys:
            if key in config and hasattr(self, key):
                ours = getattr(self, key)
                ours = list(ours) if isinstance(ours, tuple) else ours
                if config[key] != ours:
                    raise ValueError(
                        f"{source}: {key}={config[key]!r} disagrees with the value derived here ({ours!r})"
                    )

    @classmethod
    def from_pretrained(cls, pretrained_path: str | os.PathLike, **overrides: Any) -> Any:
        """Load from a directory holding ``preprocessor_config.json`` (or that file itself), local or a Hugging
        Face Hub name (:func:`tvlt.hub.resolve`; ``cache_dir``, ``revision``, ``token``, ``local_files_only``,
        ``force_download`` go to the Hub client).

        Reads files written by this project and by the Hugging Face port.

        Keys this processor does not know are kept as attributes and logged once.

        Raises:
            FileNotFoundError: no config file at the path.
        """
        from tvlt.hub import HUB_OPTIONS, resolve

        hub = {key: overrides.pop(key) for key in HUB_OPTIONS if key in overrides}
        config, file = read_config_json(resolve(pretrained_path, **hub))
        return cls.from_dict(config, source=str(file), **overrides)

    def __repr__(self) -> str:
        return f"{type(self).__name__} {json.dumps(self.to_dict(), indent=2, sort_keys=True)}"


# ------------------------------------------------------------------------------------------------ padding
def pad_sequences(
    features: Mapping[str, Any] | list[Mapping[str, Any]],
    input_name: str,
    padding_value: float,
    padding: bool | str = True,
    max_length: int | None = None,
    truncation: bool = False,
    pad_to_multiple_of: int | None = None,
    return_attention_mask: bool = True,
    return_tensors: ReturnTensors = None,
    padding_side: str = "right",
) -> BatchFeature:
    """Pad (and truncate) a batch of sequences along their first axis, as the port's ``SequenceFeatureExtractor.pad``.

    Args:
        features: ``{input_name: [seq_0, seq_1, ...], ...}`` (each sequence (T_i,) or (T_i, F); lists, numpy or
            torch) or a list of such dicts, one per sample.
        padding: ``True`` / ``"longest"`` (to the longest sequence), ``"max_length"`` (to ``max_length``),
            ``False`` / ``"do_not_pad"``.
        max_length: target length for ``"max_length"`` and the truncation length.
        truncation: cut sequences longer than ``max_length`` (needs ``max_length``).
        pad_to_multiple_of: round the target length up to a multiple of this.
        return_attention_mask: add ``attention_mask`` (B, T) int32, 1 for real steps.
        return_tensors: "np" / "pt" / None; None picks "pt" for torch inputs and "np" otherwise. Ragged results
            (no padding) stay lists of arrays, as the port's.

    Returns:
        ``BatchFeature`` with the padded sequences (float64 made float32) and ``attention_mask``.

    Raises:
        ValueError: ``input_name`` missing, ``"max_length"`` padding or truncation without ``max_length``,
            truncation without ``"max_length"`` padding, an unknown ``padding`` strategy, or ragged batch lengths.
    """
    if isinstance(features, (list, tuple)) and features and isinstance(features[0], Mapping):
        features = {key: [example[key] for example in features] for key in features[0]}
    if input_name not in features:
        raise ValueError(f"pad: the input must hold {input_name!r}; got keys {sorted(features)}")
    strategy = {True: "longest", False: "do_not_pad"}.get(padding, padding)
    if strategy not in ("longest", "max_length", "do_not_pad"):
        raise ValueError(f"pad: padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
    if strategy == "max_length" and max_length is None:
        raise ValueError("pad: padding='max_length' needs max_length")
    if truncation and max_length is None:
        raise ValueError("pad: truncation=True needs max_length (and padding='max_length')")
    if truncation and strategy != "max_length":
        raise ValueError("pad: truncation=True needs padding='max_length'")
    first = features[input_name][0] if len(features[input_name]) else None
    if return_tensors is None:
        return_tensors = "pt" if isinstance(first, torch.Tensor) else "np"
    columns = {key: [_as_array(v) for v in values] for key, values in features.items()}
    batch = len(columns[input_name])
    if any(len(values) != batch for values in columns.values()):
        raise ValueError("pad: every field must have one entry per sample")

    def rounded(length: int) -> int:
        return math.ceil(length / pad_to_multiple_of) * pad_to_multiple_of if pad_to_multiple_of else length

    if truncation:
        limit = rounded(max_length)
        columns = {k: [v[:limit] for v in values] for k, values in columns.items()}
    lengths = [len(v) for v in columns[input_name]]
    target = {"longest": max(lengths, default=0), "max_length": max_length, "do_not_pad": None}[strategy]
    if target is not None:
        target = rounded(target)
    out: dict[str, list[np.ndarray]] = {key: [] for key in columns}
    if return_attention_mask:
        out["attention_mask"] = []
    for i, length in enumerate(lengths):
        extra = max(0, target - length) if target is not None else 0
        for key, values in columns.items():
            value = values[i]
            if extra and key == input_name:
                widths = [(0, extra) if padding_side == "right" else (extra, 0)] + [(0, 0)] * (value.ndim - 1)
                value = np.pad(value, widths, constant_values=padding_value)
            out[key].append(value.astype(np.float32) if value.dtype == np.float64 else value)
        if return_attention_mask:
            mask = np.ones(length, dtype=np.int32)
            widths = (0, extra) if padding_side == "right" else (extra, 0)
            out["attention_mask"].append(np.pad(mask, widths))
    return BatchFeature(out, tensor_type=return_tensors)


def _as_array(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
