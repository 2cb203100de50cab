"""Smoke test of ``python -m bench.throughput``: every path runs end to end on CPU and the JSON has its keys;
and every benchmark module imports without the config stack (Hydra, OmegaConf, W&B, datasets).

Tiny random BERT, 2 timed steps; no timing is asserted (the numbers are noise at this size).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from bench import throughput as bench
from bench.common import CONFIG_STACK

BENCH_MODULES = ["bench", "bench.common", "bench.synthetic", "bench.throughput", "bench.big_batch",
                 "bench.batching", "bench.collate", "bench.suite", "bench.evaluation"]


def test_bench_modules_import_without_config_stack() -> None:
    """A bare accelerator image lacks hydra-core, omegaconf, wandb and datasets: every benchmark module (and
    the bsc_lightning modules it imports) must import without them. A fresh interpreter where importing
    any of them raises ImportError, as if not installed."""
    code = "\n".join([
        "import importlib, sys",
        f"for name in {CONFIG_STACK!r}:",
        "    sys.modules[name] = None  # `import name` (and its submodules) now raises ImportError",
        f"for module in {BENCH_MODULES!r}:",
        "    importlib.import_module(module)",
        "print('imported')",
    ])
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("imported")


def test_throughput_bench_smoke(tiny_bert: str, data_root: Path, tmp_path: Path) -> None:
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


def test_suite_models_and_summary(tmp_path):
    """The GPU suite's own pieces: stand-in models that load as encoders, and the summary it writes."""
    from bench import suite
    from bsc_lightning.encoder import Encoder

    suite.make_models(tmp_path / "models", tiny=True)
    for name in ("minilm", "bert-base-random"):
        enc = Encoder(str(tmp_path / "models" / name))
        assert enc.dim == 64 and enc.model.config.num_hidden_layers == 2
    (tmp_path / "commands.md").write_text("## throughput: python -m bench.throughput ...\n")
    (tmp_path / "throughput.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    (tmp_path / "batching.json").write_text('{"example": {"ratio_to_epoch": 0.01}}')
    text = suite.summarize(tmp_path)
    assert text.startswith("# GPU suite — ") and "## throughput\n\n| a | b |" in text
    assert '"ratio_to_epoch": 0.01' in text and "python -m bench.throughput" in text


@pytest.mark.slow
def test_gpu_suite_smoke_runs_every_check(tmp_path):
    """`bash bench/gpu_suite.sh --smoke`: every GPU check's code path on CPU, under 3 minutes."""
    import os
    import subprocess

    out = tmp_path / "suite"
    r = subprocess.run(["bash", "bench/gpu_suite.sh", "--smoke"], cwd=ROOT, env={**os.environ, "OUT": str(out)},
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = (out / "suite.md").read_text()
    for section in ("## throughput_minilm", "## throughput_bert_base", "## big_batch", "## batching"):
        assert section in text
    assert "FAILED" not in (out / "commands.md").read_text()
