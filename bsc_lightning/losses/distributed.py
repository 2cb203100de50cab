"""Cross-rank gathering for in-batch losses (open_clip style ``gather_with_grad`` / ``local_loss`` flags).

Under DDP every rank holds B pairs; the BSC loss of the paper is defined on one batch, so the ranks
gather their embeddings into the global batch of W·B pairs before building the logits.

- ``gather_with_grad``: all_gather whose backward sums, over all ranks, the gradient each rank
  computed for the gathered (W·B, d) tensor and hands every rank its own slice. With this, a rank's
  loss may depend on other ranks' embeddings and the gradient still reaches them. It is a small
  autograd Function (all_reduce + slice in backward) rather than ``torch.distributed.nn.functional
  .all_gather``: that one does work on gloo in torch 2.13 (it emulates the missing reduce_scatter with
  an all-to-all), but it is deprecated there (FutureWarning) and all_reduce exists on every backend.
  The extra traffic (W·B × d instead of B × d per rank) is negligible next to the encoder.
- ``gather_local_grad``: a plain all_gather of detached tensors with the local slice put back, so only
  the local slice carries a gradient (cheaper, but the gradient is not the single-process one).
- ``gather_no_grad``: labels and duplicate ids (integer ids, never strings).

All helpers are no-ops (identity) when ``torch.distributed`` is not initialised or W == 1.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_info() -> tuple[int, int]:
    """(world size W, rank); (1, 0) when torch.distributed is unavailable or not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0; backward: all_reduce(sum) of the gathered gradient, keep the local slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # (B, ...) -> (W·B, ...)
        world, rank = world_info()
        ctx.local = slice(rank * x.shape[0], (rank + 1) * x.shape[0])
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)  # (W·B, ...)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # (W·B, ...) -> (B, ...)
        # Every rank's loss may use every slice: rank r's gradient is the sum over ranks of slice r.
        grad = grad.contiguous().clone()  # all_reduce is in place; never write into autograd's buffer
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.local]  # (B, ...)


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (B, ...) from all ranks along dim 0 -> (W·B, ...), differentiable for every slice.

    Backward: the gradient of the gathered tensor is summed over ranks and rank r keeps slice r, so that
    DDP's average of the per-rank parameter gradients is the gradient of the mean of the rank losses.
    Requires the same shape on every rank (see ``check_equal_batches``); every rank must run the backward.
    """
    world, _ = world_info()
    if world == 1:
        return x
    return _AllGatherWithGrad.apply(x)  # (W·B, ...)


def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate detached ``x`` (B, ...) from all ranks along dim 0 -> (W·B, ...), no gradient."""
    world, _ = world_info()
    if world == 1:
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)  # (W·B, ...)


def gather_local_grad(x: Tensor) -> Tensor:
    """Like ``gather_no_grad`` but the local slice is the original ``x``, so it keeps its gradient.

    Gradients that other ranks' losses send to this rank's embeddings are lost: with ``local_loss``
    the result is not the gradient of the single-process loss (the tests assert that it differs).
    """
    world, rank = world_info()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, dim=0)  # (W·B, ...)


def check_equal_batches(*tensors: Tensor | None) -> None:
    """Raise ``ValueError`` on every rank unless all ranks pass tensors of the same shapes.

    Each argument may be None (e.g. no labels); presence must also agree, otherwise the ranks would
    issue different collectives and hang. One small all_gather of a (3·len(tensors),) int64 signature
    is used, so a mismatch is reported on every rank instead of deadlocking the next gather.
    """
    world, rank = world_info()
    if world == 1:
        return
    device = next((t.device for t in tensors if t is not None), torch.device("cpu"))
    signature: list[int] = []
    for t in tensors:
        if t is None:
            signature += [0, -1, -1]
        else:
            signature += [1, t.shape[0] if t.dim() > 0 else -1, t.shape[1] if t.dim() > 1 else -1]
    local = torch.tensor(signature, dtype=torch.int64, device=device)
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local)
    if any(not torch.equal(p, parts[0]) for p in parts):
        per_rank = {r: p.view(-1, 3).tolist() for r, p in enumerate(parts)}
        raise ValueError(
            "Batch-wide loss under torch.distributed needs the same batch size, embedding size and the "
            "same optional inputs (labels / dup ids) on every rank; per rank [present, size0, size1] of "
            f"(q, a, labels, q_ids, a_ids...): {per_rank} (this is rank {rank}). Use equal per-rank "
            "batches (e.g. drop_last=True or a padding DistributedSampler)."
        )
