"""Batch-softmax contrastive (BSC) loss, PAPER.md "Batch-softmax contrastive (BSC) loss".

For a batch of N pairs with (normalised) embeddings Q, A (N × d) and temperature τ:

    L0 = −mean_i log softmax_j(q_i·a_j / τ)[j = i]     queries against every answer
    L1 = −mean_i log softmax_j(a_i·q_j / τ)[j = i]     answers against every query
    eq. 1: L = L0 + L1 (``reduction="sum"``); the authors' code returns (L0 + L1) / 2 (``"mean"``).

Extensions implemented here (all described in PAPER.md):

- eq. 5, labelled negatives: pair i is positive iff labels[i] > positive_threshold. Negative pairs
  contribute no row (no numerator, not counted in the mean) but their answers — and, for L1, their
  queries — stay as columns, i.e. hard negatives for the other rows.
- duplicate texts (``q_ids`` / ``a_ids`` integer ids, equal id = identical text): with
  ``duplicates="positive"`` (supervised-contrastive treatment) query row i has as positive columns every
  answer j with a_ids[j] == a_ids[i] and every answer j of a positive pair with q_ids[j] == q_ids[i]
  (symmetrically for answer rows); the row loss is the cross-entropy against the uniform distribution
  over its positive columns. ``"mask"`` removes those extra columns from the denominator instead,
  ``"ignore"`` keeps the plain diagonal targets.
- ``same_side_negatives`` (ablation): rows also see the other same-side embeddings (q_i vs q_j).

Everything is computed in float32 (float64 inputs stay float64) with autocast disabled.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from bsc_lightning.losses.distributed import (
    check_equal_batches,
    gather_local_grad,
    gather_no_grad,
    gather_with_grad,
    world_info,
)

NORMALIZATIONS = ("l2", "coordinate", "none")
REDUCTIONS = ("mean", "sum")
DUPLICATE_MODES = ("positive", "mask", "ignore")
# Guards the per-coordinate range of "coordinate" normalisation (constant coordinate, batch of one).
COORDINATE_EPS = 1e-6


class LossOutput(NamedTuple):
    """What every loss module returns: a scalar loss and detached scalars to log."""

    loss: Tensor
    logs: dict[str, Tensor]


class BSCTerms(NamedTuple):
    """Parts of the BSC loss. With ``rows`` set, each value is the rank-partial value (see bsc_loss_terms)."""

    loss: Tensor  # combined per `reduction` (L0 alone when one-way)
    qa: Tensor  # L0: query rows vs answer columns
    aq: Tensor | None  # L1: answer rows vs query columns (None when one-way)
    acc: Tensor  # detached top-1 accuracy of positive query rows (argmax is a positive column)
    num_positive: Tensor  # number of positive pairs in the whole (global) batch


def upcast(x: Tensor) -> Tensor:
    """Cast half / bfloat16 to float32; float32 and float64 are kept."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def normalize_embeddings(x: Tensor, normalization: str) -> Tensor:
    """Normalise x (N, d) over the batch as PAPER.md describes: "l2", "coordinate" or "none"."""
    if normalization == "l2":
        return F.normalize(x, dim=-1)
    if normalization == "coordinate":
        # Range over the (global) batch, no mean subtraction, as in the paper.
        spread = x.amax(dim=0) - x.amin(dim=0)  # (d,)
        return x / spread.clamp_min(COORDINATE_EPS)
    if normalization == "none":
        return x
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def same_text(ids: Tensor | None, n: int, device: torch.device) -> Tensor:
    """(n, n) bool: True where the two texts are identical (the identity when ids are unknown)."""
    if ids is None:
        return torch.eye(n, dtype=torch.bool, device=device)
    ids = ids.to(device)
    return ids[:, None] == ids[None, :]  # (n, n)


def positive_pairs(labels: Tensor | None, threshold: float, n: int, device: torch.device) -> Tensor:
    """(n,) bool: pair i is positive when labels[i] > threshold (eq. 5); all pairs when labels is None."""
    if labels is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    labels = labels.detach().to(device)
    if labels.is_floating_point():
        # Compare in the labels' own precision: a float32 label 0.6 (= 0.6000000238) is not > t = 0.6.
        return labels > torch.tensor(threshold, dtype=labels.dtype, device=device)
    return labels > threshold


def _same_rows(ids: Tensor | None, lo: int, hi: int, cols: Tensor) -> Tensor:
    """(hi − lo, N) bool: text equality of rows lo..hi with every pair (identity when ids are unknown)."""
    if ids is None:
        return cols[lo:hi, None] == cols[None, :]
    ids = ids.to(cols.device)
    return ids[lo:hi, None] == ids[None, :]


