"""Benchmarks of bsc_lightning (run from the repository root as modules: ``python -m bench.throughput``).

``bench.common`` holds the helpers every benchmark shares; ``bench.synthetic`` the synthetic texts and the
QQP-layout fixture that benchmarks and tests use. Nothing here imports Hydra, OmegaConf, W&B or datasets
at import time, so the benchmarks run on a bare accelerator image.
"""
