"""TvltConfig: the fields, defaults and validation of the TVLT architecture, saved as ``config.json``.

Fields and defaults follow the Hugging Face port (transformers <= 4.40.2, ``model_type="tvlt"``), so a
``config.json`` written by that port loads here and vice versa. Extra fields of this project:

- ``num_labels`` (default 2, the ``PretrainedConfig`` default the port inherits);
- ``classifier_pooler`` (default False): the original release's fine-tuning head layout
  (pooler dense + tanh on CLS, then the MLP), needed to load ``TVLT-MOSEI-SA``-style checkpoints;
- ``attn_implementation`` ("sdpa" or "eager"): fused ``scaled_dot_product_attention`` or plain math
  (identical semantics; "eager" is used automatically when attention weights are requested).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.json"

# Keys a Hugging Face ``PretrainedConfig.to_dict()`` writes next to the model's own fields. They are accepted
# when reading a config.json and, apart from the few this project uses (id2label/label2id -> num_labels,
# return_dict, output_attentions, output_hidden_states), ignored.
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
_ACTIVATIONS = ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh", "silu", "selu")
_LOSS_TYPES = ("classification", "regression")


class TvltConfig:
    """Configuration of a TVLT model (encoder, MAE decoder, heads).

    Args mirror the Hugging Face port; see ``docs/model.md`` for the meaning of each. Sizes are in pixels
    (``image_size``, ``image_patch_size``) or spectrogram bins (``spectrogram_length`` time frames at
    ~86.13 frames/s, ``frequency_length`` mel bins).

    Raises:
        ValueError: a field has a bad value (the message names it), or an unknown key is passed.
    """

    model_type = "tvlt"

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
        kwargs.pop("label2id", None)
        # HF stores its attention choice under a private key; honour it only if it names one we have.
        hf_attn = kwargs.pop("_attn_implementation", None)
        unknown = sorted(k for k in kwargs if k not in HF_STANDARD_KEYS)
        if unknown:
            raise ValueError(
                f"TvltConfig got unknown key(s) {unknown}; known fields: {sorted(self.field_names())}"
            )
        if kwargs.get("model_type", "tvlt") != "tvlt":
            raise ValueError(f"TvltConfig: model_type must be 'tvlt', got {kwargs['model_type']!r}")

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
        if num_labels is None:
            num_labels = len(id2label) if id2label else 2
        self.num_labels = num_labels
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
        if self.hidden_act not in _ACTIVATIONS:
            fail("hidden_act", f"must be one of {_ACTIVATIONS}")
        if self.loss_type not in _LOSS_TYPES:
            fail("loss_type", f"must be one of {_LOSS_TYPES}")
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
    def use_return_dict(self) -> bool:
        return self.return_dict

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """All fields plus ``model_type``, JSON-serialisable."""
        out = {name: copy.deepcopy(getattr(self, name)) for name in self.field_names()}
        out["model_type"] = self.model_type
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        Path(path).write_text(self.to_json_string())

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> "TvltConfig":
        merged = {**data, **overrides}
        return cls(**merged)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> "TvltConfig":
        path = Path(path)
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

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / CONFIG_NAME
        self.to_json_file(path)
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> "TvltConfig":
        """Read ``config.json`` from a directory (or a path to the json file itself)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no TVLT config at {path}")
        return cls.from_json_file(path, **overrides)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TvltConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"TvltConfig {self.to_json_string()}"
