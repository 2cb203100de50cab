"""Greedy soup of a ``choose`` run's variants (Wortsman et al., "Model soups", ICML 2022, Recipe 1).

``soup: true`` beside ``choose``: once every variant is trained and tested, their tested weights (each
variant's exported encoder: its best checkpoint, interpolated at its α when ``interpolate`` is on) are
ranked by dev score, and each in turn joins the soup, the element-wise mean of its members' weights, when
the mean's dev score does not fall (the paper's ≥). All variants start from the same pretrained encoder,
so their weights stay in one basin and their mean is a model of its own, one inference cost. A soup of two
or more members is a candidate with its dev score, ≥ the best variant's by construction; it is tested (once)
in ``<run dir>/choose/soup``. Only dev scores decide, as for the variants (bsc_lightning.choose).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers.utils import SAFE_WEIGHTS_NAME  # the weights file of save_pretrained

log = logging.getLogger(__name__)


def average(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors (in float32, back to their dtype); others the first's."""
    if not states:
        raise ValueError("a soup needs at least one set of weights")
    keys = states[0].keys()
    for s in states[1:]:
        if s.keys() != keys:
            raise ValueError(f"the weights differ in their keys: {sorted(set(keys) ^ set(s))[:5]}")
    out = {}
    for k, t in states[0].items():
        if t.is_floating_point():
            out[k] = (sum(s[k].float() for s in states) / len(states)).to(t.dtype)  # [same shape as t]
        else:
            out[k] = t
    return out


def greedy(ranked: Sequence[str], dev: Callable[[list[str]], float]) -> tuple[list[str], dict[str, float]]:
    """Greedy soup: ``ranked`` best dev score first; ``dev(members)`` scores the mean of their weights.

    Returns the members kept and the dev score of every soup tried, keyed by its members joined with ``+``.
    """
    members = [ranked[0]]
    best = dev(members)
    tried = {ranked[0]: best}
    for name in ranked[1:]:
        score = dev([*members, name])
        tried["+".join([*members, name])] = score
        if score >= best:
            members, best = [*members, name], score
    log.info("soup: %s (dev by soup tried: %s)", "+".join(members), tried)
    return members, tried


def load_weights(encoder_dir: Path) -> dict[str, torch.Tensor]:
    """The weights of an exported encoder (bsc_lightning.export), keyed as the Hugging Face model's."""
    path = Path(encoder_dir) / SAFE_WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"soup: {path} is missing (a soup averages the variants' exported encoders)")
    return load_file(path)
