"""Weight interpolation with the pretrained encoder before testing (WiSE-FT, Wortsman et al., CVPR 2022).

``interpolate=[0.5, 0.7, 0.85, 1.0]`` in the run config: after fine-tuning, the encoder tested (and exported)
is θ0 + α(θ − θ0), θ the best checkpoint's weights and θ0 the pretrained encoder's, with α the one of the
list whose weights score best on dev (ties: the larger α), as the best checkpoint and the F1 threshold are
chosen. α = 1 is plain fine-tuning, α = 0 the encoder as it was. It keeps part of what the pretrained encoder
knows where fine-tuning on a small training set moves it away (the ranking recipe, docs/results.md).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

log = logging.getLogger(__name__)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the module's weights (θ0)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def interpolate(base: dict[str, Any], trained: dict[str, Any], alpha: float) -> dict[str, Any]:
    """θ0 + α(θ − θ0) per floating-point tensor (on θ's device and dtype); integer buffers are θ's."""
    if base.keys() != trained.keys():
        raise ValueError(f"the weights differ in their keys: {sorted(set(base) ^ set(trained))[:5]}")
    out = {}
    for k, t in trained.items():
        if t.is_floating_point():
            b = base[k].to(device=t.device, dtype=t.dtype)
            out[k] = b + alpha * (t - b)
        else:
            out[k] = t
    return out


def check_alphas(alphas: Any) -> list[float]:
    """The config's ``interpolate`` as a list of α in [0, 1] (ValueError otherwise)."""
    values = [alphas] if isinstance(alphas, (int, float)) else list(alphas)
    if not values or any(isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 <= a <= 1 for a in values):
        raise ValueError(f"interpolate: a list of α in [0, 1] (1: the trained weights, 0: the pretrained ones), "
                         f"got {alphas}")
    return [float(a) for a in values]


def best_alpha(dev_scores: dict[float, float]) -> float:
    """The α with the best dev score; of tied ones the larger (the closer to the trained weights)."""
    return max(dev_scores, key=lambda a: (dev_scores[a], a))


def choose_alpha(trainer: L.Trainer, module: L.LightningModule, datamodule: Any, base: dict[str, torch.Tensor],
                 alphas: Sequence[float], metric: str) -> tuple[float, dict[float, float]]:
    """Set ``module.encoder`` to θ0 + α(θ − θ0) for the α of ``alphas`` with the best dev ``metric``.

    θ is the encoder's current weights (load the best checkpoint first); each α is validated on the dev split
    (``trainer.validate``: no test data is read); a single α is set without validating. Returns the α and
    the dev score of each α validated.
    """
    trained = snapshot(module.encoder)
    scores: dict[float, float] = {}
    if len(alphas) > 1:
        for a in alphas:
            module.encoder.load_state_dict(interpolate(base, trained, a))
            trainer.validate(module, datamodule=datamodule, verbose=False)
            scores[a] = float(trainer.callback_metrics[f"val/{metric}"])
    best = best_alpha(scores) if scores else alphas[0]
    module.encoder.load_state_dict(interpolate(base, trained, best))
    log.info("testing θ0 + %.2f (θ − θ0) (dev %s by α: %s)", best, metric, scores or "one α")
    return best, scores
