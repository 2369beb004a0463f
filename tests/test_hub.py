"""Hub names where users type them: a repo id or a file of a repo, resolved through huggingface_hub's real cache
code, offline, against a repository the test lays out in a local Hub cache."""

from __future__ import annotations

import pytest
import torch

from tvlt import TvltConfig, TvltFeatureExtractor, TvltForAudioVisualClassification, TvltImageProcessor, TvltProcessor
from tvlt.checkpoints import load_checkpoint
from tvlt.hub import is_hub_name, resolve

COMMIT = "a" * 40


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, tiny_config):
    """A Hub cache holding repo ``tester/tvlt-tiny`` at ``main`` (and tag ``v1``), in the layout huggingface_hub
    writes: refs/<ref> -> commit, snapshots/<commit>/<files>. Offline: nothing may be fetched."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repo = cache / "models--tester--tvlt-tiny"
    snapshot = repo / "snapshots" / COMMIT
    model = TvltForAudioVisualClassification(TvltConfig(**{**tiny_config.to_dict(), "num_labels": 3}))
    model.save_pretrained(snapshot)
    TvltProcessor(TvltImageProcessor(), TvltFeatureExtractor()).save_pretrained(snapshot)
    (repo / "refs").mkdir()
    for ref in ("main", "v1"):
        (repo / "refs" / ref).write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # what HF_HUB_CACHE sets at import
    return cache, model


def test_repo_ids_load_models_configs_and_processors(hub_cache):
    cache, saved = hub_cache
    model = TvltForAudioVisualClassification.from_pretrained("tester/tvlt-tiny")
    for (name, a), b in zip(saved.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    assert model.config.num_labels == 3
    assert TvltConfig.from_pretrained("tester/tvlt-tiny", revision="v1").num_labels == 3
    assert TvltFeatureExtractor.from_pretrained("tester/tvlt-tiny", cache_dir=str(cache)).spectrogram_length == 2048
    assert TvltProcessor.from_pretrained("tester/tvlt-tiny") is not None


def test_a_file_of_a_repo_loads_as_a_checkpoint(hub_cache, tiny_config):
    _, saved = hub_cache
    model = TvltForAudioVisualClassification(TvltConfig(**{**tiny_config.to_dict(), "num_labels": 3}))
    load_checkpoint(model, "tester/tvlt-tiny/model.safetensors")  # as model.pretrained=... in the configs
    for (name, a), b in zip(saved.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


def test_unresolvable_names_say_why_and_local_paths_are_unchanged(hub_cache, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tester/missing: not in the Hub cache, and downloads are off "
                                                r"\(HF_HUB_OFFLINE=1"):
        TvltForAudioVisualClassification.from_pretrained("tester/missing")
    with pytest.raises(FileNotFoundError, match="tester/tvlt-tiny/TVLT.ckpt: not in the Hub cache"):
        resolve("tester/tvlt-tiny/TVLT.ckpt")
    local = tmp_path / "local"
    hub_cache[1].save_pretrained(local)
    assert resolve(local) == local  # an existing path is used as it is
    assert TvltForAudioVisualClassification.from_pretrained(local).config.num_labels == 3
    assert not is_hub_name("runs/last.ckpt") and not is_hub_name("./a/b") and not is_hub_name("/abs/x")
    assert is_hub_name("ZinengTang/tvlt-base") and is_hub_name("ZinengTang/TVLT/TVLT.ckpt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found: runs/last.ckpt"):
        load_checkpoint(hub_cache[1], "runs/last.ckpt")  # a missing local file stays a missing local file
