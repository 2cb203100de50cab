"""Batch-construction strategies (Algorithms 1 and 2), global batches, rank slices and statistics."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bsc_lightning.data.batching import (
    STRATEGIES,
    ClustersShuffle,
    ExampleShuffle,
    NoDuplicates,
    WordsShuffle,
    batch_stats,
    build_strategy,
    global_batches,
    group_by_keys,
    rank_slice,
)
from bsc_lightning.data.neighbours import cluster_sums, kmeans
from bsc_lightning.data.table import PairTable

CONF_SHUFFLE = Path(__file__).resolve().parents[1] / "conf" / "shuffle"

VOCAB = [f"w{i}" for i in range(40)]


def make_table(n: int, n_first: int | None = None, seed: int = 0) -> PairTable:
    """n pairs; first sides drawn from ``n_first`` distinct short sentences (repeats when n_first < n)."""
    rng = np.random.default_rng(seed)
    n_first = n if n_first is None else n_first
    firsts = [" ".join(rng.choice(VOCAB, size=rng.integers(2, 9))) + f" q{i}" for i in range(n_first)]
    text_a = [firsts[i % n_first] for i in range(n)]
    text_b = [f"answer {i}" for i in range(n)]
    return PairTable.from_pairs(text_a, text_b, np.ones(n))


def clustered_embeddings(table: PairTable, n_centers: int, dim: int = 32, noise: float = 0.3,
                         seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Unit vectors around ``n_centers`` random centers, one per first-side TEXT (copies share it)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_centers, dim, generator=g)
    n_text = len(table.texts)
    truth = torch.randint(n_centers, (n_text,), generator=g)
    per_text = centers[truth] + noise * torch.randn(n_text, dim, generator=g)     # (T, d)
    emb = torch.nn.functional.normalize(per_text[torch.from_numpy(table.a)], dim=1)  # (N, d)
    return emb, truth.numpy()[table.a]


def split_groups(order: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    return np.split(order, np.cumsum(sizes)[:-1])


def assert_permutation(order: np.ndarray, n: int) -> None:
    assert order.dtype == np.int64
    assert np.array_equal(np.sort(order), np.arange(n))


def reference_example(table: PairTable, emb: torch.Tensor, *, seed: int, epoch: int, s: int, n_cand: int,
                      apart: bool = True, reverse: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1 over ROWS as the paper states it, on a full similarity matrix: shuffle; for each
    unused e its n+1 nearest rows, of which the first s − 1 unused ones (distinct first sides with
    ``apart``) join e's group; groups concatenated, then reversed."""
    n = len(table)
    sims = (emb.double() @ emb.double().T).numpy()                     # (N, N)
    used = np.zeros(n, dtype=bool)
    out, sizes = [], []
    for e in np.random.default_rng([seed, epoch]).permutation(n):
        if used[e]:
            continue
        used[e] = True
        group, seen = [e], {table.a[e]}
        for j in np.argsort(-sims[e], kind="stable")[:n_cand + 1]:
            if len(group) >= s:
                break
            if used[j] or (apart and table.a[j] in seen):
                continue
            used[j] = True
            seen.add(table.a[j])
            group.append(j)
        out.extend(group)
        sizes.append(len(group))
    order, sz = np.asarray(out, dtype=np.int64), np.asarray(sizes, dtype=np.int64)
    return (order[::-1], sz[::-1]) if reverse else (order, sz)


# ------------------------------------------------------------------------------------------- registry

def test_registry_and_builder():
    assert set(STRATEGIES) == {"none", "random", "example", "words", "clusters", "no_duplicates"}
    s = build_strategy("example", group_size=4)
    assert isinstance(s, ExampleShuffle) and s.group_size == 4 and s.needs_embeddings
    assert not build_strategy("words").needs_embeddings
    with pytest.raises(ValueError):
        build_strategy("nope")
    with pytest.raises(ValueError, match=r"^shuffle\.group_sise: not an option of shuffle=words"):
        build_strategy("words", group_sise=4)