def _direction(
    rows: Tensor,
    cols: Tensor,
    rows_side: Tensor,
    same_row: Tensor,
    same_col: Tensor,
    positive: Tensor,
    diag: Tensor,
    logit_scale: Tensor | float,
    duplicates: str,
    same_side_negatives: bool,
) -> tuple[Tensor, Tensor]:
    """Per-row loss of one direction and whether each row's top-1 column is a positive.

    rows (n, d): the row embeddings; cols (N, d): the other side (columns); rows_side (N, d): all
    embeddings of the row side (same-side negatives); same_row / same_col (n, N): text equality of the
    row side / column side between row i and pair j; positive (N,) bool; diag (n, N): column j is row i's
    own pair. Returns per-row loss (n,) and correct (n,) bool.
    """
    logits = rows @ cols.T * logit_scale  # (n, N)
    dup_targets = same_col | (same_row & positive[None, :])  # (n, N), includes the diagonal
    targets = dup_targets if duplicates == "positive" else diag  # (n, N)
    if duplicates == "mask":
        logits = logits.masked_fill(dup_targets & ~diag, float("-inf"))
    if same_side_negatives:
        extra = (rows @ rows_side.T * logit_scale).masked_fill(same_row, float("-inf"))  # (n, N)
        logits = torch.cat([logits, extra], dim=1)  # (n, 2N)
        no_target = torch.zeros_like(targets)
        targets = torch.cat([targets, no_target], dim=1)  # (n, 2N)
        dup_targets = torch.cat([dup_targets, no_target], dim=1)  # (n, 2N)
    log_probs = logits.log_softmax(dim=1)  # (n, N) or (n, 2N)
    # where() rather than a product: masked columns hold -inf and 0 * -inf would be NaN.
    per_row = -torch.where(targets, log_probs, 0.0).sum(dim=1) / targets.sum(dim=1)  # (n,)
    correct = dup_targets.gather(1, logits.argmax(dim=1, keepdim=True)).squeeze(1)  # (n,)
    return per_row, correct


def check_pair_inputs(q: Tensor, a: Tensor, *optional: Tensor | None) -> None:
    """Raise ValueError unless q, a are (B, d) and every given optional tensor is (B,)."""
    if q.dim() != 2 or q.shape != a.shape:
        raise ValueError(f"q and a must both be (B, d) with the same shape, got {tuple(q.shape)}, {tuple(a.shape)}")
    for t in optional:
        if t is not None and t.shape != (q.shape[0],):
            raise ValueError(f"labels / dup ids must have shape ({q.shape[0]},), got {tuple(t.shape)}")


