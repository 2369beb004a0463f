"""experiment=classify: manifests (single- and multi-label) and folder trees, loss weights from the training split,
and the class names' round trip through checkpoint, export and predict, through the real config and command line.

Tiny model, 1 frame, a small generated set (3 classes, 6/3/3 one-second clips with audio in the mp4).
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
import torch

from test_run import FAST, compose_cfg, run_cli
from tvlt.lit import job, predict

CLASSES = ["drum", "flute", "horn"]


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> Path:
    """root/{train,valid,test}/{class}/{class}_{split}_{i}.mp4: 6/3/3 clips over 3 classes."""
    from datamodules.demo import ClassesDemoSpec, ensure_demo_classes

    spec = ClassesDemoSpec(num_classes=3, num_train=6, num_valid=3, num_test=3, seconds=1.0, size=32)
    return ensure_demo_classes(tmp_path_factory.mktemp("classes") / "tree", spec)


def write_manifest(path: Path, clips: Path, multilabel: bool = False) -> list[dict]:
    """A CSV over the clips (paths relative to the CSV): `label` = class folder, or 0/1 columns where each clip's
    own class and (for the first clip of each split, a drum clip) also `horn` are present."""
    rows = []
    for video in sorted(clips.rglob("*.mp4")):
        split, name = video.parent.parent.name, video.parent.name
        row = {"video": str(video.relative_to(path.parent)) if video.is_relative_to(path.parent) else str(video),
               "split": split}
        if multilabel:
            first = not any(r["split"] == split for r in rows)
            row.update({c: int(c == name or (first and c == "horn")) for c in CLASSES})
        else:
            row["label"] = name
        rows.append(row)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def test_single_label_manifest_trains_and_class_names_round_trip(tmp_path, clips):
    """CLI: fit a few steps on a manifest with class-name labels; names in the checkpoint, id2label in the export,
    the predicted class printed by name; the test metrics agree with the checkpoint's own predictions."""
    manifest = tmp_path / "clips.csv"
    # the classes are sorted label values; class_weights=balanced and label smoothing are accepted
    write_manifest(manifest, clips)
    proc = run_cli(["experiment=classify", *FAST, f"data.manifest={manifest}", "logger=csv", "trainer.max_epochs=1",
                    "trainer.limit_train_batches=2", "model.class_weights=balanced", "model.label_smoothing=0.1",
                    f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    # 2 training clips per class: balanced weights n / (K * count) = 6 / (3 * 2)
    assert "class loss weights from the training split (6 clips): drum 1, flute 1, horn 1" in proc.stdout + proc.stderr
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["hyper_parameters"]["classes"] == CLASSES and saved["hyper_parameters"]["multilabel"] is False
    exported = json.loads((tmp_path / "run" / "pretrained" / "config.json").read_text())
    assert exported["id2label"] == {"0": "drum", "1": "flute", "2": "horn"}
    assert exported["label2id"] == {"drum": 0, "flute": 1, "horn": 2} and exported["num_labels"] == 3
    from tvlt import TvltForAudioVisualClassification

    assert TvltForAudioVisualClassification.from_pretrained(tmp_path / "run" / "pretrained").config.num_labels == 3

    # predict one clip by name: the line names the most probable class and lists all three
    clip = sorted((clips / "test" / "horn").glob("*.mp4"))[0]
    line = predict.predict(compose_cfg(tmp_path / "p", ["mode=predict", f"ckpt_path={last}", f"input={clip}"]))
    assert len(line) == 1 and re.fullmatch(
        rf"{re.escape(str(clip))}: class (drum|flute|horn) \(probabilities: (\w+ \d\.\d\d(, )?){{3}}\)", line[0]), line

    # the logged test accuracy is that of the tested weights' predictions on the 3 test clips
    best = [p for p in (tmp_path / "run" / "checkpoints").glob("epoch*.ckpt")][0]
    from datamodules.classify import ClassifyDataModule
    from tvlt.lit import load_lit_checkpoint

    module = load_lit_checkpoint(best)
    dm = ClassifyDataModule(manifest=str(manifest), num_frames=1, batch_size=3, decode_timeout=None)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["labels"].dtype == torch.int64 and batch["labels"].tolist() == [0, 1, 2]
    with torch.inference_mode():
        probs = module.predict_step(batch)["preds"]
    metrics = list((tmp_path / "run").rglob("metrics.csv"))[0].read_text().splitlines()
    header = metrics[0].split(",")
    test_row = [dict(zip(header, ln.split(","))) for ln in metrics[1:] if ln.split(",")[header.index("test/acc")]]
    want = (probs.argmax(1) == batch["labels"]).float().mean().item()
    assert float(test_row[0]["test/acc"]) == pytest.approx(want)


def test_multi_label_manifest_with_pos_weight_from_the_training_split(tmp_path, clips, caplog):
    manifest = tmp_path / "tags.csv"
    rows = write_manifest(manifest, clips, multilabel=True)
    cfg = compose_cfg(tmp_path, ["experiment=classify", *FAST, f"data.manifest={manifest}", "logger=none",
                                 "trainer.max_epochs=1", "trainer.limit_train_batches=1", "model.pos_weight=auto"])
    assert cfg.task_name == "classify"  # data given: no demo preset
    with caplog.at_level("INFO"):
        metrics = job.train(cfg)
    # training split: 6 clips, 2 per class, and horn also in the split's first clip (a drum clip)
    train = [r for r in rows if r["split"] == "train"]
    assert [sum(r[c] for r in train) for c in CLASSES] == [2, 2, 3]
    # pos_weight = negatives / positives
    assert "pos_weight loss weights from the training split (6 clips): drum 2, flute 2, horn 1" in caplog.text
    # every class occurs among the 3 test clips, so every figure is defined
    for key in ("test/map", "test/exact_match", "test/f1_macro", "test/f1_weighted", "test/ap_drum",
                "test/recall_horn"):
        assert math.isfinite(metrics[key]), key
    assert metrics["test/num_samples"] == 3.0


def test_folder_tree_without_manifest(tmp_path, clips):
    from datamodules.classify import ClassifyDataModule

    dm = ClassifyDataModule(root=str(clips), num_frames=1, batch_size=6, decode_timeout=None)
    assert dm.model_arguments() == {"classes": CLASSES, "multilabel": False}
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert sorted(i.split("/")[0] for i in batch["ids"]) == CLASSES  # ids carry the class folder
    assert [CLASSES[i] for i in batch["labels"].tolist()] == [i.split("/")[0] for i in batch["ids"]]
    counts, n = dm.label_counts("train")
    assert counts.tolist() == [2.0, 2.0, 2.0] and n == 6


def test_bad_labels_are_reported_with_file_line_and_value(tmp_path, clips):
    from datamodules.classify import ClassifyDataModule
    from datamodules.manifests import ManifestError

    manifest = tmp_path / "bad.csv"
    write_manifest(manifest, clips)
    lines = manifest.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",drumm"
    manifest.write_text("\n".join(lines) + "\n")
    dm = ClassifyDataModule(manifest=str(manifest), classes=CLASSES, num_frames=1)
    with pytest.raises(ManifestError, match=rf"{re.escape(str(manifest))} line 2 \(.*\): label 'drumm' is not one "
                                            r"of the classes \['drum', 'flute', 'horn'\]"):
        dm.setup("test" if "test" in lines[1] else "fit")

    tags = tmp_path / "tags.csv"
    write_manifest(tags, clips, multilabel=True)
    lines = tags.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",0.5"
    tags.write_text("\n".join(lines) + "\n")
    dm = ClassifyDataModule(manifest=str(tags), num_frames=1)
    assert dm.model_arguments() == {"classes": CLASSES, "multilabel": True}
    split = lines[3].split(",")[1]
    with pytest.raises(ManifestError, match=r"line 4 \(.*\): column horn: '0.5' is not 0 or 1"):
        dm.manifest(split)
    with pytest.raises(ManifestError, match=r"no class column"):
        (tmp_path / "none.csv").write_text("video,split\na.mp4,train\n")
        ClassifyDataModule(manifest=str(tmp_path / "none.csv")).model_arguments()


def test_folder_tree_without_split_folders_holds_out_each_class(tmp_path, clips):
    from datamodules.classify import ClassifyDataModule
    from datamodules.manifests import holdout_splits

    flat = tmp_path / "flat"
    for video in clips.rglob("*.mp4"):  # root/{class}/{clip}.mp4: 4 clips per class
        (flat / video.parent.name).mkdir(parents=True, exist_ok=True)
        (flat / video.parent.name / video.name).symlink_to(video)
    dm = ClassifyDataModule(root=str(flat), num_frames=1, val_fraction=0.25, test_fraction=0.25)
    sizes = {s: [r.id.split("/")[0] for r in dm._rows(s)] for s in ("train", "valid", "test")}
    assert {s: sorted(v) for s, v in sizes.items()} == {"train": sorted(CLASSES * 2), "valid": CLASSES,
                                                        "test": CLASSES}
    # stratified and seeded: 3 items of a class -> one each; the same seed gives the same draw
    assert sorted(holdout_splits([0, 0, 0], 0.1, 0.1)) == ["test", "train", "valid"]
    assert holdout_splits([0] * 5 + [1] * 5, 0.2, 0.2, seed=3) == holdout_splits([0] * 5 + [1] * 5, 0.2, 0.2, seed=3)
    with pytest.raises(ValueError, match="sum below 1"):
        holdout_splits([0, 1], 0.5, 0.5)


def test_classify_composes_and_switches_to_its_demo_preset(tmp_path):
    cfg = compose_cfg(tmp_path, ["experiment=classify", "data.manifest=clips.csv"])
    assert (cfg.task_name, cfg.model._target_, cfg.monitor, cfg.monitor_mode) == \
        ("classify", "tvlt.lit.ClassificationModule", "val/f1_macro", "max")
    assert cfg.data.manifest == str(Path.cwd() / "clips.csv") and "hidden_size" not in cfg.model.config
    assert cfg.data.batch_size * cfg.trainer.accumulate_grad_batches == 32
    demo = compose_cfg(tmp_path, ["experiment=classify"])
    assert (demo.task_name, demo.demo_from, demo.model.config.hidden_size, demo.monitor) == \
        ("classify_demo", "classify", 128, "val/loss")


def test_loss_weights_and_label_smoothing_hand_computed():
    from conftest import TINY_CONFIG
    from tvlt.lit import ClassificationModule

    ln2 = math.log(2)
    logits = torch.tensor([[0.0, 0.0], [math.log(3), 0.0]])  # p(b) = 1/2, then 1/4
    labels = torch.tensor([0, 1])
    weighted = ClassificationModule(classes=["a", "b"], class_weights=[1.0, 3.0], config=TINY_CONFIG)
    assert float(weighted.loss(logits, labels)) == pytest.approx((1 * ln2 + 3 * 2 * ln2) / 4)  # sum w nll / sum w
    smooth = ClassificationModule(classes=["a", "b"], label_smoothing=0.2, config=TINY_CONFIG)
    # targets (1 - 0.2) * one-hot + 0.2 / 2: sample 0 gives ln 2 for any target; sample 1 q = [0.1, 0.9]
    want = (ln2 + 0.1 * math.log(4 / 3) + 0.9 * math.log(4)) / 2
    assert float(smooth.loss(logits, labels)) == pytest.approx(want)
    multi = ClassificationModule(classes=["a", "b"], multilabel=True, pos_weight=[3.0, 5.0], config=TINY_CONFIG)
    # BCE at logit 0: a present (3 * ln 2), b absent (ln 2, pos_weight does not apply)
    assert float(multi.loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))) == pytest.approx(2 * ln2)
    with pytest.raises(ValueError, match="pos_weight is a multi-label option"):
        ClassificationModule(classes=["a", "b"], pos_weight="auto", config=TINY_CONFIG)
    with pytest.raises(ValueError, match=r"loss weights must be 2 finite non-negative numbers"):
        ClassificationModule(classes=["a", "b"], class_weights=[1.0], config=TINY_CONFIG)
