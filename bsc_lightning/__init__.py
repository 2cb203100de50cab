"""bsc_lightning: batch-softmax contrastive losses for pairwise sentence scoring (Chernyavskiy et al., NAACL 2022)."""

__version__ = "0.1.0"
