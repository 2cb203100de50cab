"""The run folder: never overwrite an earlier run, find the checkpoint to resume, write results atomically."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch


class RunDirError(RuntimeError):
    """The run directory holds an earlier run that this one would overwrite."""


def check_run_dir(out: Path, resume: Any) -> Path | None:
    """The checkpoint to resume from (None: a fresh run); refuses to overwrite an earlier run.

    ``resume``: null/false (fresh run: the folder must hold no checkpoint, log or metrics), true
    (continue from ``<out>/checkpoints/last.ckpt``) or a checkpoint path.
    """
    last = out / "checkpoints" / "last.ckpt"
    if resume in (None, False):
        earlier = [p.name for p in (out / "metrics.json", out / "checkpoints", out / "logs", out / "wandb",
                                    out / "choose")  # choose: the variants of a run (bsc_lightning.choose)
                   if p.exists() and (p.is_file() or any(p.iterdir()))]
        if earlier:
            raise RunDirError(f"{out} already holds a run ({', '.join(earlier)}): continue it with resume=true, "
                              "or start a new one in another folder (hydra.run.dir=...)")
        return None
    path = last if resume is True else Path(str(resume)).expanduser()
    if not path.is_file():
        raise RunDirError(f"resume={resume}: no checkpoint at {path} (a run saves checkpoints/last.ckpt at "
                          "every epoch end and every checkpoint.every_n_steps steps)")
    return path


def stage_of(ckpt: Path) -> str:
    """The stage (``stage1``, ``stage2``) a checkpoint was saved in."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    return (state.get("bsc") or {}).get("stage", "stage1")


def encoder_state(ckpt: str | Path) -> dict[str, torch.Tensor]:
    """The encoder's weights in a checkpoint (its ``encoder.*`` entries, prefix removed), on CPU."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}


def best_score(callback: L.pytorch.callbacks.ModelCheckpoint) -> float | None:
    """The best dev score; read back from the checkpoint when spawned ranks kept it to themselves."""
    score = callback.best_model_score
    if score is None and callback.best_model_path:
        states = torch.load(callback.best_model_path, map_location="cpu", weights_only=True)["callbacks"]
        score = next((s.get("best_model_score") for k, s in states.items()
                      if k.startswith("ModelCheckpoint") and s.get("best_model_score") is not None), None)
    return None if score is None else float(score)


def write_atomic(path: Path, text: str) -> None:
    """Write then rename: a killed run never leaves a half-written metrics.json or config.yaml."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