# (strategy, key, bad value, words expected in the message)
BAD_OPTIONS = [
    ("example", {"group_size": 0}, "group_size", ">= 1"),
    ("example", {"group_size": 2.5}, "group_size", "integer"),
    ("example", {"group_size": True}, "group_size", "integer"),
    ("example", {"n_candidates": -1}, "n_candidates", ">= 0"),
    ("example", {"group_size": 8, "n_candidates": 6}, "n_candidates", ">= group_size - 1 = 7"),
    ("example", {"keep_identical_apart": "yes"}, "keep_identical_apart", "true or false"),
    ("example", {"reverse": 1}, "reverse", "true or false"),
    ("example", {"chunk_size": 0}, "chunk_size", ">= 1"),
    ("words", {"group_size": 0}, "group_size", ">= 1"),
    ("words", {"shingle_words": 0}, "shingle_words", ">= 1"),
    ("clusters", {"n_clusters": 0}, "n_clusters", ">= 1"),
    ("clusters", {"group_size": -3}, "group_size", ">= 1"),
    ("clusters", {"iters": 0}, "iters", ">= 1"),
    ("no_duplicates", {"repair_budget": -1}, "repair_budget", ">= 0"),
]


@pytest.mark.parametrize("name, options, key, why", BAD_OPTIONS)
def test_invalid_options_fail_at_construction_naming_the_key(name, options, key, why):
    with pytest.raises(ValueError) as err:
        build_strategy(name, **options)
    msg = str(err.value)
    assert msg.startswith(f"shuffle.{key}={options[key]!r} ") and "\n" not in msg
    assert why in msg and f"(shuffle={name})" in msg
    with pytest.raises(ValueError):                                    # the classes check too
        STRATEGIES[name](**options)


def test_boundary_options_are_accepted():
    assert build_strategy("example", group_size=1, n_candidates=0).group_size == 1
    assert build_strategy("example", group_size=5, n_candidates=4).n_candidates == 4
    assert build_strategy("words", group_size=1, shingle_words=1).shingle_words == 1
    assert build_strategy("clusters", n_clusters=1, group_size=1, iters=1).iters == 1
    assert build_strategy("no_duplicates", repair_budget=0).repair_budget == 0


