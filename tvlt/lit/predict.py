"""``mode=predict`` and ``mode=embed``: a checkpoint on one clip (printed) or over a dataset (written into the run
folder by :mod:`tvlt.lit.inference`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from tvlt.lit.runs import RunConfigError, check_model_fits_data, data_errors
from tvlt.processing import TvltProcessor

if TYPE_CHECKING:
    from tvlt.lit.base import TvltLitModule

log = logging.getLogger("run")


def checkpoint_processor(module: TvltLitModule, cfg: DictConfig) -> TvltProcessor:
    """The preprocessing of the run that wrote the checkpoint: the processor config it saved (``tvlt_processor``,
    the ``preprocessor_config.json`` exported beside the weights), unless ``data.num_frames=`` /
    ``data.processor_mode=`` are given on the command line (a mode given builds that mode's defaults). Checkpoints
    written before the processor config was saved carry ``num_frames`` and ``processor_mode`` only; without either,
    the composed ``data`` settings apply.

    Args:
        module: a module from :func:`tvlt.lit.base.load_lit_checkpoint`.
        cfg: the composed config (``data.num_frames``, ``data.processor_mode``).
    """
    given = {o.split("=")[0] for o in HydraConfig.get().overrides.task}
    data = cfg.get("data") or {}
    settings = getattr(module, "processor_settings", None)
    source = f"{getattr(module, 'loaded_checkpoint', 'checkpoint')} (tvlt_processor)"
    saved = TvltProcessor.from_dict(settings, source=source) if settings else None
    legacy = getattr(module, "data_settings", None) or {}
    num_frames = int(data.num_frames if "data.num_frames" in given
                     else saved.image_processor.num_frames if saved else legacy.get("num_frames", data.num_frames))
    if "data.processor_mode" in given or saved is None:
        mode = data.processor_mode if "data.processor_mode" in given else legacy.get("processor_mode",
                                                                                      data.processor_mode)
        side = int(module.model.config.image_size)  # frames at the model's size, whatever the mode's default
        return TvltProcessor.create(mode=mode, num_frames=num_frames, size={"shortest_edge": side},
                                    crop_size={"height": side, "width": side})
    return TvltProcessor.from_dict(settings, source=source, num_frames=num_frames)


def predict(cfg: DictConfig) -> list[str]:
    """Print the prediction of the checkpoint ``ckpt_path`` for the clip ``input`` (video with its audio track,
    or ``input_audio=<wav>`` for a sidecar file), prepared by :func:`checkpoint_processor`. Returns the printed
    lines."""
    import torch

    from datamodules.collate import TvltCollator
    from datamodules.decoding import ClipDecodeError, ClipReader
    from datamodules.transform import ClipTransform
    from tvlt.lit.base import load_lit_checkpoint

    if not cfg.get("ckpt_path") or not cfg.get("input"):
        raise ValueError("mode=predict needs ckpt_path=<checkpoint .ckpt> and input=<video file>")
    module = load_lit_checkpoint(cfg.ckpt_path)
    if not hasattr(module, "describe"):
        raise ValueError(f"mode=predict supports the sentiment/emotion/classify modules, not {type(module).__name__}")
    processor = checkpoint_processor(module, cfg)
    audio = cfg.get("input_audio") or "container"
    try:
        clip = ClipReader(num_frames=processor.image_processor.num_frames).read(cfg.input, audio=audio,
                                                                               mode="uniform")
    except ClipDecodeError as err:
        if audio != "container" or err.cause != "no_audio_stream":
            raise
        hint = "pass input_audio=<wav or flac file> with the clip's audio"
        raise ClipDecodeError(err.path, err.cause, f"{err.detail}; {hint}" if err.detail else hint) from None
    if clip.waveform is None:
        raise ValueError(f"{cfg.input}: no audio; pass input_audio=<wav> for a sidecar audio file")
    # the clip -> item -> batch path of training and evaluation (one transform, masks built once by the collator)
    image_processor, feature_extractor = processor.image_processor, processor.feature_extractor
    item = ClipTransform(image_processor, feature_extractor)(clip, str(cfg.input))
    batch = TvltCollator.from_processors(image_processor, feature_extractor)([item])
    with torch.inference_mode():
        out = module.predict_step(batch)
    lines = [f"{cfg.input}: {text}" for text in module.describe(out["preds"])]
    for line in lines:
        print(line)
    return lines


def predict_dataset(cfg: DictConfig) -> Path | None:
    """``mode=predict`` without ``input`` and ``mode=embed``: the checkpoint ``ckpt_path`` over every clip of
    ``predict.split`` of the data, on the configured devices; writes ``predictions.csv`` or
    ``embeddings.safetensors`` (and ``skipped.csv``) into the run folder (see :mod:`tvlt.lit.inference`).
    Returns the file written (rank zero; None on other processes)."""
    import json

    import torch

    from tvlt.lit import inference
    from tvlt.lit.base import load_lit_checkpoint

    mode = cfg.mode
    if not cfg.get("ckpt_path"):
        raise RunConfigError(f"mode={mode} needs ckpt_path=<checkpoint .ckpt>")
    module = load_lit_checkpoint(cfg.ckpt_path)
    ranking = mode == "predict" and hasattr(module, "retrieval_rows")  # retrieval: top-k matches per video
    if mode == "predict" and not (ranking or hasattr(module, "prediction_columns")):
        raise RunConfigError(f"mode=predict over a dataset supports sentiment, emotion, classify and retrieval "
                             f"checkpoints, not {type(module).__name__} (mode=embed works for every checkpoint)")
    processor = checkpoint_processor(module, cfg)
    with open_dict(cfg):  # frames and preprocessing as in training (saved in the checkpoint) unless given
        cfg.data.num_frames, cfg.data.processor_mode = processor.image_processor.num_frames, processor.mode
        cfg.data.image_size = int(processor.image_processor.crop_size["height"])
    split, splits = str(cfg.predict.split), ("train", "valid", "test")
    if split not in (*splits, "all"):
        raise RunConfigError(f"predict.split must be train, valid, test or all, got {split!r}")
    datamodule = instantiate(cfg.data, _convert_="all")
    check_model_fits_data(module, datamodule)  # e.g. data.num_frames=8 given for a 1-frame checkpoint
    with data_errors(datamodule):
        names = [s for s in (splits if split == "all" else [split]) if len(datamodule.evaluation_loader(s))]
        if not names:
            have = ", ".join(s for s in splits if len(datamodule.evaluation_loader(s))) or "none"
            raise RunConfigError(f"predict.split={split}: the data has no clips in that split (splits with clips: "
                                 f"{have}; predict.split=all reads them all)")
    if mode == "embed":
        module.predict_step = lambda batch, *args: inference.embed_batch(module.model, batch)
    collector = inference.Collector(mode)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[collector], enable_checkpointing=False,
                          enable_model_summary=False)
    for name in names:
        collector.split = name
        # the loader is made inside trainer.predict, once the processes have started: shards split their records
        # across the processes they see when the loader is made
        trainer.predict(module, datamodule=inference.SplitData(datamodule, name), return_predictions=False)
        if ranking:  # the split's videos ranked against its audios, the same on every process
            collector.rows += [{"id": r["id"], "split": name, **r} for r in module.retrieval_rows(cfg.predict.top_k)]
    if trainer.world_size > 1 and not ranking:  # each process reads its share of a split (padding repeats too)
        log.info("Process %d of %d predicted %d row(s)", trainer.global_rank, trainer.world_size, len(collector.rows))
    # the manifests' order; shards have none: their rows carry their place in the split (gather_rows)
    order = [] if datamodule.shards else [clip_id for name in names for clip_id in datamodule.manifest(name).ids]
    rows = inference.gather_rows(collector.rows, order)
    skipped = inference.gather_rows(
        [{"id": i, "cause": cause} for _, i, cause in datamodule.skipped_clips], order)
    if not trainer.is_global_zero:
        return None
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if mode == "predict":
        path = inference.write_predictions(out, rows)
    else:
        tensors = {k: torch.stack([r[k] for r in rows]) for k in ("embedding", "video", "audio")}
        path = inference.write_embeddings(out, [r["id"] for r in rows], tensors,
                                          {"checkpoint": str(cfg.ckpt_path), "splits": json.dumps(
                                              [r["split"] for r in rows])})
        # the preprocessing the embeddings were made with
        TvltProcessor(datamodule.image_processor, datamodule.feature_extractor).save_pretrained(out)
    if skipped:
        log.warning("%d clip(s) could not be read and were skipped: %s", len(skipped),
                    inference.write_skipped(out, skipped))
    log.info("Wrote %d row(s) of %s to %s", len(rows), "predictions" if mode == "predict" else "embeddings", path)
    return path
