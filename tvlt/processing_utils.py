"""Shared pieces of the processors: :class:`BatchFeature` and JSON save/load.

``BatchFeature`` is the container every processor returns: a ``dict`` (so ``model(**batch)`` works) with attribute
access, ``.to(device)`` and conversion to numpy / torch chosen by ``return_tensors``, as in the Hugging Face port.

:class:`ProcessorConfigMixin` stores a processor's constructor arguments as JSON in ``preprocessor_config.json``,
the file name the Hugging Face port uses, and reads that port's files too (its bookkeeping keys are ignored).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

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


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (np.ndarray, torch.Tensor)):
        return np.stack([_to_numpy(v) for v in value])
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

    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments as JSON-ready values (``mode`` included)."""
        out: dict[str, Any] = {}
        for key in self.config_keys:
            value = getattr(self, key)
            if isinstance(value, tuple):
                value = list(value)
            out[key] = value
        out[f"{self.section}_type"] = type(self).__name__
        return out

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``preprocessor_config.json`` into ``save_directory`` (created if needed); returns the file path."""
        return write_config_json(save_directory, self.to_dict())

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
        unknown = []
        for key, value in config.items():
            if key in cls.config_keys:
                kwargs[key] = value
            elif key in HF_BOOKKEEPING_KEYS or key in cls.foreign_keys or key in cls.derived_keys:
                continue
            elif key == f"{cls.section}_type" or key in ("feature_extractor", "image_processor"):
                continue
            else:
                unknown.append(key)
        if unknown:
            raise ValueError(
                f"{source}: unknown {cls.__name__} setting(s) {sorted(unknown)}; accepted: {sorted(cls.config_keys)}"
            )
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
        """Load from a directory holding ``preprocessor_config.json`` (or that file itself).

        Reads files written by this project and by the Hugging Face port; nothing is downloaded.

        Raises:
            FileNotFoundError: no config file at the path.
            ValueError: a key this processor does not know (the message names it and the file).
        """
        config, file = read_config_json(pretrained_path)
        return cls.from_dict(config, source=str(file), **overrides)

    def __repr__(self) -> str:
        return f"{type(self).__name__} {json.dumps(self.to_dict(), indent=2, sort_keys=True)}"
