"""The training loop's parts: data layout, the update, train-ratio bookkeeping, evaluation, checkpoints."""
from .layout import to_dreamer_layout
from .learner import Learner

__all__ = ["Learner", "to_dreamer_layout"]
