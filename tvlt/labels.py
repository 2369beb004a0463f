"""Label orders that are contracts between the data and the model.

:data:`EMOTIONS` is the order of the six CMU-MOSEI emotions everywhere in this project: the columns the emotion
datamodule reads from a label file or manifest, the (B, 6) ``labels`` of a batch, the emotion model's six logits
(``num_labels=6``), the metrics' per-emotion names and the ``p_<emotion>`` columns of ``predictions.csv``. A model
fine-tuned with it predicts emotion k at logit k, so changing the order silently relabels every trained emotion
model: do not. The order is the original release's emotion loader and metrics (REFERENCE.md B.5); the CMU
Multimodal SDK stores the same emotions in another order (``datamodules.prepare.SDK_EMOTIONS``), which the
preparation tool reorders into this one.

Pure Python: imported by ``datamodules`` (no torch needed) and by ``tvlt.metrics`` / ``tvlt.lit``.
"""

from __future__ import annotations

__all__ = ["EMOTIONS"]

EMOTIONS: tuple[str, ...] = ("happy", "sad", "angry", "fear", "disgust", "surprise")
