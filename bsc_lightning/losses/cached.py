"""Gradient cache (Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup") around any embedding loss.

A contrastive loss needs every embedding of the batch at once, but its gradient with respect to
the encoder only needs one chunk's activations at a time:
1. embed all chunks without grad (record each chunk's RNG state, so dropout can be replayed);
2. compute the loss on the full batch of detached embeddings and back-propagate it to them
   (this also gives the loss's own parameters, e.g. a learnable temperature, their gradients);
3. re-embed chunk by chunk with grad, replaying the RNG, and back-propagate the cached embedding
   gradients. Peak activation memory is one chunk's; the result equals the plain loss's gradient.

The chunks are the length-aware chunks of `bsc_lightning.data.chunks`, so one mechanism serves both
memory and padding. Under DDP the loss gathers embeddings as usual (the gather's backward runs in
step 2); because every backward here is a plain ``.backward()``, DDP's reducer never fires and the
caller averages gradients once with `all_reduce_grads`.

Why the module keeps manual optimisation for this path instead of returning a loss tensor whose
backward hook runs step 3 (as sentence-transformers' cached losses do): under DDP, Lightning wraps
the module in ``DistributedDataParallel``, whose reducer marks each parameter ready once per
backward. Step 3 accumulates into every encoder parameter once per chunk, from nested backward
calls inside the hook, so the reducer would either raise ("marked ready twice") or all-reduce after
the first chunk, i.e. average partial gradients. Making that work needs ``no_sync`` around all but the
last chunk plus a final synchronising pass: the same explicit all-reduce as here, hidden behind
hooks. Single-process and 2-process exactness (tests/test_losses_distributed.py, test_wiring.py) is
proven for this form; gradient clipping and the LR schedule are applied by the module explicitly.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from bsc_lightning.data.chunks import Chunks
from bsc_lightning.encoder import Encoder


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Tensor, Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def cached_loss_backward(encoder: Encoder, loss_fn: nn.Module, chunks: Chunks, labels: Tensor | None,
                         q_ids: Tensor | None = None, a_ids: Tensor | None = None) -> Any:
    """Run the loss on all 2B texts of `chunks` with chunk-sized activation memory and accumulate
    the gradients into ``.grad`` of the encoder's and the loss's parameters.

    Args: chunks over 2B texts (first B = side a, then side b); labels, dup ids (B,).
    Returns: the loss's output (``loss`` detached-equivalent value and ``logs``).
    """
    device = chunks.inverse.device
    states, parts = [], []
    with torch.no_grad():
        for x, m in encoder.iter_chunks(chunks):
            states.append(_rng_state(device))
            parts.append(encoder.embed(x, m))  # (n_k, d)
    emb = torch.cat(parts).index_select(0, chunks.inverse).detach().requires_grad_(True)  # (2B, d)
    b = emb.shape[0] // 2
    out = loss_fn(emb[:b], emb[b:], labels, q_ids, a_ids)
    out.loss.backward()
    grad = emb.grad if emb.grad is not None else torch.zeros_like(emb)
    grad_chunks = torch.empty_like(grad)
    grad_chunks[chunks.inverse] = grad  # back to chunk order: (2B, d)
    # Restore the generator afterwards, so the step leaves the RNG where a plain step would.
    after = _rng_state(device)
    start = 0
    for (x, m), state in zip(encoder.iter_chunks(chunks), states):
        _set_rng_state(state, device)
        e = encoder.embed(x, m)  # (n_k, d), with grad; same dropout masks as the no-grad pass
        e.backward(grad_chunks[start: start + len(e)].to(e.dtype))
        start += len(e)
    _set_rng_state(after, device)
    return out


def all_reduce_grads(params: Iterable[nn.Parameter]) -> None:
    """Average ``.grad`` over ranks (what DDP's reducer would do), in one coalesced all-reduce."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    start = 0
    for g in grads:
        g.copy_(flat[start: start + g.numel()].view_as(g))
        start += g.numel()
