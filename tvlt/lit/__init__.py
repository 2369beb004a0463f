"""LightningModules for TVLT: pretraining (MAE + VAM), CMU-MOSEI sentiment and emotion, classification of your own
labels, video-audio retrieval.

Built by Hydra from ``conf/model/*.yaml`` + ``conf/experiment/*.yaml``; see ``docs/training.md``.
"""

from tvlt.checkpoints import CheckpointError, read_checkpoint
from tvlt.lit.base import NonFiniteLossError, TvltLitModule, load_lit_checkpoint
from tvlt.lit.classify import ClassificationModule
from tvlt.lit.pretrain import PretrainModule
from tvlt.lit.retrieval import RetrievalModule
from tvlt.lit.sentiment import EmotionModule, SentimentModule

__all__ = ["CheckpointError", "ClassificationModule", "EmotionModule", "NonFiniteLossError", "PretrainModule", "RetrievalModule",
           "SentimentModule", "TvltLitModule", "load_lit_checkpoint", "read_checkpoint"]
