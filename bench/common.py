"""Helpers shared by the benchmarks: device sync and clock stamps, peak memory, common flags, output.

Imports only the standard library and torch.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]  # the checkout: the benchmarks run from here (python -m bench.x)
MIB, GIB = 2**20, 2**30
# What a bare accelerator image may lack; the benchmarks must not import it (tests/test_throughput_bench.py).
CONFIG_STACK = ("hydra", "omegaconf", "wandb", "datasets")


# ------------------------------------------------------------------------------------------ clock
def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Wall time by default. use_cpu_time(True) switches to this process's CPU time: with one torch thread on a
# shared CPU it leaves out the time the process waits for other jobs, which wall time on a busy machine does not.
_CLOCK = {"now": time.perf_counter}


def use_cpu_time(on: bool) -> None:
    _CLOCK["now"] = time.process_time if on else time.perf_counter


def now() -> float:
    """Seconds on the benchmark clock (wall time, or process CPU time after ``use_cpu_time(True)``)."""
    return _CLOCK["now"]()


def stamp(device: torch.device) -> float:
    """``now()`` once the device has finished its queued work: differences of stamps time device work."""
    sync(device)
    return now()


# ------------------------------------------------------------------------------------------ memory
def reset_peak(device: torch.device) -> int:
    """Collect garbage, empty the CUDA cache and restart its peak counter; bytes allocated now (0 on CPU)."""
    gc.collect()
    if device.type != "cuda":
        return 0
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def cuda_peak_gib(device: torch.device) -> float | None:
    """Peak CUDA memory allocated since the last ``reset_peak`` in GiB; None off CUDA."""
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


class MemoryMeter:
    """Peak memory above a baseline: CUDA allocator statistics, or the process's resident set on CPU
    (Linux VmHWM, reset through /proc/self/clear_refs; else ru_maxrss, which cannot be reset)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.base, self._hwm = device, 0, False

    @staticmethod
    def _status_kib(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def reset(self) -> None:
        self.base = reset_peak(self.device)
        if self.device.type == "cuda":
            return
        try:  # "5" resets VmHWM (peak RSS) to the current RSS (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
            self.base, self._hwm = self._status_kib("VmRSS") * 1024, True
        except OSError:  # no reset possible: peak-so-far as the baseline (may under-count a little)
            self.base, self._hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, False

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self._hwm:
            peak = self._status_kib("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        return max(0, peak - self.base) / MIB


# ------------------------------------------------------------------------------------------ flags
def add_common_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--device (default cuda when visible), --threads, --json: the flags every benchmark takes."""
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch intra-op CPU threads (default: torch's choice)")
    p.add_argument("--json", type=Path, help="write the results here")
    return p


def setup(args: argparse.Namespace) -> torch.device:
    """Apply --threads; the --device as a torch.device (exits when CUDA is asked for and none is visible)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no GPU visible")
    return torch.device(args.device)


# ------------------------------------------------------------------------------------------ output
def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"


def fmt(x: Any, spec: str = "", missing: str = "-") -> str:
    """``format(x, spec)``, or ``missing`` for None (a value a configuration did not produce)."""
    return missing if x is None else format(x, spec)


def markdown_table(rows: Iterable[dict[str, Any]], columns: list[tuple[str, str, str]],
                   missing: str = "–") -> list[str]:
    """Markdown lines of ``rows``; ``columns``: (title, key of a row, format spec)."""
    return (["| " + " | ".join(title for title, _, _ in columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(fmt(r[key], spec, missing) for _, key, spec in columns) + " |" for r in rows])


def write_json(path: str | Path | None, data: Any, indent: int = 2) -> None:
    """Write ``data`` as JSON to ``path`` (nothing when path is None)."""
    if path is not None:
        Path(path).write_text(json.dumps(data, indent=indent))


def heavy_modules(names: Iterable[str] = (*CONFIG_STACK, "lightning")) -> list[str]:
    """Which of ``names`` this process has imported (a benchmark that should not need them can warn)."""
    return sorted(m for m in names if sys.modules.get(m) is not None)  # None: import blocked
