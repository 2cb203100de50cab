"""Tokenise every unique text once and keep the ids as one flat array (cheap to ship to workers).

The tokenisation runs through `datasets.Dataset.map` with an explicit cache file keyed by the
tokenizer, the max length and the texts, so a second run (or a sweep) reads it back instead of
tokenising again.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bsc_lightning.data.chunks import Chunks, pack_flat

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path(os.environ.get("BSC_CACHE_DIR", Path.home() / ".cache" / "bsc_lightning"))


@dataclass
class TokenCache:
    """Token ids of ``n`` texts: text i is ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray  # (total,) int32
    offsets: np.ndarray  # (n + 1,) int64
    pad_id: int

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]: self.offsets[i + 1]]

    def seqs(self, idx: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        return [self.ids[self.offsets[i]: self.offsets[i + 1]] for i in idx]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def pack(self, idx: np.ndarray, max_tokens: int | None = None, max_rows: int | None = None,
             length_aware: bool = True) -> Chunks:
        """Texts ``idx`` packed into length-aware chunks straight from the flat ids (no per-text copies)."""
        idx = np.asarray(idx, dtype=np.int64)
        return pack_flat(self.ids, self.offsets[idx], self.offsets[idx + 1] - self.offsets[idx], self.pad_id,
                         max_tokens, max_rows, length_aware)


def _fingerprint(tokenizer, max_length: int, texts: Sequence[str]) -> str:
    h = hashlib.sha1()
    h.update(f"{getattr(tokenizer, 'name_or_path', type(tokenizer).__name__)}|{len(tokenizer)}|{max_length}".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:20]


def tokenize_texts(texts: Sequence[str], tokenizer, max_length: int, cache_dir: str | Path | None = None,
                   num_proc: int | None = None) -> TokenCache:
    """Token ids (with special tokens, truncated to ``max_length``, unpadded) for every text."""
    if max_length < 2:
        raise ValueError(f"encoder.max_length={max_length}: needs room for the special tokens (>= 2)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    try:
        import datasets
    except ImportError:  # a bare accelerator image: tokenise in memory, without the disk cache
        ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in ids])]).astype(np.int64)
        flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(offsets[-1]))
        return TokenCache(flat, offsets, int(pad))
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(tokenizer, max_length, texts)
    cache_file = cache_dir / f"tokens-{fingerprint}.arrow"

    def encode(batch: dict) -> dict:
        out = tokenizer(batch["text"], truncation=True, max_length=max_length, add_special_tokens=True)
        return {"input_ids": out["input_ids"]}

    was_enabled = datasets.is_progress_bar_enabled()
    if len(texts) < 20000:
        datasets.disable_progress_bar()
    try:
        ds = datasets.Dataset.from_dict({"text": list(texts)})
        ds = ds.map(encode, batched=True, batch_size=2000, remove_columns=["text"],
                    cache_file_name=str(cache_file), load_from_cache_file=True, num_proc=num_proc,
                    new_fingerprint=fingerprint,  # ours; hashing the tokenizer with dill takes seconds
                    desc="tokenising")
    finally:
        if was_enabled:
            datasets.enable_progress_bar()
    col = ds.data.column("input_ids").combine_chunks()  # arrow ListArray: one flat buffer + offsets
    offsets = np.asarray(col.offsets, dtype=np.int64)
    ids = np.asarray(col.values, dtype=np.int32)
    if offsets[0] != 0:
        ids, offsets = ids[offsets[0]:], offsets - offsets[0]
    return TokenCache(ids, offsets, int(pad))
