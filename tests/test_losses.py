"""Losses against independent loop-based float64 references (no call into the code under test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bsc_lightning.losses import (
    BSCLoss,
    ComboLoss,
    CoSENTLoss,
    MSELoss,
    TripletLoss,
    bsc_loss,
    bsc_loss_terms,
)

# ---------------------------------------------------------------- references (pure numpy, loops)


def ref_normalize(x: np.ndarray, normalization: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for k in range(x.shape[1]):
            if normalization == "l2":
                out[i, k] = x[i, k] / math.sqrt(sum(v * v for v in x[i]))
            elif normalization == "coordinate":
                column = [x[r, k] for r in range(x.shape[0])]
                out[i, k] = x[i, k] / max(max(column) - min(column), 1e-6)
            else:
                out[i, k] = x[i, k]
    return out


def dot(u, v) -> float:
    return float(sum(float(s) * float(t) for s, t in zip(u, v)))


def ref_bsc(q, a, labels=None, tau=0.1, normalization="l2", symmetric=True, reduction="mean", thr=0.5,
            q_ids=None, a_ids=None, duplicates="positive", same_side=False) -> float:
    """PAPER.md BSC loss restated with explicit loops over rows and columns."""
    Q, A = ref_normalize(q, normalization), ref_normalize(a, normalization)
    n = len(Q)
    ids_a = list(range(n)) if q_ids is None else [int(v) for v in q_ids]
    ids_b = list(range(n)) if a_ids is None else [int(v) for v in a_ids]
    pos = [labels is None or float(labels[i]) > thr for i in range(n)]

    def direction(X, Y, id_row, id_col) -> float:
        total = 0.0
        for i in range(n):
            if not pos[i]:
                continue  # eq. 5: a labelled negative contributes no row
            scores, is_target = [], []
            for j in range(n):
                duplicate = id_col[j] == id_col[i] or (id_row[j] == id_row[i] and pos[j])
                s = dot(X[i], Y[j]) / tau
                if duplicates == "mask" and duplicate and j != i:
                    continue  # "mask": the other duplicates leave the denominator
                scores.append(s)
                is_target.append(duplicate if duplicates == "positive" else j == i)
            if same_side:
                for k in range(n):
                    if id_row[k] != id_row[i]:
                        scores.append(dot(X[i], X[k]) / tau)
                        is_target.append(False)
            top = max(scores)
            log_z = top + math.log(sum(math.exp(s - top) for s in scores))
            targets = [s for s, t in zip(scores, is_target) if t]
            total += -sum(s - log_z for s in targets) / len(targets)
        n_pos = sum(pos)
        return total / n_pos if n_pos else 0.0

    l0 = direction(Q, A, ids_a, ids_b)
    if not symmetric:
        return l0
    l1 = direction(A, Q, ids_b, ids_a)
    return (l0 + l1) / 2 if reduction == "mean" else l0 + l1


def cos(u, v) -> float:
    return dot(u, v) / math.sqrt(dot(u, u) * dot(v, v))


def ref_mse(q, a, y) -> float:
    return sum((cos(q[i], a[i]) - float(y[i])) ** 2 for i in range(len(q))) / len(q)


def ref_triplet(q, a, labels=None, margin=0.5, thr=0.5, q_ids=None, a_ids=None) -> float:
    n = len(q)
    ids_a = list(range(n)) if q_ids is None else [int(v) for v in q_ids]
    ids_b = list(range(n)) if a_ids is None else [int(v) for v in a_ids]
    pos = [labels is None or float(labels[i]) > thr for i in range(n)]
    losses = []
    for i in range(n):
        if not pos[i]:
            continue
        for j in range(n):
            if ids_b[j] == ids_b[i] or (ids_a[j] == ids_a[i] and pos[j]):
                continue  # a_j is a positive for q_i (or is a_i itself)
            d_pos, d_neg = 1 - cos(q[i], a[i]), 1 - cos(q[i], a[j])
            losses.append(max(d_pos - d_neg + margin, 0.0))
    return sum(losses) / len(losses) if losses else 0.0


def ref_cosent(q, a, y, scale=20.0) -> float:
    c = [cos(q[i], a[i]) for i in range(len(q))]
    terms = [scale * (c[j] - c[i]) for i in range(len(q)) for j in range(len(q)) if y[i] > y[j]]
    return math.log(1 + sum(math.exp(t) for t in terms))


# ---------------------------------------------------------------- fixtures


def batch(n=6, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, d, generator=g, dtype=torch.float64)
    a = q + 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64)  # correlated, so losses are non-trivial
    return q, a


LABELS = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
# Pairs 0/3 share a query text, 1/2 an answer text, 4/5 both texts; id 4 is used on both sides on
# purpose (ids are per text and a text may be a query and an answer): sides are never compared.
DUP_A = torch.tensor([0, 1, 2, 0, 4, 4])
DUP_B = torch.tensor([7, 8, 8, 9, 4, 4])


def close(x: torch.Tensor, ref: float, tol: float = 1e-12) -> None:
    assert abs(float(x) - ref) <= tol * max(1.0, abs(ref)), (float(x), ref)


# ---------------------------------------------------------------- BSC values


@pytest.mark.parametrize("normalization", ["l2", "coordinate", "none"])
@pytest.mark.parametrize("symmetric,reduction", [(True, "mean"), (True, "sum"), (False, "mean"), (False, "sum")])
def test_bsc_matches_reference(normalization, symmetric, reduction):
    q, a = batch()
    tau = 1.2 if normalization == "coordinate" else 0.1 if normalization == "l2" else 2.0
    got = bsc_loss(q, a, temperature=tau, normalization=normalization, symmetric=symmetric, reduction=reduction)
    close(got, ref_bsc(q, a, tau=tau, normalization=normalization, symmetric=symmetric, reduction=reduction))


def test_hand_made_two_pairs_and_sum_is_twice_mean():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    a = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    s = 1 / math.sqrt(2) / 0.5  # cos(q0, a0) / tau; cos(q0, a1) = 0, cos(q1, a0) = s·tau, cos(q1, a1) = 1
    l0 = (-math.log(math.exp(s) / (math.exp(s) + 1)) - math.log(math.e**2 / (math.exp(s) + math.e**2))) / 2
    l1 = (-math.log(math.exp(s) / (math.exp(s) + math.exp(s))) - math.log(math.e**2 / (1 + math.e**2))) / 2
    close(bsc_loss(q, a, temperature=0.5, symmetric=False), l0)
    close(bsc_loss(q, a, temperature=0.5), (l0 + l1) / 2)
    close(bsc_loss(q, a, temperature=0.5, reduction="sum"), l0 + l1)


def test_coordinate_normalisation_uses_range_without_centering():
    q = torch.tensor([[2.0, 1.0], [4.0, -1.0], [3.0, 0.0]], dtype=torch.float64)  # ranges 2 and 2
    a = torch.tensor([[1.0, 0.0], [0.0, 5.0], [1.0, 1.0]], dtype=torch.float64)  # ranges 1 and 5
    qn = [[1.0, 0.5], [2.0, -0.5], [1.5, 0.0]]
    an = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.2]]
    expected = ref_bsc(qn, an, tau=1.2, normalization="none")
    close(bsc_loss(q, a, temperature=1.2, normalization="coordinate"), expected)


@pytest.mark.parametrize("symmetric", [True, False])
def test_labelled_negatives_eq5(symmetric):
    q, a = batch()
    got = bsc_loss(q, a, LABELS, symmetric=symmetric)
    close(got, ref_bsc(q, a, LABELS, symmetric=symmetric))


def test_negative_pair_answer_is_a_column():
    q = torch.tensor([[1.0, 0.2], [0.3, 1.0]], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([[0.9, 0.1], [0.5, 0.8]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1.0, 0.0], dtype=torch.float64)
    loss = bsc_loss(q, a, labels, symmetric=False, normalization="none", temperature=1.0)
    s00, s01 = dot(q[0].tolist(), a[0].tolist()), dot(q[0].tolist(), a[1].tolist())
    close(loss, -math.log(math.exp(s00) / (math.exp(s00) + math.exp(s01))))
    # Dropping the negative pair instead leaves a single column, i.e. a zero loss.
    assert float(bsc_loss(q[:1], a[:1], symmetric=False)) == 0.0
    loss.backward()
    assert a.grad[1].abs().sum() > 0  # the negative answer is a column (hard negative)
    assert q.grad[1].abs().sum() == 0  # the negative query has no row in L0
    q.grad = None
    bsc_loss(q, a, labels, normalization="none", temperature=1.0).backward()
    assert q.grad[1].abs().sum() > 0  # ...but it is a column of L1


@pytest.mark.parametrize("thr", [0.6, 0.5])
def test_graded_labels_threshold(thr):
    q, a = batch(n=5)
    labels = torch.tensor([0.9, 0.6, 0.55, 0.2, 1.0], dtype=torch.float64)
    close(bsc_loss(q, a, labels, positive_threshold=thr), ref_bsc(q, a, labels, thr=thr))
    terms = bsc_loss_terms(q, a, labels, positive_threshold=thr)
    assert int(terms.num_positive) == (2 if thr == 0.6 else 4)
    # float32 labels are compared in float32: 0.6 (= 0.6000000238 in float32) is not above t = 0.6.
    assert int(bsc_loss_terms(q, a, labels.float(), positive_threshold=thr).num_positive) == int(terms.num_positive)


@pytest.mark.parametrize("duplicates", ["positive", "mask", "ignore"])
@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("same_side", [False, True])
def test_duplicates(duplicates, with_labels, same_side):
    q, a = batch()
    labels = LABELS if with_labels else None
    got = bsc_loss(q, a, labels, duplicates=duplicates, q_ids=DUP_A, a_ids=DUP_B, same_side_negatives=same_side)
    close(got, ref_bsc(q, a, labels, duplicates=duplicates, q_ids=DUP_A, a_ids=DUP_B, same_side=same_side))


def test_duplicate_modes_differ_and_unique_ids_change_nothing():
    q, a = batch()
    values = {m: float(bsc_loss(q, a, q_ids=DUP_A, a_ids=DUP_B, duplicates=m)) for m in ("positive", "mask", "ignore")}
    assert len({round(v, 9) for v in values.values()}) == 3
    unique = torch.arange(6)
    close(bsc_loss(q, a, q_ids=unique, a_ids=unique + 100), float(bsc_loss(q, a)))


@pytest.mark.parametrize("normalization", ["l2", "none"])
def test_same_side_negatives(normalization):
    q, a = batch()
    got = bsc_loss(q, a, same_side_negatives=True, normalization=normalization, temperature=0.3)
    close(got, ref_bsc(q, a, same_side=True, normalization=normalization, tau=0.3))
    assert float(got) > float(bsc_loss(q, a, normalization=normalization, temperature=0.3))


def test_accuracy():
    q = torch.eye(4, dtype=torch.float64)
    assert float(bsc_loss_terms(q, q.clone()).acc) == 1.0
    a = q[[1, 0, 2, 3]]  # rows 0 and 1 retrieve each other's answer
    assert float(bsc_loss_terms(q, a).acc) == 0.5
    # Identical answer texts count as correct retrievals.
    assert float(bsc_loss_terms(q, a, a_ids=torch.tensor([5, 5, 2, 3])).acc) == 1.0


# ---------------------------------------------------------------- module and temperature


def test_module_matches_functional_and_logs():
    q, a = batch()
    module = BSCLoss(temperature=0.07, duplicates="mask", same_side_negatives=True)
    out = module(q, a, LABELS, DUP_A, DUP_B)
    ref = ref_bsc(q, a, LABELS, tau=0.07, duplicates="mask", q_ids=DUP_A, a_ids=DUP_B, same_side=True)
    close(out.loss, ref, 1e-6)  # α is stored in float32
    assert set(out.logs) == {"bsc", "bsc_qa", "bsc_aq", "temperature", "acc"}
    assert all(not v.requires_grad and v.dim() == 0 for v in out.logs.values())
    close(out.logs["temperature"], 0.07, 1e-6)
    assert list(module.parameters()) == [] and "alpha" in dict(module.named_buffers())
    assert "bsc_aq" not in BSCLoss(symmetric=False)(q, a).logs


def test_learnable_temperature_clamp():
    q, a = batch()
    module = BSCLoss(temperature=0.1, learn_temperature=True, temperature_min=0.05, temperature_max=1.0).double()
    assert [n for n, _ in module.named_parameters()] == ["alpha"]
    out = module(q, a)
    close(out.loss, ref_bsc(q, a, tau=0.1))
    out.loss.backward()
    assert module.alpha.grad.abs() > 0
    with torch.no_grad():
        module.alpha.fill_(100.0)  # τ = 0.01 < temperature_min
    module.alpha.grad = None
    out = module(q, a)
    close(out.loss, ref_bsc(q, a, tau=0.05))
    close(out.logs["temperature"], 0.05)
    out.loss.backward()
    assert float(module.alpha.grad) == 0.0
    with torch.no_grad():
        module.alpha.fill_(0.5)  # τ = 2 > temperature_max
    close(module(q, a).loss, ref_bsc(q, a, tau=1.0))
    with pytest.raises(ValueError):
        BSCLoss(temperature=0.01, learn_temperature=True, temperature_min=0.05)


def test_invalid_arguments():
    q, a = batch()
    for kwargs in ({"normalization": "l1"}, {"reduction": "max"}, {"duplicates": "drop"}, {"temperature": 0.0}):
        with pytest.raises(ValueError):
            bsc_loss(q, a, **kwargs)
        with pytest.raises(ValueError):
            BSCLoss(**kwargs)
    with pytest.raises(ValueError):
        bsc_loss(q, a[:3])
    with pytest.raises(ValueError):
        bsc_loss(q, a, LABELS[:3])


# ---------------------------------------------------------------- baselines


def test_mse_and_combo():
    q, a = batch()
    y = torch.tensor([1.0, 0.0, 0.8, 0.6, 0.1, 0.9], dtype=torch.float64)
    mse = MSELoss()(q, a, y)
    close(mse.loss, ref_mse(q, a, y))
    assert set(mse.logs) == {"mse"}
    combo = ComboLoss(BSCLoss(temperature=0.1).double(), mu=0.3)(q, a, y, DUP_A, DUP_B)
    ref = 0.3 * ref_bsc(q, a, y, q_ids=DUP_A, a_ids=DUP_B) + 0.7 * ref_mse(q, a, y)
    close(combo.loss, ref, 1e-6)
    assert {"bsc", "mse", "bsc_qa", "bsc_aq", "temperature", "acc"} <= set(combo.logs)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            ComboLoss(BSCLoss(), mu=bad)
    for loss in (MSELoss(), ComboLoss(BSCLoss()), CoSENTLoss()):
        with pytest.raises(ValueError, match="labels"):
            loss(q, a)


@pytest.mark.parametrize("with_labels,with_dups", [(False, False), (True, False), (True, True), (False, True)])
def test_triplet(with_labels, with_dups):
    q, a = batch()
    labels = LABELS if with_labels else None
    dups = (DUP_A, DUP_B) if with_dups else (None, None)
    out = TripletLoss(margin=0.5)(q, a, labels, *dups)
    close(out.loss, ref_triplet(q, a, labels, q_ids=dups[0], a_ids=dups[1]))


def test_cosent():
    q, a = batch()
    y = torch.tensor([1.0, 0.0, 0.8, 0.6, 0.8, 0.9], dtype=torch.float64)  # a tie (0.8) gives no term
    close(CoSENTLoss(scale=5.0)(q, a, y).loss, ref_cosent(q, a, y, scale=5.0))


# ---------------------------------------------------------------- gradients


def leaf_batch(n=5, d=3, seed=1):
    q, a = batch(n, d, seed)
    return q.requires_grad_(), a.requires_grad_()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"normalization": "coordinate", "temperature": 1.2, "symmetric": False},
        {"normalization": "none", "duplicates": "mask", "reduction": "sum"},
        {"same_side_negatives": True, "duplicates": "positive"},
    ],
)
def test_bsc_gradcheck(kwargs):
    q, a = leaf_batch()
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    dups = {"q_ids": torch.tensor([0, 1, 0, 3, 4]), "a_ids": torch.tensor([0, 1, 2, 2, 4])}
    assert torch.autograd.gradcheck(lambda x, y: bsc_loss(x, y, labels, **dups, **kwargs), (q, a))


def test_learnable_temperature_gradcheck():
    q, a = leaf_batch()
    tau = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y, t: bsc_loss(x, y, temperature=t), (q, a, tau))


def test_baselines_gradcheck():
    q, a = leaf_batch()
    y = torch.tensor([1.0, 0.2, 0.7, 0.0, 0.9], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x, z: MSELoss()(x, z, y).loss, (q, a))
    assert torch.autograd.gradcheck(lambda x, z: CoSENTLoss(scale=3.0)(x, z, y).loss, (q, a))
    assert torch.autograd.gradcheck(lambda x, z: TripletLoss(margin=2.0)(x, z).loss, (q, a))  # no hinge kink


# ---------------------------------------------------------------- edge cases


def all_losses():
    return [BSCLoss(), BSCLoss(normalization="coordinate", same_side_negatives=True), MSELoss(), TripletLoss(),
            CoSENTLoss(), ComboLoss(BSCLoss(), mu=0.5)]


def finite_with_grad(loss_module, q, a, labels, dups=(None, None)):
    q = q.detach().clone().requires_grad_()
    a = a.detach().clone().requires_grad_()
    out = loss_module(q, a, labels, *dups)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.loss.requires_grad
    out.loss.backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(a.grad).all()
    assert all(torch.isfinite(v) for v in out.logs.values())
    return out


def test_no_positive_pair_gives_connected_zero():
    q, a = batch(4, 3)
    labels = torch.zeros(4, dtype=torch.float64)
    for loss in (BSCLoss(), TripletLoss(), BSCLoss(same_side_negatives=True, duplicates="mask")):
        out = finite_with_grad(loss, q, a, labels)
        assert float(out.loss) == 0.0


@pytest.mark.parametrize("loss", all_losses(), ids=lambda m: type(m).__name__)
def test_batch_of_one(loss):
    q, a = batch(1, 3)
    finite_with_grad(loss, q.float(), a.float(), torch.ones(1), (torch.zeros(1, dtype=torch.long),) * 2)


@pytest.mark.parametrize("tau", [1e-4, 1e4])
@pytest.mark.parametrize("normalization", ["l2", "coordinate", "none"])
def test_extreme_temperature(tau, normalization):
    q, a = batch(8, 5)
    q, a = q.float().requires_grad_(), a.float().requires_grad_()
    loss = bsc_loss(q, a, LABELS.repeat(2)[:8], temperature=tau, normalization=normalization,
                    same_side_negatives=True)
    assert torch.isfinite(loss) and float(loss) >= 0
    loss.backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(a.grad).all()


@pytest.mark.parametrize("loss", all_losses(), ids=lambda m: type(m).__name__)
def test_bf16_autocast_inputs(loss):
    q, a = batch(6, 4)
    y = torch.tensor([1.0, 0.0, 0.8, 0.6, 0.1, 0.9])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = finite_with_grad(loss, q.bfloat16(), a.bfloat16(), y, (DUP_A, DUP_B))
    assert out.loss.dtype == torch.float32


@pytest.mark.parametrize("normalization", ["l2", "coordinate"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_row_blocks_give_the_same_loss_and_gradients(normalization, symmetric):
    """row_block trades memory for recomputation; value and gradients must not change."""
    g = torch.Generator().manual_seed(3)
    q0, a0 = torch.randn(37, 6, generator=g, dtype=torch.float64), torch.randn(37, 6, generator=g, dtype=torch.float64)
    labels = (torch.rand(37, generator=g, dtype=torch.float64) > 0.3).to(torch.float64)
    q_ids, a_ids = torch.randint(0, 20, (37,), generator=g), torch.randint(0, 25, (37,), generator=g)
    results = []
    for block in (None, 8):
        q, a = q0.clone().requires_grad_(), a0.clone().requires_grad_()
        scale = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
        t = bsc_loss_terms(q, a, labels, logit_scale=scale, normalization=normalization, symmetric=symmetric,
                           q_ids=q_ids, a_ids=a_ids, row_block=block)
        t.loss.backward()
        results.append((t.loss.detach(), t.acc, q.grad, a.grad, scale.grad))
    for x, y in zip(*results):
        torch.testing.assert_close(y, x, atol=1e-12, rtol=1e-10)
    with pytest.raises(ValueError, match="row_block"):
        bsc_loss_terms(q0, a0, row_block=0)
