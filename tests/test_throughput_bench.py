"""Smoke test of bench/throughput.py: every path runs end to end on CPU and the JSON has its keys.

Tiny random BERT, 2 timed steps; no timing is asserted (the numbers are noise at this size).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from conftest import ROOT


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_throughput", ROOT / "bench" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_bench_smoke(tiny_bert: str, data_root: Path, tmp_path: Path) -> None:
    bench = load_bench()
    out = tmp_path / "bench.json"
    # STS-B from the tiny fixture folder (the original layout), so the real-data path always runs.
    # One thread (on a shared 2-core machine two spinning threads are several times slower), CPU time.
    argv = ["--device", "cpu", "--models", tiny_bert, "--batch-sizes", "4", "--data", "synthetic", "stsb",
            "--steps", "2", "--warmup", "1", "--threads", "1", "--cpu-time", "--token-batch-sizes", "8",
            "--data-dir", str(data_root), "--json", str(out), "--markdown", str(tmp_path / "bench.md")]
    threads = torch.get_num_threads()
    try:
        report = bench.main(argv)
    finally:
        torch.set_num_threads(threads)  # the rest of the session keeps its setting

    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert {"device", "clock", "command", "steps", "warmup", "results", "padding", "notes"} <= set(report)
    datas = ["synthetic", "stsb"]
    assert not any("stsb skipped" in n for n in report["notes"]), report["notes"]
    rows = report["results"]
    assert [(r["data"], r["path"]) for r in rows] == [(d, p) for d in datas for p in bench.DEFAULT_PATHS]
    for r in rows:
        assert {"model", "batch", "pairs_per_s", "ratio_vs_raw", "e2e_pairs_per_s", "real_token_share",
                "step_ms", "note"} <= set(r)
        if r["path"] == "st" and r["note"].startswith("skipped"):
            continue  # sentence-transformers not installed
        assert r["batch"] == 4 and r["pairs_per_s"] > 0 and 0 < r["real_token_share"] <= 1
        assert r["ratio_vs_raw"] > 0
        if r["path"] == "raw":
            assert r["ratio_vs_raw"] == 1.0
    # The padded Trainer path feeds exactly the raw loop's layout: the same tokens.
    for d in datas:
        by_path = {r["path"]: r for r in rows if r["data"] == d}
        assert by_path["bsc_padded"]["fed_tokens_per_batch"] == by_path["raw"]["fed_tokens_per_batch"]
    assert [p["data"] for p in report["padding"]] == datas
    assert "| model | data |" in (tmp_path / "bench.md").read_text()
