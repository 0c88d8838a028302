"""The run's own state: every counter and schedule the training loop reads, saved with each checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

__all__ = ["RunState"]


@dataclass
class RunState:
    """Counters and schedules of one training run (networks, optimizers, replay and RNG are saved beside it).

    Attributes:
        env_steps: agent steps collected (all ranks together).
        updates: learner updates made, skipped ones included.
        episodes: training episodes finished.
        replay_capacity: steps the replay holds (a resumed run keeps its own).
        wall_time_s: seconds of training, summed over resumes.
        random_return: mean evaluation return of the uniformly random policy.
        nonfinite_updates: updates skipped for a non-finite loss or gradient.
        nonfinite_in_a_row: of those, how many came last in a row (the run stops past a limit).
        next_eval: env step of the next evaluation.
        next_log: env step of the next training-scalar log.
        ratio: the train-ratio bookkeeping (:meth:`TrainRatio.state_dict`).
        round_returns: episode returns of the round whose checkpoint this is: a resumed run redoes that
            round's updates, logs and evaluation before it collects again.
        unscheduled_returns: finished returns a return-driven λ scheduler has not seen yet.

    Examples:
        >>> state = RunState(env_steps=80, next_eval=160, round_returns=[21.0])
        >>> saved = state.state_dict()
        >>> saved["round"], "round_returns" in saved
        ({'returns': [21.0]}, False)
        >>> RunState.from_state_dict(saved) == state
        True
    """

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0
    replay_capacity: int = 0
    wall_time_s: float = 0.0
    random_return: float | None = None
    nonfinite_updates: int = 0
    nonfinite_in_a_row: int = 0
    next_eval: int = 0
    next_log: int = 0
    ratio: dict = field(default_factory=lambda: {"updates": 0})
    round_returns: list[float] | None = None
    unscheduled_returns: list[float] = field(default_factory=list)

    def state_dict(self) -> dict:
        """Plain JSON-able values; the checkpointed round under ``"round"`` (the key checkpoints have used)."""
        state = asdict(self)
        state["round"] = {"returns": state.pop("round_returns")} if self.round_returns is not None else None
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restores from :meth:`state_dict` or from the counters dict of older checkpoints (same keys)."""
        defaults = RunState()
        for f in fields(self):
            if f.name != "round_returns":
                setattr(self, f.name, state.get(f.name, getattr(defaults, f.name)))
        self.round_returns = (state.get("round") or {}).get("returns")

    @classmethod
    def from_state_dict(cls, state: dict) -> "RunState":
        run = cls()
        run.load_state_dict(state)
        return run

    def summary(self, world_size: int = 1) -> dict:
        """What a finished run writes to its ``done`` file: the counters, without the resume bookkeeping."""
        state = self.state_dict()
        for key in ("round", "unscheduled_returns", "next_eval", "next_log"):
            state.pop(key)
        return {**state, "world_size": world_size}
