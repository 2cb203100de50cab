"""Export the trained encoder as a folder that both `transformers.AutoModel` and
`sentence_transformers.SentenceTransformer` load (the sentence-transformers layout, written by
hand so that training does not depend on sentence-transformers)."""
from __future__ import annotations

import json
from pathlib import Path

from bsc_lightning.encoder import Encoder


def export_encoder(encoder: Encoder, tokenizer, path: str | Path, max_length: int) -> Path:
    """Write model weights, tokenizer and the pooling config to `path`; returns the folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    encoder.model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    (path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": False}, indent=2))
    (path / "config_sentence_transformers.json").write_text(
        json.dumps({"similarity_fn_name": "cosine", "prompts": {}, "default_prompt_name": None}, indent=2))
    pooling = path / "1_Pooling"
    pooling.mkdir(exist_ok=True)
    (pooling / "config.json").write_text(json.dumps({
        "word_embedding_dimension": encoder.dim,
        "pooling_mode_cls_token": encoder.pooling == "cls",
        "pooling_mode_mean_tokens": encoder.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }, indent=2))
    return path
