"""Train-ratio bookkeeping: how many updates are due after so many env steps."""
from __future__ import annotations

__all__ = ["TrainRatio"]


class TrainRatio:
    """Official DreamerV3 semantics: ``train_ratio`` replayed steps per env step.

    Each update replays ``batch_size × batch_length`` steps, so after ``n`` env steps (past the
    prefill) ``n · train_ratio / (batch_size · batch_length)`` updates are due in total.

    Examples:
        >>> ratio = TrainRatio(train_ratio=64, replayed_per_update=1024)
        >>> ratio(env_steps=32)
        2
        >>> ratio(env_steps=40)
        0
    """

    def __init__(self, train_ratio: float, replayed_per_update: int):
        self.per_step = train_ratio / replayed_per_update
        self.updates = 0

    def __call__(self, env_steps: int) -> int:
        due = int(env_steps * self.per_step) - self.updates
        due = max(due, 0)
        self.updates += due
        return due

    def state_dict(self):
        return {"updates": self.updates}

    def load_state_dict(self, state):
        self.updates = int(state["updates"])
