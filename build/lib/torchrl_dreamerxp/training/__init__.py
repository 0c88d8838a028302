"""The training loop's parts: data layout, the update, a training step, run state and checkpoints, builders.

``recipes/train.py`` reads as the loop: :func:`~torchrl_dreamerxp.training.builders.make_collector` rounds →
:func:`extend_replay` → :class:`Checkpointer` when due → :func:`train_step` × the train ratio → logs and
evaluation; everything the loop reads between rounds is in :class:`RunState`.
"""
from .checkpointer import Checkpointer
from .layout import extend_replay, to_dreamer_layout
from .learner import Learner
from .run_state import RunState
from .train_step import train_step

__all__ = ["Learner", "RunState", "Checkpointer", "train_step", "extend_replay", "to_dreamer_layout"]
