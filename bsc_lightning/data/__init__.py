from bsc_lightning.data.table import PairTable, TaskType

__all__ = ["PairTable", "TaskType"]
