"""Baseline pair losses of PAPER.md (MSE, combo eq. 6, triplet) plus CoSENT, same contract as BSCLoss.

forward(q (B, d), a (B, d), labels (B,) | None, q_ids (B,) | None, a_ids (B,) | None) -> LossOutput.
All are computed in float32 (float64 kept) with autocast disabled. They are local to the rank: under
DDP they see only the local batch (no gathering); since they are means over the local batch and the
per-rank batches are equal, DDP's gradient average is still the gradient of the global mean for MSE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bsc_lightning.losses.bsc import BSCLoss, LossOutput, check_pair_inputs, positive_pairs, same_text, upcast


def _require_labels(labels: Tensor | None, name: str) -> Tensor:
    if labels is None:
        raise ValueError(f"{name} needs labels (targets y in [0, 1]); got labels=None")
    return labels


def pair_cosine(q: Tensor, a: Tensor) -> Tensor:
    """cos(q_i, a_i) for each pair, (B,)."""
    return F.cosine_similarity(q, a, dim=-1)  # (B,)


class MSELoss(nn.Module):
    """Cosine-similarity regression: mean_i (cos(q_i, a_i) − y_i)² (L_MSE of eq. 6). Logs ``mse``."""

    def forward(
        self,
        q: Tensor,
        a: Tensor,
        labels: Tensor | None = None,
        q_ids: Tensor | None = None,
        a_ids: Tensor | None = None,
    ) -> LossOutput:
        labels = _require_labels(labels, "MSELoss")
        check_pair_inputs(q, a, labels)
        with torch.autocast(device_type=q.device.type, enabled=False):
            q, a = upcast(q), upcast(a)
            loss = (pair_cosine(q, a) - labels.to(q.dtype)).pow(2).mean()
        return LossOutput(loss, {"mse": loss.detach()})


class ComboLoss(nn.Module):
    """Eq. 6: L = μ·L_BSC + (1 − μ)·L_MSE. Logs ``mse`` and all BSC logs (``bsc``, ...).

    The BSC part keeps its own options (normalisation, τ, gathering); MSE always uses cosine.
    """

    def __init__(self, bsc: BSCLoss, mu: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= mu <= 1.0:
            raise ValueError(f"mu must be in [0, 1], got {mu}")
        self.bsc = bsc
        self.mse = MSELoss()
        self.mu = mu

    def forward(
        self,
        q: Tensor,
        a: Tensor,
        labels: Tensor | None = None,
        q_ids: Tensor | None = None,
        a_ids: Tensor | None = None,
    ) -> LossOutput:
        labels = _require_labels(labels, "ComboLoss")
        bsc = self.bsc(q, a, labels, q_ids, a_ids)
        mse = self.mse(q, a, labels)
        loss = self.mu * bsc.loss + (1.0 - self.mu) * mse.loss
        return LossOutput(loss, {**bsc.logs, **mse.logs})

    def extra_repr(self) -> str:
        return f"mu={self.mu}"


class TripletLoss(nn.Module):
    """Batch-all triplet loss on cosine distance d = 1 − cos (PAPER.md baselines, margin 0.5).

    Anchors: q_i of every positive pair i (labels[i] > positive_threshold; all pairs when labels is None),
    positive a_i, negatives every a_j that is not a positive for q_i: j ≠ i, a_ids[j] ≠ a_ids[i] (not the
    same answer text) and not (q_ids[j] == q_ids[i] and pair j positive). Loss = mean over all valid
    triplets of relu(d(q_i, a_i) − d(q_i, a_j) + margin); 0 (connected to the graph) when there is none.
    Logs ``triplet`` and ``triplets`` (number of valid triplets).
    """

    needs_positives = True  # trains at loss 0 on a batch without one: the run checks the data first

    def __init__(self, margin: float = 0.5, positive_threshold: float = 0.5) -> None:
        super().__init__()
        self.margin = margin
        self.positive_threshold = positive_threshold

    def forward(
        self,
        q: Tensor,
        a: Tensor,
        labels: Tensor | None = None,
        q_ids: Tensor | None = None,
        a_ids: Tensor | None = None,
    ) -> LossOutput:
        check_pair_inputs(q, a, labels, q_ids, a_ids)
        n, device = q.shape[0], q.device
        with torch.autocast(device_type=device.type, enabled=False):
            q, a = upcast(q), upcast(a)
            distance = 1.0 - F.normalize(q, dim=-1) @ F.normalize(a, dim=-1).T  # (B, B)
            positive = positive_pairs(labels, self.positive_threshold, n, device)  # (B,)
            positive_cols = same_text(a_ids, n, device) | (same_text(q_ids, n, device) & positive[None, :])
            valid = positive[:, None] & ~positive_cols  # (B, B): anchor i, negative column j
            hinge = F.relu(distance.diagonal()[:, None] - distance + self.margin)  # (B, B)
            count = valid.sum()
            loss = (hinge * valid.to(hinge.dtype)).sum() / count.clamp_min(1).to(hinge.dtype)
        return LossOutput(loss, {"triplet": loss.detach(), "triplets": count.detach().to(loss.dtype)})

    def extra_repr(self) -> str:
        return f"margin={self.margin}, positive_threshold={self.positive_threshold}"


class CoSENTLoss(nn.Module):
    """CoSENT: log(1 + Σ_{(i,j): y_i > y_j} exp(scale·(cos_j − cos_i))), cos_i = cos(q_i, a_i).

    A ranking loss on the pair cosines: every pair with a higher label should score higher. Labels
    required. Logs ``cosent``.
    """

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(
        self,
        q: Tensor,
        a: Tensor,
        labels: Tensor | None = None,
        q_ids: Tensor | None = None,
        a_ids: Tensor | None = None,
    ) -> LossOutput:
        labels = _require_labels(labels, "CoSENTLoss")
        check_pair_inputs(q, a, labels)
        with torch.autocast(device_type=q.device.type, enabled=False):
            q, a = upcast(q), upcast(a)
            cos = pair_cosine(q, a)  # (B,)
            y = labels.detach()
            diff = self.scale * (cos[None, :] - cos[:, None])  # (B, B): [i, j] = scale·(cos_j − cos_i)
            diff = diff.masked_fill(~(y[:, None] > y[None, :]), float("-inf"))  # keep y_i > y_j
            # The extra 0 is the "1 +" and keeps the result finite and connected when no pair is ordered.
            loss = torch.logsumexp(torch.cat([diff.new_zeros(1), diff.flatten()]), dim=0)
        return LossOutput(loss, {"cosent": loss.detach()})

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
