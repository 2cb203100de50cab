"""Pair losses: batch-softmax contrastive (BSC) loss and the baselines of PAPER.md.

Every module has ``forward(q, a, labels=None, q_ids=None, a_ids=None) -> LossOutput(loss, logs)``.
"""

from bsc_lightning.losses.baselines import ComboLoss, CoSENTLoss, MSELoss, TripletLoss
from bsc_lightning.losses.bsc import (
    BSCLoss,
    BSCTerms,
    LossOutput,
    bsc_loss,
    bsc_loss_terms,
    normalize_embeddings,
)
from bsc_lightning.losses.distributed import gather_no_grad, gather_with_grad, world_info

__all__ = [
    "BSCLoss",
    "BSCTerms",
    "CoSENTLoss",
    "ComboLoss",
    "LossOutput",
    "MSELoss",
    "TripletLoss",
    "bsc_loss",
    "bsc_loss_terms",
    "gather_no_grad",
    "gather_with_grad",
    "normalize_embeddings",
    "world_info",
]