def bsc_loss_terms(
    q: Tensor,
    a: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float | Tensor = 0.1,
    normalization: str = "l2",
    symmetric: bool = True,
    reduction: str = "mean",
    positive_threshold: float = 0.5,
    q_ids: Tensor | None = None,
    a_ids: Tensor | None = None,
    duplicates: str = "positive",
    same_side_negatives: bool = False,
    logit_scale: Tensor | float | None = None,
    rows: slice | None = None,
    row_block: int | None = None,
) -> BSCTerms:
    """BSC loss (eq. 1 with eq. 5 masking) and its parts on a batch of N pairs.

    q, a: (N, d) embeddings; labels: (N,) or None (all positive); q_ids, a_ids: (N,) int64 ids of the
    q-side and a-side texts (equal id = identical text) or None. ``logit_scale`` (α = 1/τ, may be a
    learnable tensor) overrides ``temperature`` when given.
    ``rows`` (a contiguous slice of 0..N) computes only those rows — the local rows of a gathered
    distributed batch — and returns per direction (sum of the positive-row losses over ``rows``)
    · N / len(rows) / (positive rows in all N): the average of this over W equal disjoint slices is
    exactly the full-batch value, as is the average of its gradients (what DDP computes).
    A batch without positive pair gives 0, still connected to the graph. ``row_block`` computes the
    rows in blocks of that many, recomputed in backward: same value and gradient, memory O(row_block·N).
    """
    check_pair_inputs(q, a, labels, q_ids, a_ids)
    if row_block is not None and row_block < 1:
        raise ValueError(f"row_block must be >= 1 or None, got {row_block}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if duplicates not in DUPLICATE_MODES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_MODES}, got {duplicates!r}")
    if logit_scale is None:
        if not isinstance(temperature, Tensor) and temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        logit_scale = 1.0 / temperature
    n_all = q.shape[0]
    start, stop, step = (rows or slice(None)).indices(n_all)
    if step != 1 or stop <= start:
        raise ValueError(f"rows must be a non-empty contiguous slice of 0..{n_all}, got {rows}")
    device = q.device

    with torch.autocast(device_type=device.type, enabled=False):
        q, a = upcast(q), upcast(a)
        dtype = q.dtype
        if isinstance(logit_scale, Tensor):
            logit_scale = logit_scale.to(dtype)
        qn = normalize_embeddings(q, normalization)  # (N, d)
        an = normalize_embeddings(a, normalization)  # (N, d)

        positive = positive_pairs(labels, positive_threshold, n_all, device)  # (N,)
        num_positive = positive.sum()
        cols = torch.arange(n_all, device=device)  # (N,)

        def block(lo: int, hi: int, qn: Tensor, an: Tensor, logit_scale: Tensor | float) -> tuple[Tensor, ...]:
            # Row weights: 1/#positives for positive rows, 0 for labelled negatives (eq. 5); the factor
            # N / n makes the W rank-partial values average to the global mean.
            w = positive[lo:hi].to(dtype) * (n_all / (stop - start))  # (b,)
            w = w / num_positive.clamp_min(1).to(dtype)  # (b,)
            eq_q = _same_rows(q_ids, lo, hi, cols)  # (b, N)
            eq_a = _same_rows(a_ids, lo, hi, cols)  # (b, N)
            common = {"positive": positive, "diag": cols[lo:hi, None] == cols[None, :], "logit_scale": logit_scale,
                      "duplicates": duplicates, "same_side_negatives": same_side_negatives}
            per_qa, correct = _direction(qn[lo:hi], an, qn, eq_q, eq_a, **common)  # (b,), (b,)
            out = [(per_qa * w).sum(), (correct.to(dtype) * w).sum()]
            if symmetric:
                per_aq, _ = _direction(an[lo:hi], qn, an, eq_a, eq_q, **common)  # (b,)
                out.append((per_aq * w).sum())
            return tuple(out)

        # row_block: rows in blocks, each recomputed in backward (checkpoint), so the logits and masks
        # held at once are (row_block, N) instead of (n, N) — what makes a 65k-pair batch fit.
        size = row_block or (stop - start)
        parts = []
        for lo in range(start, stop, size):
            hi = min(lo + size, stop)
            if row_block:
                parts.append(checkpoint(block, lo, hi, qn, an, logit_scale, use_reentrant=False))
            else:
                parts.append(block(lo, hi, qn, an, logit_scale))
        loss_qa = torch.stack([p[0] for p in parts]).sum()
        acc = torch.stack([p[1] for p in parts]).sum().detach()
        loss_aq = None
        loss = loss_qa
        if symmetric:
            loss_aq = torch.stack([p[2] for p in parts]).sum()
            loss = loss_qa + loss_aq if reduction == "sum" else (loss_qa + loss_aq) / 2
    return BSCTerms(loss=loss, qa=loss_qa, aq=loss_aq, acc=acc, num_positive=num_positive)


def bsc_loss(
    q: Tensor,
    a: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float | Tensor = 0.1,
    normalization: str = "l2",
    symmetric: bool = True,
    reduction: str = "mean",
    positive_threshold: float = 0.5,
    q_ids: Tensor | None = None,
    a_ids: Tensor | None = None,
    duplicates: str = "positive",
    same_side_negatives: bool = False,
) -> Tensor:
    """Scalar BSC loss of one (local, non-gathered) batch; see ``bsc_loss_terms`` for the arguments."""
    return bsc_loss_terms(
        q,
        a,
        labels,
        temperature=temperature,
        normalization=normalization,
        symmetric=symmetric,
        reduction=reduction,
        positive_threshold=positive_threshold,
        q_ids=q_ids,
        a_ids=a_ids,
        duplicates=duplicates,
        same_side_negatives=same_side_negatives,
    ).loss