@pytest.mark.parametrize("path", sorted(CONF_SHUFFLE.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_build_and_match_code_defaults(path):
    from hydra.utils import instantiate

    cfg = yaml.safe_load(path.read_text())
    if "defaults" in cfg:  # a variant (example_grouped): its base's file plus its own keys, which it changes
        (base,) = [d for d in cfg.pop("defaults") if d != "_self_"]
        s = instantiate({**yaml.safe_load((CONF_SHUFFLE / f"{base}.yaml").read_text()), **cfg})
        assert STRATEGIES[base] is type(s)
        for key, value in cfg.items():
            assert getattr(s, key) == value != getattr(type(s)(), key), f"{path.name}: {key} is not its own"
        return
    s = instantiate(cfg)
    assert STRATEGIES[path.stem] is type(s)  # the file name is the strategy's registered name
    defaults = type(s)()
    options = {k: v for k, v in cfg.items() if k != "_target_"}
    for key, value in options.items():
        assert getattr(defaults, key) == value, f"{path.name}: {key} differs from the code default"


def test_words_default_is_one_word_shingles():
    assert WordsShuffle().shingle_words == 1                          # the authors' code


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_is_a_deterministic_permutation(name):
    table = make_table(600, n_first=300)
    emb, _ = clustered_embeddings(table, 10)
    s = build_strategy(name, **({"n_clusters": 10} if name == "clusters" else {}))
    kw = {"batch_size": 32, "embeddings": emb if s.needs_embeddings else None}
    o = s.order(table, epoch=0, seed=1, **kw)
    assert_permutation(o, len(table))
    assert np.array_equal(o, build_strategy(name, **({"n_clusters": 10} if name == "clusters" else {}))
                          .order(table, epoch=0, seed=1, **kw))          # fresh instance, same order
    if name == "none":
        assert np.array_equal(o, np.arange(len(table)))
    else:
        assert not np.array_equal(o, s.order(table, epoch=1, seed=1, **kw))
        assert not np.array_equal(o, s.order(table, epoch=0, seed=2, **kw))


def test_embedding_strategies_require_embeddings():
    table = make_table(50)
    for s in (ExampleShuffle(), ClustersShuffle()):
        with pytest.raises(ValueError):
            s.order(table, epoch=0, seed=0, batch_size=8)


# ------------------------------------------------------------------------------ Algorithm 1 (example)

def test_example_groups_are_neighbours_of_bounded_size():
    table = make_table(2000)
    emb, truth = clustered_embeddings(table, 40, noise=0.2)
    s = ExampleShuffle(group_size=8, n_candidates=64, chunk_size=256)
    order, sizes = s.grouped_order(table, epoch=0, seed=0, embeddings=emb)
    assert_permutation(order, len(table))
    assert sizes.sum() == len(table) and sizes.max() <= 8
    assert (sizes == 8).mean() > 0.75 and sizes[sizes == 8].sum() > 0.85 * len(table)  # mostly full
    assert s.info["groups"] == len(sizes)
    groups = split_groups(order, sizes)
    purity = np.mean([np.mean(truth[g] == np.bincount(truth[g]).argmax()) for g in groups if len(g) > 1])
    assert purity > 0.9                                                # groups are nearest neighbours


def test_example_reversal_puts_small_groups_first():
    table = make_table(1500)
    emb = torch.nn.functional.normalize(torch.randn(1500, 32, generator=torch.Generator().manual_seed(0)), dim=1)
    kw = {"epoch": 3, "seed": 0, "embeddings": emb}
    rev_o, rev_s = ExampleShuffle(group_size=8, n_candidates=32, chunk_size=128).grouped_order(table, **kw)
    fwd_o, fwd_s = ExampleShuffle(group_size=8, n_candidates=32, chunk_size=128,
                                  reverse=False).grouped_order(table, **kw)
    assert np.array_equal(rev_o, fwd_o[::-1]) and np.array_equal(rev_s, fwd_s[::-1])
    # leftovers (neighbours all used) are formed at the end of Algorithm 1: reversed, they come first
    fifth = len(rev_s) // 5
    assert rev_s[0] < 8 and rev_s[:fifth].mean() < 3 and rev_s[fifth:].mean() > 6.5


def test_example_keeps_identical_first_sides_apart():
    table = make_table(800, n_first=100)                               # every first side 8 times
    emb, _ = clustered_embeddings(table, 20)                           # copies share one embedding
    order, sizes = ExampleShuffle(group_size=6, n_candidates=40).grouped_order(
        table, epoch=0, seed=0, embeddings=emb)
    assert_permutation(order, len(table))
    for g in split_groups(order, sizes):
        assert len(np.unique(table.a[g])) == len(g)
    # without the option the identical copies (cosine 1) are grabbed first
    order, sizes = ExampleShuffle(group_size=6, n_candidates=40, keep_identical_apart=False).grouped_order(
        table, epoch=0, seed=0, embeddings=emb)
    assert np.mean([len(np.unique(table.a[g])) < len(g) for g in split_groups(order, sizes)]) > 0.5


def test_example_batches_are_closer_than_random():
    table = make_table(3000)
    emb, _ = clustered_embeddings(table, 60, noise=0.5)
    cos = {}
    for name in ("random", "example"):
        order = build_strategy(name).order(table, epoch=0, seed=0, batch_size=32, embeddings=emb)
        cos[name] = batch_stats(table, global_batches(order, 32), emb)["intra_batch_cosine"]
    assert cos["example"] > cos["random"] + 0.1, cos


@pytest.mark.parametrize("s, n_cand, chunk", [(8, 64, 4096), (4, 10, 7), (1, 0, 4096), (3, 2, 1)])
@pytest.mark.parametrize("apart", [True, False])
def test_example_equals_reference_on_distinct_texts(s, n_cand, chunk, apart):
    table = make_table(300)                                            # all first sides distinct
    emb = torch.nn.functional.normalize(torch.randn(300, 16, generator=torch.Generator().manual_seed(3)), dim=1)
    strat = ExampleShuffle(group_size=s, n_candidates=n_cand, keep_identical_apart=apart, chunk_size=chunk)
    order, sizes = strat.grouped_order(table, epoch=2, seed=5, embeddings=emb)
    ref_order, ref_sizes = reference_example(table, emb, seed=5, epoch=2, s=s, n_cand=n_cand, apart=apart)
    assert np.array_equal(order, ref_order) and np.array_equal(sizes, ref_sizes)
    assert strat.info["distinct_texts"] == 300 and strat.info["groups"] == len(ref_sizes)


@pytest.mark.parametrize("copies", [10, 70])
def test_example_fills_groups_when_first_sides_repeat(copies):
    table = make_table(100 * copies, n_first=100)                      # each question `copies` times
    emb, truth = clustered_embeddings(table, 20)                       # copies share one embedding
    s = ExampleShuffle(group_size=8, n_candidates=64)
    order, sizes = s.grouped_order(table, epoch=0, seed=0, embeddings=emb)
    assert_permutation(order, len(table))
    assert sizes.max() <= 8
    assert sizes.mean() >= 0.9 * 8 and (sizes == 8).mean() >= 0.85
    assert s.info["distinct_texts"] == 100 and s.info["mean_group_size"] == pytest.approx(sizes.mean())
    groups = split_groups(order, sizes)
    for g in groups:
        assert len(np.unique(table.a[g])) == len(g)                    # distinct questions in a group
    # groups are still neighbourhoods: mostly one embedding cluster
    purity = np.mean([np.mean(truth[g] == np.bincount(truth[g]).argmax()) for g in groups if len(g) > 1])
    assert purity > 0.6
    # the search over rows (the old behaviour) fills the candidate list with copies: groups stay small,
    # singletons when the copies alone exceed the n + 1 candidates
    _, ref_sizes = reference_example(table, emb, seed=0, epoch=0, s=8, n_cand=64)
    assert ref_sizes.mean() < (0.7 * 8 if copies == 10 else 1.2)


def test_example_does_not_depend_on_the_anchor_chunking():
    table = make_table(900, n_first=120)                               # 7-8 copies per question
    emb, _ = clustered_embeddings(table, 15)
    kw = {"epoch": 1, "seed": 4, "embeddings": emb}
    base = ExampleShuffle(group_size=6, n_candidates=20).grouped_order(table, **kw)
    for chunk in (1, 13):
        for apart in (True, False):
            o, sz = ExampleShuffle(group_size=6, n_candidates=20, chunk_size=chunk,
                                   keep_identical_apart=apart).grouped_order(table, **kw)
            if apart:
                assert np.array_equal(o, base[0]) and np.array_equal(sz, base[1])
            assert_permutation(o, len(table))


def test_example_without_keep_apart_takes_the_anchor_copies_first():
    table = make_table(800, n_first=100)                               # every first side 8 times
    emb, _ = clustered_embeddings(table, 20)
    order, sizes = ExampleShuffle(group_size=4, n_candidates=10, keep_identical_apart=False,
                                  reverse=False).grouped_order(table, epoch=0, seed=0, embeddings=emb)
    assert (sizes == 4).all()                                          # 8 copies = two full groups of them
    for g in split_groups(order, sizes):
        assert len(np.unique(table.a[g])) == 1


@pytest.mark.parametrize("s", [1, 2, 3, 8])
def test_groups_never_exceed_group_size(s):
    table = make_table(400, n_first=50)
    emb, _ = clustered_embeddings(table, 10)
    for strat in (ExampleShuffle(group_size=s, n_candidates=max(s - 1, 16)),
                  ExampleShuffle(group_size=s, n_candidates=max(s - 1, 16), keep_identical_apart=False),
                  WordsShuffle(group_size=s), ClustersShuffle(group_size=s, n_clusters=5)):
        order, sizes = strat.grouped_order(table, epoch=0, seed=0, embeddings=emb)
        assert_permutation(order, len(table))
        assert sizes.min() >= 1 and sizes.max() == s                   # bounded, and reached
        assert strat.info["mean_group_size"] <= s


def test_example_group_size_one_is_the_shuffle_reversed():
    table = make_table(200, n_first=40)
    emb, _ = clustered_embeddings(table, 5)
    for apart in (True, False):
        order, sizes = ExampleShuffle(group_size=1, n_candidates=64, keep_identical_apart=apart).grouped_order(
            table, epoch=3, seed=1, embeddings=emb)
        assert (sizes == 1).all() and len(sizes) == 200
        assert np.array_equal(order, np.random.default_rng([1, 3]).permutation(200)[::-1])


# ----------------------------------------------------------------------- Algorithm 2 (words, clusters)

def test_group_by_keys_groups_equal_keys_in_chunks_of_k():
    rng = np.random.default_rng(0)
    keys = np.repeat(np.arange(10), 77)[rng.permutation(770)]         # 10 keys × 77 copies
    order, sizes = group_by_keys(keys, 8, rng)
    assert_permutation(order, 770)
    for g in split_groups(order, sizes):
        assert len(set(keys[g])) == 1                                  # a group never mixes keys
    assert sorted(sizes.tolist()) == sorted([8] * 90 + [5] * 10)       # 77 = 9 × 8 + 5 per key


def test_words_groups_share_a_shingle():
    rng = np.random.default_rng(1)
    small = ["red fox", "blue whale", "green frog", "grey wolf"]      # 2 content words each
    text_a = [f"the {small[i % 4]} jumps over {rng.choice(small)}" for i in range(400)]
    table = PairTable.from_pairs(text_a, [f"b{i}" for i in range(400)], np.ones(400))
    s = WordsShuffle(group_size=8, shingle_words=3)
    order, sizes = s.grouped_order(table, epoch=0, seed=0)
    assert_permutation(order, 400)
    assert sizes.max() <= 8 and (sizes == 8).mean() > 0.7
    words = [set(t.split()) - {"the", "over"} for t in table.texts]
    for g in split_groups(order, sizes):
        common = set.intersection(*(words[t] for t in table.a[g]))
        assert len(common) >= 2 or len(g) == 1                         # shared 3-word shingle (≥ 2 distinct)
    # epochs only redraw positions: the tokenisation is cached per table
    cache = s._cache[2]
    s.order(table, epoch=1, seed=0, batch_size=8)
    assert s._cache[2] is cache


def test_words_shingle_handles_short_and_stopword_only_texts():
    table = PairTable.from_pairs(["the and of", "alpha", "alpha beta", "Alpha, beta gamma delta!"] * 5,
                                 [f"b{i}" for i in range(20)], np.ones(20))
    sh = WordsShuffle(shingle_words=3).shingles(table, np.random.default_rng(0))
    assert sh.shape == (20, 3)
    assert (sh[0] == -1).all() and (sh[1] == -1).sum() == 2 and (sh[2] == -1).sum() == 1
    assert (sh[3] >= 0).all()
    order = WordsShuffle(group_size=4).order(table, epoch=0, seed=0, batch_size=4)
    assert_permutation(order, 20)


def test_clusters_groups_follow_kmeans_clusters():
    table = make_table(1600)
    emb, truth = clustered_embeddings(table, 16, noise=0.1)
    s = ClustersShuffle(n_clusters=16, group_size=8, iters=10)
    order, sizes = s.grouped_order(table, epoch=0, seed=0, embeddings=emb)
    assert_permutation(order, len(table))
    assert sizes.max() <= 8 and (sizes == 8).mean() > 0.8
    groups = split_groups(order, sizes)
    assert np.mean([len(set(truth[g])) == 1 for g in groups]) > 0.9


def test_cluster_sums_match_a_float64_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 12, generator=g)
    labels = torch.randint(7, (1000,), generator=g)
    labels[labels == 3] = 4                                            # cluster 3 empty
    ref = np.zeros((7, 12))
    np.add.at(ref, labels.numpy(), x.double().numpy())
    for block in (1 << 26, 70):                                        # one block, many row blocks
        got = cluster_sums(x, labels, 7, block_elems=block)
        assert got.shape == (7, 12) and (got[3] == 0).all()
        np.testing.assert_allclose(got.double().numpy(), ref, rtol=1e-5, atol=1e-5)


def test_kmeans_is_deterministic_and_uses_no_scatter_add(monkeypatch):
    table = make_table(1500, n_first=500)                              # copies share one vector
    emb, truth = clustered_embeddings(table, 12, noise=0.1)

    def banned(*args, **kwargs):
        raise AssertionError("float scatter-adds are nondeterministic on CUDA")

    for op in ("index_add_", "index_add", "scatter_add_", "scatter_add", "scatter_reduce_", "index_put_"):
        monkeypatch.setattr(torch.Tensor, op, banned)
    runs = [kmeans(emb, 12, 10, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(runs[0], runs[1])
    assert np.array_equal(kmeans(emb, 12, 10, np.random.default_rng(8)).shape, runs[0].shape)
    # the clusters recover the generating centers (up to renaming)
    pure = [np.bincount(truth[runs[0] == c]).max() / (runs[0] == c).sum() for c in np.unique(runs[0])]
    assert np.mean(pure) > 0.9
    o1 = ClustersShuffle(n_clusters=12).order(table, epoch=0, seed=0, batch_size=32, embeddings=emb)
    o2 = ClustersShuffle(n_clusters=12).order(table, epoch=0, seed=0, batch_size=32, embeddings=emb)
    assert np.array_equal(o1, o2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_kmeans_is_deterministic_on_cuda():
    table = make_table(20000, n_first=5000)
    emb, _ = clustered_embeddings(table, 64, dim=128, noise=0.5)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)                           # raises on a nondeterministic op
    try:
        runs = [kmeans(emb.cuda(), 64, 10, np.random.default_rng(0)) for _ in range(3)]
    finally:
        torch.use_deterministic_algorithms(prev)
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


# ------------------------------------------------------------------------------------- no_duplicates

def test_no_duplicates_has_no_repeated_text_in_any_batch():
    # 40 questions × 6 answers; 30 answers reused by other questions; 20 answers equal a question text
    rng = np.random.default_rng(0)
    qs = [f"question {i}" for i in range(40)]
    text_a = [q for q in qs for _ in range(6)]
    text_b = [f"answer {i}" for i in range(240)]
    for i in rng.choice(240, 30, replace=False):
        text_b[i] = f"answer {rng.integers(20)}"
    for i in rng.choice(240, 20, replace=False):
        text_b[i] = qs[rng.integers(40)]
    table = PairTable.from_pairs(text_a, text_b, np.ones(240))
    batches_random = global_batches(np.random.default_rng(0).permutation(240), 24)
    assert batch_stats(table, batches_random)["duplicates_per_batch"] > 0.5   # the problem is real
    s = NoDuplicates()
    order = s.order(table, epoch=0, seed=0, batch_size=24)
    assert_permutation(order, 240)
    assert s.violations == 0
    for b in global_batches(order, 24):
        ids = np.concatenate([table.a[b], table.b[b]])
        same = table.a[b] == table.b[b]                                  # a pair may repeat itself
        assert len(np.unique(ids)) == len(ids) - same.sum()
    assert batch_stats(table, global_batches(order, 24))["duplicates_per_batch"] == 0
    # the batches are exactly full here, so the last pairs need the swap repair to find a clean batch
    greedy_only = NoDuplicates(repair_budget=0)
    greedy_only.order(table, epoch=0, seed=0, batch_size=24)
    assert greedy_only.violations > 0


def test_no_duplicates_counts_violations_when_impossible():
    text_a = ["popular"] * 40 + [f"q{i}" for i in range(60)]              # 40 copies, only 10 batches
    table = PairTable.from_pairs(text_a, [f"b{i}" for i in range(100)], np.ones(100))
    s = NoDuplicates()
    order = s.order(table, epoch=0, seed=0, batch_size=10)
    assert_permutation(order, 100)
    assert s.violations == 30 and s.info["violations"] == 30
    per_batch = [int((table.a[b] == table.a[0]).sum()) for b in global_batches(order, 10)]
    assert sum(per_batch) == 40 and min(per_batch) >= 1                # every batch got one clean copy


# ------------------------------------------------------------------------ global batches, rank slices

@pytest.mark.parametrize("n, gbs, world", [(107, 20, 4), (100, 20, 4), (103, 24, 8), (5, 8, 2)])
def test_global_batches_and_rank_slices(n, gbs, world):
    order = np.random.default_rng(0).permutation(n)
    single = global_batches(order, gbs)
    multi = global_batches(order, gbs, world_size=world)
    full = n // gbs
    assert all(len(b) == gbs for b in multi[:full])
    for b1, bw in zip(single[:full], multi[:full]):
        assert np.array_equal(b1, bw)
    tail = n - full * gbs
    expect_tail = tail // world * world
    assert len(multi) == full + (expect_tail > 0)
    if expect_tail:
        assert np.array_equal(multi[-1], order[full * gbs:full * gbs + expect_tail])
    assert len(single) == full + (tail > 0)
    for b in multi:
        slices = [rank_slice(b, r, world) for r in range(world)]
        assert len({len(x) for x in slices}) == 1                      # equal sizes across ranks
        assert np.array_equal(np.concatenate(slices), b)               # union = the global batch
    dropped = global_batches(order, gbs, world_size=world, drop_last=True)
    assert len(dropped) == full and all(len(b) == gbs for b in dropped)


def test_global_batches_validation():
    with pytest.raises(ValueError):
        global_batches(np.arange(10), 10, world_size=3)
    with pytest.raises(ValueError):
        rank_slice(np.arange(10), 0, 3)


def test_batch_stats_counts_cross_side_duplicates():
    # texts: 0 "x", 1 "y", 2 "z", 3 "w"; pair 1 repeats x as its b side, pair 2 repeats y as its a side
    table = PairTable.from_pairs(["x", "y", "y", "w"], ["y", "x", "z", "z"], np.ones(4))
    stats = batch_stats(table, [np.array([0, 1, 2]), np.array([3])])
    assert stats["n_batches"] == 2 and stats["mean_batch_size"] == 2.0
    assert stats["duplicates_per_batch"] == 1.0                        # pairs 1 and 2 in batch 0
    assert stats["duplicate_fraction"] == 0.5
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]]), dim=1)
    cos = batch_stats(table, [np.array([0, 1]), np.array([2, 3])], emb)["intra_batch_cosine"]
    assert cos == pytest.approx(1.0)


