"""Loggers: Lightning's, with what they print on every run and should not."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers.wandb import WandbLogger as _LightningWandbLogger


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` (same arguments), minus ``anonymous=None`` in the arguments of ``wandb.init``:
    recent wandb versions warn "The anonymous setting has no effect" whenever the key is passed at all. An explicit
    ``anonymous=True`` is still passed on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
