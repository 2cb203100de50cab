"""Shared fixtures: a tiny random BERT (built locally, no hub), tiny data folders in the original release
layouts (`data_root`, written by tests/fixtures.py: every end-to-end test runs on them, so a fresh clone
skips nothing), and the real-data folder ``../shared/data`` for extra tests that also run the real files.

``BSC_TEST_NO_SHARED=1`` hides ``../shared/data`` (and an inherited ``BSC_DATA_DIR``) to simulate a fresh
clone: ``BSC_TEST_NO_SHARED=1 python -m pytest -m "not slow" -rs`` must report no skip.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("BSC_NO_PROGRESS", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `bench` (bench.synthetic) under a bare `pytest`; `python -m pytest` adds it
    sys.path.insert(0, str(ROOT))
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()
NO_SHARED = os.environ.get("BSC_TEST_NO_SHARED", "").strip().lower() in {"1", "true", "yes", "on"}
if NO_SHARED:  # a fresh clone: no ../shared, and the Makefile's BSC_DATA_DIR points nowhere
    os.environ.pop("BSC_DATA_DIR", None)


def shared_data_present() -> bool:
    return not NO_SHARED and SHARED_DATA.is_dir()


def build_tiny_bert(path: Path, hidden: int = 32, layers: int = 2, seed: int = 0, dropout: float = 0.1) -> Path:
    """A randomly initialised 2-layer BERT with the embedded MiniLM's tokenizer, saved to `path`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from bsc_lightning.encoder import EMBEDDED_MINILM, resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(EMBEDDED_MINILM))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=128, hidden_dropout_prob=dropout,
                     attention_probs_dropout_prob=dropout)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="session")
def tiny_bert_no_dropout(tmp_path_factory) -> str:
    """The same tiny BERT without dropout: runs that must agree to rounding (DDP vs one process)."""
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny_bert_no_dropout"), dropout=0.0))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """stsb/, mrpc/, wikiqa/, qqp/ in the original layouts, ≈60–200 rows per split (tests/fixtures.py)."""
    from fixtures import write_data_root

    return write_data_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder; only for extra (slow) tests that ALSO run the real files."""
    if not shared_data_present():
        pytest.skip(f"real data folder {SHARED_DATA} not present" + (" (BSC_TEST_NO_SHARED)" if NO_SHARED else ""))
    return SHARED_DATA