def test_intra_batch_cosine_counts_distinct_first_sides_once():
    # texts: "x" three times, "y" once, "z" once; x ⟂ y, x·z = 0.6, y·z = 0.8
    table = PairTable.from_pairs(["x", "x", "x", "y", "z", "x"], [f"b{i}" for i in range(6)], np.ones(6))
    per_text = {"x": [1.0, 0.0], "y": [0.0, 1.0], "z": [0.6, 0.8]}
    emb = torch.tensor([per_text[table.texts[t]] for t in table.a])    # (6, 2), unit rows
    stats = batch_stats(table, [np.array([0, 1, 2, 3])], emb)
    assert stats["intra_batch_cosine"] == pytest.approx(0.0)           # only x·y; copies would give 0.5
    stats = batch_stats(table, [np.array([0, 1, 3, 4])], emb)
    assert stats["intra_batch_cosine"] == pytest.approx((0.0 + 0.6 + 0.8) / 3)
    # a batch of copies only has no distinct pair: left out of the mean, nan when nothing is left
    stats = batch_stats(table, [np.array([0, 1, 2, 5]), np.array([3, 4])], emb)
    assert stats["intra_batch_cosine"] == pytest.approx(0.8)
    assert np.isnan(batch_stats(table, [np.array([0, 1, 2, 5])], emb)["intra_batch_cosine"])
