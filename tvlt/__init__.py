"""TVLT: the Textless Vision-Language Transformer (Tang et al., NeurIPS 2022).

The public API mirrors the Hugging Face port (transformers <= 4.40.2) so its checkpoints load strictly.
Names are imported lazily: ``import tvlt`` stays cheap, and the model never pulls in Lightning or the processors.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "TvltConfig": "tvlt.configuration",
    "TvltModel": "tvlt.modeling",
    "TvltForPreTraining": "tvlt.modeling",
    "TvltForAudioVisualClassification": "tvlt.modeling",
    "TvltModelOutput": "tvlt.modeling",
    "TvltForPreTrainingOutput": "tvlt.modeling",
    "TvltFeatureExtractor": "tvlt.feature_extraction",
    "TvltImageProcessor": "tvlt.image_processing",
    "TvltProcessor": "tvlt.processing",
    "BatchFeature": "tvlt.processing_utils",
    "load_checkpoint": "tvlt.checkpoints",
    "load_state_dict_into": "tvlt.checkpoints",
    "convert_original_state_dict": "tvlt.checkpoints",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tvlt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
