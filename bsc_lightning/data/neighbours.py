"""Exact nearest neighbours and a small k-means, in torch, on whatever device the embeddings live.

These are the two embedding kernels behind the batch-construction strategies of
``bsc_lightning.data.batching``: Algorithm 1 (``example``) needs the top-n cosine neighbours of many
anchors, and the ``clusters`` variant of Algorithm 2 needs k-means cluster ids. Both are exact and
chunked so that memory stays O(chunk × block) rather than O(N²); both take their randomness from a
numpy ``Generator`` so the caller controls determinism per (seed, epoch), and neither uses an op that is
nondeterministic on CUDA (matmul, topk, argmin, bincount of integers; no float scatter-adds), so ranks
that run them on the same embeddings get the same result.
"""
from __future__ import annotations

import numpy as np
import torch

# Elements of one similarity tile; 2**26 float32 = 256 MiB. Large enough for matmul efficiency on a
# GPU, small enough to be harmless on a CPU host.
DEFAULT_BLOCK_ELEMS = 1 << 26


def topk_cosine(queries: torch.Tensor, keys: torch.Tensor, k: int,
                block_elems: int = DEFAULT_BLOCK_ELEMS) -> torch.Tensor:
    """Indices (m, k) of the k keys with the largest dot product to each query, best first.

    With L2-normalised inputs this is exact cosine kNN. The keys are scanned in column blocks and the
    running top-k is merged with each block's top-k, so the full (m, N) similarity matrix never exists.
    """
    m, n = queries.shape[0], keys.shape[0]
    k = min(k, n)
    block = max(k, block_elems // max(m, 1))
    best_v = best_i = None
    for start in range(0, n, block):
        sims = queries @ keys[start:start + block].T                     # (m, B)
        v, i = sims.topk(min(k, sims.shape[1]), dim=1)                   # (m, k')
        i = i + start
        if best_v is None:
            best_v, best_i = v, i
            continue
        v, i = torch.cat([best_v, v], dim=1), torch.cat([best_i, i], dim=1)  # (m, k + k')
        best_v, pos = v.topk(k, dim=1)                                   # (m, k)
        best_i = i.gather(1, pos)
    return best_i


def _nearest_center(x: torch.Tensor, centers: torch.Tensor, block_elems: int) -> torch.Tensor:
    """Index (N,) of the nearest center by Euclidean distance, in row chunks."""
    c_sq = (centers * centers).sum(1)                                    # (k,)
    rows = max(1, block_elems // centers.shape[0])
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], rows):
        # ||x||² is constant per row, so argmin ||x - c||² = argmin ||c||² - 2 x·c
        d = c_sq[None, :] - 2.0 * (x[start:start + rows] @ centers.T)   # (rows, k)
        out[start:start + rows] = d.argmin(1)
    return out


def _kmeanspp(x: torch.Tensor, k: int, rng: np.random.Generator, sample_per_center: int) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) on a random subsample of x; returns (k, d).

    Seeding is inherently sequential (k passes), so it runs on ``sample_per_center × k`` points rather
    than all N: the centers only need to be well spread, Lloyd's iterations then use every point.
    """
    n = x.shape[0]
    m = min(n, sample_per_center * k)
    xs = x[torch.from_numpy(rng.choice(n, size=m, replace=False)).to(x.device)]   # (m, d)
    sq = (xs * xs).sum(1)                                                # (m,)

    def dist2(i: int) -> torch.Tensor:                                   # ||xs - xs[i]||², a matvec
        return (sq + sq[i] - 2.0 * (xs @ xs[i])).clamp_min_(0)           # (m,)

    chosen = [int(rng.integers(m))]
    d2 = dist2(chosen[0])                                                # (m,)
    for _ in range(1, k):
        p = d2.double().cpu().numpy()
        total = p.sum()
        # all remaining points coincide with centers (duplicates): fall back to a uniform pick
        nxt = int(rng.choice(m, p=p / total)) if total > 0 else int(rng.integers(m))
        chosen.append(nxt)
        d2 = torch.minimum(d2, dist2(nxt))
    return xs[torch.tensor(chosen, device=x.device)].clone()             # (k, d)


def cluster_sums(x: torch.Tensor, labels: torch.Tensor, k: int,
                 block_elems: int = DEFAULT_BLOCK_ELEMS) -> torch.Tensor:
    """Sum (k, d) of the rows of x (N, d) in each of k clusters, bit-identical from run to run.

    Why not ``index_add_`` (or ``scatter_add_`` / ``scatter_reduce``): on CUDA they accumulate with
    atomics, so the order of the float additions, hence the last bits of the sums, changes from run to
    run; a float ``cumsum`` (sort + segment sums) is not deterministic on CUDA either. Under DDP every
    rank runs k-means on the same embeddings, and differing bits can flip a label and make ranks build
    different orders. Here the sums are a product with the one-hot assignment matrix, in row blocks
    fixed by N and ``block_elems``: a GEMM sums in an order fixed by the kernel (cuBLAS results are
    bit-identical run to run on the same GPU model and library; the assignment step relies on it too).
    Cost: one more N × k × d product per Lloyd step, the size of the assignment step.
    """
    rows = max(1, block_elems // max(k, 1))
    ids = torch.arange(k, device=x.device)                               # (k,)
    sums = torch.zeros((k, x.shape[1]), dtype=x.dtype, device=x.device)  # (k, d)
    for start in range(0, x.shape[0], rows):
        onehot = (labels[start:start + rows, None] == ids[None, :]).to(x.dtype)  # (rows, k)
        sums += onehot.T @ x[start:start + rows]                         # (k, d)
    return sums


def kmeans(x: torch.Tensor, n_clusters: int, iters: int, rng: np.random.Generator,
           sample_per_center: int = 32, block_elems: int = DEFAULT_BLOCK_ELEMS) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; returns the cluster id (N,) int64 of every row of x.

    Runs on x's device in float32 and is deterministic there (``cluster_sums``; no scatter-adds). Empty
    clusters keep their previous center (rare after ++ seeding and harmless for batching: an empty
    cluster simply yields no group).
    """
    x = x.float()                                                        # (N, d)
    k = max(1, min(n_clusters, x.shape[0]))
    centers = _kmeanspp(x, k, rng, sample_per_center)                    # (k, d)
    for _ in range(iters):
        labels = _nearest_center(x, centers, block_elems)                # (N,)
        sums = cluster_sums(x, labels, k, block_elems)                   # (k, d)
        counts = torch.bincount(labels, minlength=k)                     # (k,) integer: exact
        means = sums / counts.clamp_min(1)[:, None].to(x.dtype)          # (k, d)
        centers = torch.where((counts > 0)[:, None], means, centers)
    return _nearest_center(x, centers, block_elems).cpu().numpy().astype(np.int64)
