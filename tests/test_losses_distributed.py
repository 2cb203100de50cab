"""BSCLoss under real DDP (2 CPU processes, gloo) equals the single-process loss on the global batch.

One spawn runs every configuration (process start-up dominates the cost); each rank saves its loss,
logs and parameter gradients to tmp_path, and the tests compare them with a single-process run of
the same model on the concatenated global batch.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bsc_lightning.losses import BSCLoss

WORLD = 2
PER_RANK = 4
N = WORLD * PER_RANK
# float64 end to end: the distributed run differs from the single-process one only in summation
# order (rank-partial sums, the all-to-all sum of gathered gradients, DDP's average), i.e. by a few
# ulps (~1e-16) times small condition numbers. Any real error — a missing cross-rank gradient term,
# a wrong 1/W or 1/#positives scale — is of the order of the gradient itself (>1e-3 here).
TOL = 1e-10

# Pairs 0/4 and 2/6 share a query text and 1/5 and 3/7 an answer text, always across the two ranks.
LABELS = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
DUP_A = [0, 1, 2, 3, 0, 5, 2, 7]
DUP_B = [10, 11, 12, 13, 14, 11, 16, 13]

CONFIGS: dict[str, dict] = {
    "symmetric": {"loss": {}},
    "one_way": {"loss": {"symmetric": False}},
    "coordinate": {"loss": {"normalization": "coordinate", "temperature": 1.2}},
    "labelled_negatives": {"loss": {"reduction": "sum"}, "labels": True},
    "duplicates": {"loss": {"duplicates": "positive"}, "labels": True, "dups": True},
    "duplicates_mask_same_side": {
        "loss": {"duplicates": "mask", "same_side_negatives": True},
        "labels": True,
        "dups": True,
    },
    "learned_temperature": {"loss": {"learn_temperature": True, "temperature": 0.2}, "labels": True},
    "global_loss": {"loss": {"local_loss": False}, "labels": True, "dups": True},
    "global_loss_coordinate": {"loss": {"local_loss": False, "normalization": "coordinate"}},
    "no_grad_gather": {"loss": {"gather_with_grad": False}, "labels": True},
}
EXACT = [name for name in CONFIGS if name != "no_grad_gather"]


def global_batch(cfg: dict):
    g = torch.Generator().manual_seed(123)
    xq = torch.randn(N, 5, generator=g, dtype=torch.float64)
    xa = xq + 0.8 * torch.randn(N, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor(LABELS, dtype=torch.float64) if cfg.get("labels") else None
    q_ids = torch.tensor(DUP_A) if cfg.get("dups") else None
    a_ids = torch.tensor(DUP_B) if cfg.get("dups") else None
    return xq, xa, labels, q_ids, a_ids


class Siamese(nn.Module):
    """A tiny shared encoder plus the loss (so DDP averages the temperature's gradient too)."""

    def __init__(self, loss_kwargs: dict) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(5, 4).double()
        self.loss = BSCLoss(**loss_kwargs).double()

    def forward(self, xq, xa, labels=None, q_ids=None, a_ids=None):
        q, a = self.encoder(torch.cat([xq, xa])).chunk(2)  # one encoder call per step, as DDP expects
        return self.loss(q, a, labels, q_ids, a_ids)


def run_step(model: nn.Module, owner: nn.Module, inputs) -> dict:
    out = model(*inputs)
    out.loss.backward()
    return {
        "loss": out.loss.detach(),
        "logs": dict(out.logs),
        "grads": {n: p.grad.detach().clone() for n, p in owner.named_parameters()},
    }


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
        timeout=timedelta(seconds=60),  # a collective mismatch fails the test instead of hanging it
    )
    local = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    results: dict = {}
    try:
        for name, cfg in CONFIGS.items():
            inputs = [None if t is None else t[local] for t in global_batch(cfg)]
            model = Siamese(cfg["loss"])
            results[name] = run_step(DistributedDataParallel(model), model, inputs)
        # Unequal per-rank batch sizes must raise on every rank, not hang.
        q = torch.randn(PER_RANK - rank, 4, dtype=torch.float64)
        try:
            BSCLoss()(q, q.clone())
        except ValueError as err:
            results["unequal"] = str(err)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        # Neither rank tears down its gloo pairs while the other may still use them: a peer that closed first made
        # the other abort in C++ now and then (SIGABRT, "terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("ddp")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only: no network in the sandbox
    torch.multiprocessing.spawn(_worker, args=(free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


def single_process(cfg: dict) -> dict:
    model = Siamese(cfg["loss"])
    return run_step(model, model, global_batch(cfg))


def max_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x - y).abs().max())


@pytest.mark.parametrize("name", EXACT)
def test_ddp_equals_single_process(ranks, name):
    ref = single_process(CONFIGS[name])
    local_loss = CONFIGS[name]["loss"].get("local_loss", True)
    # local_loss: each rank reports its rank-partial value, the mean over ranks is the global loss.
    mean_loss = sum(r[name]["loss"] for r in ranks) / WORLD
    assert max_diff(mean_loss, ref["loss"]) < TOL
    if not local_loss:
        assert all(max_diff(r[name]["loss"], ref["loss"]) < TOL for r in ranks)
    for key in ref["logs"]:
        mean_log = sum(r[name]["logs"][key] for r in ranks) / WORLD
        assert max_diff(mean_log, ref["logs"][key]) < TOL, key
    assert set(ref["grads"]) == set(ranks[0][name]["grads"])
    for param, grad in ref["grads"].items():
        assert grad.abs().max() > 1e-3  # the comparison is not vacuous
        for r in ranks:
            assert max_diff(r[name]["grads"][param], grad) < TOL, (param, r[name]["grads"][param], grad)


def test_local_slices_differ_across_ranks(ranks):
    # Guards against a worker that silently computed the global loss on every rank.
    assert max_diff(ranks[0]["symmetric"]["loss"], ranks[1]["symmetric"]["loss"]) > 1e-6


def test_gather_without_grad_is_not_exact(ranks):
    ref = single_process(CONFIGS["no_grad_gather"])
    mean_loss = sum(r["no_grad_gather"]["loss"] for r in ranks) / WORLD
    assert max_diff(mean_loss, ref["loss"]) < TOL  # the forward value is still the global one...
    for r in ranks:  # ...but the gradients other ranks send to this rank's embeddings are lost
        assert max_diff(r["no_grad_gather"]["grads"]["encoder.weight"], ref["grads"]["encoder.weight"]) > 1e-4


def test_unequal_batches_raise_on_every_rank(ranks):
    for r in ranks:
        assert "same batch size" in r.get("unequal", "")
