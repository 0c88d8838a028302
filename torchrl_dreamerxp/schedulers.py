"""Schedules of λ, the EXTRINSIC weight in ``r = λ·r_ext + (1 − λ)·r_intr`` (XP extension 2).

Every scheduler has ``value`` (the current λ), ``step(episode_returns=())`` called once per training
update with the returns of the episodes that finished since the last call, and
``state_dict``/``load_state_dict`` (saved in checkpoints). TorchRL already has a ``LambdaScheduler``
for learning rates; these are a different thing and are named after what they schedule: a weight.
"""
from __future__ import annotations

import math
from typing import Iterable

__all__ = ["RewardWeightScheduler", "ConstantWeight", "ExponentialDecayWeight", "ReturnMovingAverageWeight",
           "SCHEDULER_NAMES", "make_scheduler", "scheduler_from_config"]


def _check_unit(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ValueError(f"{name} must be in [0, 1] (λ is the extrinsic reward weight), got {value}")
    return value


class RewardWeightScheduler:
    """Base class: holds ``value`` and the number of ``step`` calls (``updates``).

    ``state_dict`` holds the hyperparameters (``"config"``) as well as the state, and ``load_state_dict``
    restores both: a loaded scheduler continues the saved one exactly.

    Examples:
        >>> s = RewardWeightScheduler(0.3)
        >>> s.step(), s.updates, s.state_dict()
        (0.3, 1, {'value': 0.3, 'updates': 1, 'config': {}})
    """

    _CONFIG: tuple[str, ...] = ()  # constructor arguments kept in the state dict

    def __init__(self, value: float):
        self._value = value
        self.updates = 0

    @property
    def value(self) -> float:
        """The current extrinsic weight λ ∈ [0, 1]."""
        return self._value

    def step(self, episode_returns: Iterable[float] = ()) -> float:
        """Advance one training update; returns the new λ."""
        self.updates += 1
        return self._value

    def state_dict(self) -> dict:
        return {"value": self._value, "updates": self.updates, "config": {k: getattr(self, k) for k in self._CONFIG}}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.get("config", {}).items():
            setattr(self, key, value)
        self._value, self.updates = float(state["value"]), int(state["updates"])


class ConstantWeight(RewardWeightScheduler):
    """``λ`` fixed.

    Examples:
        >>> s = ConstantWeight(0.7)
        >>> s.step(); s.value
        0.7
        0.7
    """

    def __init__(self, lam: float = 0.5):
        super().__init__(_check_unit("lam", lam))


class ExponentialDecayWeight(RewardWeightScheduler):
    """The intrinsic weight ``1 − λ`` decays exponentially from ``1 − lam_start`` toward ``1 − lam_end``.

    After ``n`` updates::

        1 − λ_n = (1 − lam_end) + ((1 − lam_start) − (1 − lam_end))·exp(−n / decay_steps)

    so ``decay_steps`` is the time constant: after ``decay_steps`` updates the gap to the end value
    has shrunk to ``1/e`` of its start. ``lam_start ≤ lam_end`` (the intrinsic weight decays).

    Examples:
        >>> s = ExponentialDecayWeight(lam_start=0.0, lam_end=1.0, decay_steps=10)
        >>> round(s.value, 4)
        0.0
        >>> for _ in range(10):
        ...     _ = s.step()
        >>> round(s.value, 4)  # 1 − e^(−1)
        0.6321
    """

    _CONFIG = ("lam_start", "lam_end", "decay_steps")

    def __init__(self, lam_start: float = 0.5, lam_end: float = 1.0, decay_steps: int = 10_000):
        if decay_steps <= 0:
            raise ValueError(f"decay_steps must be > 0, got {decay_steps}")
        self.lam_start, self.lam_end = _check_unit("lam_start", lam_start), _check_unit("lam_end", lam_end)
        if self.lam_start > self.lam_end:
            raise ValueError(f"lam_start ({lam_start}) must not exceed lam_end ({lam_end}): the intrinsic weight "
                             f"1 − λ decays (for a constant λ use ConstantWeight)")
        self.decay_steps = decay_steps
        super().__init__(self.lam_start)

    def _at(self, n: int) -> float:
        w_start, w_end = 1.0 - self.lam_start, 1.0 - self.lam_end
        return 1.0 - (w_end + (w_start - w_end) * math.exp(-n / self.decay_steps))

    def step(self, episode_returns: Iterable[float] = ()) -> float:
        self.updates += 1
        self._value = self._at(self.updates)
        return self._value


class ReturnMovingAverageWeight(RewardWeightScheduler):
    """λ moves toward the task while finished episode returns improve (or reach ``solved_return``), toward
    exploration when they stall or drop.

    Each finished episode return ``R`` updates three averages (the first one only initialises them)::

        fast ← fast + rate·(R − fast)                 recent returns
        slow ← slow + slow_rate·(R − slow)            the longer-run level
        dev  ← dev + slow_rate·(|R − slow| − dev)     the return's typical spread

    and sets the target: ``lam_max`` if ``fast − slow > tolerance·dev`` (improving by more than noise) or
    ``fast ≥ solved_return`` (a solved task keeps the task reward), else ``lam_min``. Every update
    (``step``) then moves λ a fraction ``lam_rate`` of the way to the target::

        λ ← λ + lam_rate·(target − λ)

    so λ changes smoothly in update steps, by the same amount however many episodes finished, with a time
    constant of ``1 / lam_rate`` updates, and never leaves ``[lam_min, lam_max]``. On a flat but noisy
    plateau ``fast − slow`` rarely clears ``tolerance·dev``: λ drifts to exploration. A task at a constant
    return is a plateau too unless ``solved_return`` says it is solved (e.g. gymnasium's ``reward_threshold``).

    Args:
        lam_init: starting λ, in ``[lam_min, lam_max]``.
        lam_min: lower bound of λ in [0, 1].
        lam_max: upper bound of λ in [0, 1].
        rate: EMA rate of the recent returns (per episode).
        slow_rate: EMA rate of the long-run level and spread (per episode, ≤ ``rate``).
        tolerance: how many spreads the recent average must lead the long-run one to count as improving.
        lam_rate: fraction of the way to the target λ moves per update, in (0, 1].
        solved_return: a return at or above which the task counts as solved (``None``: never).

    Examples:
        >>> s = ReturnMovingAverageWeight(lam_init=0.5, rate=0.5, slow_rate=0.25, tolerance=0.5, lam_rate=0.5)
        >>> s.step([0.0])  # the first return initialises the averages; the target starts at lam_min
        0.25
        >>> s.step([8.0])  # fast 4, slow 2, spread 1.5: 4 − 2 > 0.75, improving: halfway to 1
        0.625
    """

    _CONFIG = ("lam_min", "lam_max", "rate", "slow_rate", "tolerance", "lam_rate", "solved_return")

    def __init__(self, lam_init: float = 0.5, lam_min: float = 0.0, lam_max: float = 1.0, rate: float = 0.1,
                 slow_rate: float = 0.01, tolerance: float = 0.5, lam_rate: float = 1e-3,
                 solved_return: float | None = None):
        lam_min, lam_max = _check_unit("lam_min", lam_min), _check_unit("lam_max", lam_max)
        if lam_min > lam_max:
            raise ValueError(f"lam_min ({lam_min}) must not exceed lam_max ({lam_max})")
        lam_init = _check_unit("lam_init", lam_init)
        if not lam_min <= lam_init <= lam_max:
            raise ValueError(f"lam_init ({lam_init}) must lie in [lam_min, lam_max] = [{lam_min}, {lam_max}]")
        if not 0.0 < slow_rate <= rate <= 1.0 or tolerance < 0 or not 0.0 < lam_rate <= 1.0:
            raise ValueError(f"need 0 < slow_rate <= rate <= 1, tolerance >= 0, 0 < lam_rate <= 1; got rate={rate}, "
                             f"slow_rate={slow_rate}, tolerance={tolerance}, lam_rate={lam_rate}")
        if solved_return is not None and not math.isfinite(float(solved_return)):
            raise ValueError(f"solved_return must be a finite number or None, got {solved_return}")
        self.lam_min, self.lam_max, self.rate, self.slow_rate = lam_min, lam_max, rate, slow_rate
        self.tolerance, self.lam_rate = tolerance, lam_rate
        self.solved_return = None if solved_return is None else float(solved_return)
        self.fast: float | None = None
        self.slow: float | None = None
        self.dev = 0.0
        self.target = lam_min
        super().__init__(lam_init)

    def _observe(self, ret: float) -> None:
        if self.fast is None:
            self.fast = self.slow = ret
        else:
            self.fast += self.rate * (ret - self.fast)
            self.slow += self.slow_rate * (ret - self.slow)
            self.dev += self.slow_rate * (abs(ret - self.slow) - self.dev)
        improving = self.fast - self.slow > self.tolerance * self.dev and self.dev > 0
        solved = self.solved_return is not None and self.fast >= self.solved_return
        self.target = self.lam_max if improving or solved else self.lam_min

    def step(self, episode_returns: Iterable[float] = ()) -> float:
        self.updates += 1
        for ret in episode_returns:
            if math.isfinite(float(ret)):
                self._observe(float(ret))
        self._value = min(max(self._value + self.lam_rate * (self.target - self._value), self.lam_min), self.lam_max)
        return self._value

    def state_dict(self) -> dict:
        return {**super().state_dict(), "fast": self.fast, "slow": self.slow, "dev": self.dev, "target": self.target}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.fast, self.slow, self.dev = state["fast"], state["slow"], float(state["dev"])
        self.target = float(state["target"])


_SCHEDULERS = {"constant": ConstantWeight, "exponential": ExponentialDecayWeight,
               "return_average": ReturnMovingAverageWeight}
SCHEDULER_NAMES = tuple(_SCHEDULERS)  # the values of ``xp.scheduler.name``


def make_scheduler(name: str, **kwargs) -> RewardWeightScheduler:
    """A scheduler by config name: ``constant``, ``exponential`` or ``return_average``.

    Examples:
        >>> make_scheduler("exponential", lam_start=0.5, lam_end=1.0, decay_steps=100).value
        0.5
    """
    if name not in _SCHEDULERS:
        raise ValueError(f"unknown λ scheduler {name!r}; choose one of {sorted(_SCHEDULERS)}")
    return _SCHEDULERS[name](**kwargs)


def scheduler_from_config(scheduler_cfg) -> RewardWeightScheduler:
    """The scheduler ``xp.scheduler`` names, with the settings under its own name (``configs/xp/intrinsic.yaml``).

    Examples:
        >>> scheduler_from_config({"name": "constant", "constant": {"lam": 0.25}}).value
        0.25
    """
    name = scheduler_cfg["name"]
    return make_scheduler(name, **scheduler_cfg.get(name, {}))