class BSCLoss(nn.Module):
    """BSC loss module, with optional learnable temperature and cross-rank gathering.

    forward(q (B, d), a (B, d), labels (B,) | None, q_ids (B,) | None, a_ids (B,) | None) -> LossOutput
    with logs ``bsc``, ``bsc_qa``, ``bsc_aq`` (symmetric only), ``temperature``, ``acc``.

    Temperature: stored as α = 1/τ (``self.alpha``) like the authors' code; an ``nn.Parameter`` when
    ``learn_temperature`` (clamped to [1/temperature_max, 1/temperature_min] in forward, so outside the
    range it gets no gradient), else a buffer.

    Distributed (torch.distributed initialised, world size W > 1; open_clip style flags):
    q and a are gathered from all ranks (``gather_with_grad=True``: differentiable all_gather;
    False: only the local slice keeps its gradient — cheaper, not exact), labels and dup ids are
    gathered without gradient, and normalisation (incl. coordinate min/max) uses the global batch.
    ``local_loss=True``: only the local B rows are computed (B × W·B logits per direction) and the value
    is scaled so that the mean over ranks — and DDP's gradient average — equal the single-process loss
    on the concatenated global batch; every log follows the same convention (mean over ranks = global
    value), so log with ``sync_dist=True``. ``local_loss=False``: every rank computes the full global
    loss (W·B × W·B logits); DDP averaging then also gives the single-process gradient. Every rank must
    hold the same batch size (checked, raises ValueError on all ranks).
    """

    needs_positives = True  # trains at loss 0 on a batch without one: the run checks the data first

    def __init__(
        self,
        temperature: float = 0.1,
        learn_temperature: bool = False,
        temperature_min: float = 0.01,
        temperature_max: float = 10.0,
        normalization: str = "l2",
        symmetric: bool = True,
        reduction: str = "mean",
        positive_threshold: float = 0.5,
        duplicates: str = "positive",
        same_side_negatives: bool = False,
        gather_with_grad: bool = True,
        local_loss: bool = True,
        row_block: int | None = None,
    ) -> None:
        super().__init__()
        self.row_block = row_block
        if temperature <= 0 or not 0 < temperature_min <= temperature_max:
            raise ValueError(
                f"need temperature > 0 and 0 < temperature_min <= temperature_max, got "
                f"{temperature}, {temperature_min}, {temperature_max}"
            )
        if learn_temperature and not temperature_min <= temperature <= temperature_max:
            raise ValueError(f"initial temperature {temperature} outside [{temperature_min}, {temperature_max}]")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if duplicates not in DUPLICATE_MODES:
            raise ValueError(f"duplicates must be one of {DUPLICATE_MODES}, got {duplicates!r}")
        alpha = torch.tensor(1.0 / temperature, dtype=torch.float32)
        if learn_temperature:
            self.alpha = nn.Parameter(alpha)
        else:
            self.register_buffer("alpha", alpha)
        self.learn_temperature = learn_temperature
        self.temperature_min = temperature_min
        self.temperature_max = temperature_max
        self.normalization = normalization
        self.symmetric = symmetric
        self.reduction = reduction
        self.positive_threshold = positive_threshold
        self.duplicates = duplicates
        self.same_side_negatives = same_side_negatives
        self.gather_with_grad = gather_with_grad
        self.local_loss = local_loss

    def logit_scale(self) -> Tensor:
        """α = 1/τ actually used (clamped when learned)."""
        alpha = upcast(self.alpha)
        if self.learn_temperature:
            alpha = alpha.clamp(1.0 / self.temperature_max, 1.0 / self.temperature_min)
        return alpha

    @property
    def temperature(self) -> float:
        return float(1.0 / self.logit_scale().detach())

    def forward(
        self,
        q: Tensor,
        a: Tensor,
        labels: Tensor | None = None,
        q_ids: Tensor | None = None,
        a_ids: Tensor | None = None,
    ) -> LossOutput:
        check_pair_inputs(q, a, labels, q_ids, a_ids)
        rows = None
        world, rank = world_info()
        if world > 1:
            check_equal_batches(q, a, labels, q_ids, a_ids)
            batch = q.shape[0]
            gather = gather_with_grad if self.gather_with_grad else gather_local_grad
            q, a = gather(q), gather(a)  # (W·B, d)
            labels, q_ids, a_ids = (None if t is None else gather_no_grad(t) for t in (labels, q_ids, a_ids))
            if self.local_loss:
                rows = slice(rank * batch, (rank + 1) * batch)
        scale = self.logit_scale()
        terms = bsc_loss_terms(
            q,
            a,
            labels,
            logit_scale=scale,
            normalization=self.normalization,
            symmetric=self.symmetric,
            reduction=self.reduction,
            positive_threshold=self.positive_threshold,
            q_ids=q_ids,
            a_ids=a_ids,
            duplicates=self.duplicates,
            same_side_negatives=self.same_side_negatives,
            rows=rows,
            row_block=self.row_block,
        )
        logs = {"bsc": terms.loss.detach(), "bsc_qa": terms.qa.detach()}
        if terms.aq is not None:
            logs["bsc_aq"] = terms.aq.detach()
        logs["temperature"] = (1.0 / scale).detach()
        logs["acc"] = terms.acc
        return LossOutput(terms.loss, logs)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature:.4g}, learn_temperature={self.learn_temperature}, "
            f"normalization={self.normalization!r}, symmetric={self.symmetric}, reduction={self.reduction!r}, "
            f"duplicates={self.duplicates!r}, same_side_negatives={self.same_side_negatives}, "
            f"gather_with_grad={self.gather_with_grad}, local_loss={self.local_loss}"
        )
