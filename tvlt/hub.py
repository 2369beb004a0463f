"""Names where users type them: a local path, a Hugging Face Hub repo id, or a file inside a Hub repo.

Every ``from_pretrained`` of this package (models, configs, processors) and ``load_checkpoint`` (``model.pretrained``
in the training configs) resolve their argument here:

- an existing local file or directory is used as it is (nothing else is tried);
- ``owner/name`` (e.g. ``ZinengTang/tvlt-base``, the port's checkpoints) is a Hub model repo: its config, weights
  and preprocessor files are fetched with ``huggingface_hub.snapshot_download`` into the Hub cache, or found there;
- ``owner/name/path/in/repo`` (e.g. ``ZinengTang/TVLT/TVLT.ckpt``, the original release's checkpoint) is one file
  of a repo, fetched with ``hf_hub_download``.

The Hub's own settings apply: ``HF_HUB_OFFLINE=1`` (or ``local_files_only=True``) uses the cache only, ``HF_HOME`` /
``HF_HUB_CACHE`` / ``cache_dir`` choose the cache, ``HF_TOKEN`` / ``token`` authenticate, ``revision`` pins a
commit, branch or tag.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = ["HUB_OPTIONS", "is_hub_name", "resolve"]

#: ``from_pretrained`` keywords that go to the Hub client.
HUB_OPTIONS = ("cache_dir", "force_download", "local_files_only", "token", "revision")

_REPO_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO_ID = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")
_REPO_FILE = re.compile(rf"^({_REPO_PART}/{_REPO_PART})/(.+)$")
_FILE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".safetensors", ".json", ".mp4", ".wav"}
#: What a model directory needs; nothing else of a repo is fetched.
_MODEL_FILES = ["config.json", "model.safetensors", "pytorch_model.bin", "preprocessor_config.json"]


def resolve(name_or_path: str | os.PathLike, subfolder: str = "", **hub_options: Any) -> Path:
    """A local path for ``name_or_path`` (see the module docstring). ``subfolder``: for a repo id, the folder of the
    repo whose files are fetched (the result is still the snapshot's root). ``hub_options``: :data:`HUB_OPTIONS`,
    passed to ``huggingface_hub`` (``None`` values are left out).

    Anything that is neither an existing path nor a Hub name (an absolute or ``./`` path, a two-part name ending in
    a file suffix such as ``runs/last.ckpt``) comes back unchanged, for the caller to report as missing.

    Raises:
        FileNotFoundError: a Hub name that cannot be resolved (not in the cache while offline, no such repo or
            file, no network); the message names it and the reason.
    """
    path = Path(name_or_path)
    text = str(name_or_path)
    if path.exists() or not is_hub_name(text):
        return path
    options = {k: v for k, v in hub_options.items() if k in HUB_OPTIONS and v is not None}
    if _offline_env():
        options["local_files_only"] = True  # the variable may be set after huggingface_hub read it at import
    if _REPO_ID.match(text):
        return _fetch(text, None, options, subfolder)
    repo_id, filename = _REPO_FILE.match(text).groups()
    return _fetch(repo_id, filename, options, "")


def is_hub_name(text: str) -> bool:
    """``owner/name`` (not ending in a file suffix) or ``owner/name/path``, not absolute or ``./``-relative."""
    if text.startswith(("/", ".", "~")) or "\\" in text:
        return False
    if _REPO_ID.match(text):
        return Path(text).suffix.lower() not in _FILE_SUFFIXES
    return bool(_REPO_FILE.match(text))


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _fetch(repo_id: str, filename: str | None, options: dict[str, Any], subfolder: str) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.constants import HF_HUB_OFFLINE
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    what = f"{repo_id}/{filename}" if filename else repo_id
    try:
        if filename:
            return Path(hf_hub_download(repo_id, filename, **options))
        patterns = [f"{subfolder.strip('/')}/{name}" if subfolder else name for name in _MODEL_FILES]
        return Path(snapshot_download(repo_id, allow_patterns=patterns, **options))
    except LocalEntryNotFoundError as err:
        offline = HF_HUB_OFFLINE or _offline_env() or options.get("local_files_only")
        why = ("not in the Hub cache, and downloads are off (HF_HUB_OFFLINE=1 or local_files_only=True)" if offline
               else "not in the Hub cache, and the Hub could not be reached")
        raise FileNotFoundError(f"{what}: {why}; cache: {options.get('cache_dir') or _cache_dir()}") from err
    except (HfHubHTTPError, OSError, ValueError) as err:  # no such repo / file / revision, access denied, network
        raise FileNotFoundError(f"{what}: cannot be fetched from the Hub ({type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else ''})") from err


def _cache_dir() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(HF_HUB_CACHE)
