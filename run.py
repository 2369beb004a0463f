"""Train, test or predict with TVLT: the Hydra entry point.

    python run.py experiment=mosei                         # fit, validate, test the best checkpoint (demo data)
    python run.py experiment=mosei data.root=/data/mosei model.pretrained=/ckpt/TVLT.ckpt
    python run.py experiment=mosei ckpt_path=logs/mosei/runs/<run>/checkpoints/last.ckpt   # resume
    python run.py -m experiment=mosei model.optimizer.lr=1e-4,5e-5                        # sweep
    python run.py mode=predict experiment=mosei ckpt_path=<best.ckpt> input=clip.mp4       # one clip
    python run.py experiment=classify data.manifest=clips.csv                              # your own labels

See docs/training.md. The job itself is :func:`tvlt.lit.job.run`; it returns the value of ``optimized_metric`` so
sweepers can optimize it. Lightning's DDP children re-run this file (with ``hydra.run.dir`` of the run).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf


def _unique_dir(base: str) -> str:
    # imported when Hydra resolves hydra.run.dir, not here: `python run.py --help` does not load torch
    from tvlt.lit.runs import reserve_run_dir

    return reserve_run_dir(base)


# registered at import, before Hydra composes (conf/hydra/default.yaml: run folders never shared by two runs)
if not OmegaConf.has_resolver("unique_dir"):
    OmegaConf.register_new_resolver("unique_dir", _unique_dir)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from tvlt.lit.job import run

    return run(cfg)


if __name__ == "__main__":
    main()
