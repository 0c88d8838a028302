"""Trajectory scores of the prioritized sampler: XP (default), Curious Replay, uniform, or your own callable."""
from __future__ import annotations

from typing import Callable

import torch
from tensordict import TensorDict

from ..functional import trajectory_priority

__all__ = ["TrajectoryScore", "XPScore", "CuriousScore", "UniformScore", "CallableScore", "SCORE_NAMES", "make_score"]


class TrajectoryScore:
    """A score ``s ≥ 0`` per trajectory from its statistics; the sampler draws trajectories by ``s^α``.

    ``stats`` is a TensorDict ``[n]`` with ``"return"`` (R, the task return: sum of the trajectory's
    rewards), ``"stored_return"`` (the same over its steps still stored), ``"recon_error"``
    (ε) and ``"value_error"`` (δ) (running averages, NaN while not measured), ``"length"`` (stored steps)
    and ``"count"`` (slices sampled from it). :meth:`refresh` sees every live trajectory and may keep
    global statistics (a normalization); ``__call__`` then scores any subset with them, so a priority
    update costs O(log n). ``fresh_at_max``: a trajectory with no ε nor δ yet enters at the current
    maximum score.

    Examples:
        >>> class LongestFirst(TrajectoryScore):
        ...     def __call__(self, stats):
        ...         return stats["length"].double()
        >>> LongestFirst()(TensorDict({"length": torch.tensor([2, 7])}, [2])).tolist()
        [2.0, 7.0]
    """

    fresh_at_max = False

    def refresh(self, stats: TensorDict) -> None:
        """Recompute global statistics from all live trajectories (called every ``refresh_every`` samples)."""

    def __call__(self, stats: TensorDict) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _squash(x: torch.Tensor, mean: float, scale: float) -> torch.Tensor:
    """``sigmoid((x − mean) / scale)``, 0.5 where ``x`` is NaN (not measured)."""
    z = torch.sigmoid((x - mean) / scale)
    return torch.where(torch.isnan(x), torch.full_like(z, 0.5), z)


class XPScore(TrajectoryScore):
    """The DreamerV3-XP score ``s = (λ_r + λ_δ·δ̂)·R̂ + λ_ε·ε̂`` (:func:`~torchrl_dreamerxp.functional.trajectory_priority`).

    R, ε and δ live on different scales, so each is standardized over the live trajectories that have it
    and squashed into (0, 1)::

        x̂ = sigmoid((x − mean) / max(std, rel_floor·|mean|, 1e-8))      (0.5 where not measured)

    The average trajectory gets 0.5, one standard deviation above it 0.73. The floor keeps differences
    far below the quantity's own size from mattering: returns 5 and 5.05 score nearly alike (with
    min-max normalization they would be 0 and 1). Scores lie in (0, λ_r + λ_δ + λ_ε), never negative or NaN.

    Examples:
        >>> score = XPScore()
        >>> stats = TensorDict({"return": torch.tensor([5.0, 5.05]), "recon_error": torch.full((2,), float("nan")),
        ...                     "value_error": torch.full((2,), float("nan"))}, [2])
        >>> score.refresh(stats)
        >>> [round(x, 3) for x in score(stats).tolist()]  # R̂ = 0.488, 0.512; ε̂ = δ̂ = 0.5: s = 0.3·R̂ + 0.25
        [0.396, 0.404]
    """

    fresh_at_max = True
    KEYS = ("return", "recon_error", "value_error")

    def __init__(self, lambda_r: float = 0.1, lambda_delta: float = 0.4, lambda_eps: float = 0.5,
                 rel_floor: float = 0.1):
        if min(lambda_r, lambda_delta, lambda_eps) < 0:
            raise ValueError("the score weights lambda_r, lambda_delta, lambda_eps must be >= 0")
        if rel_floor < 0:
            raise ValueError(f"rel_floor must be >= 0, got {rel_floor}")
        self.lambda_r, self.lambda_delta, self.lambda_eps, self.rel_floor = lambda_r, lambda_delta, lambda_eps, rel_floor
        self.norm = {key: (0.0, 1.0) for key in self.KEYS}

    def refresh(self, stats: TensorDict) -> None:
        for key in self.KEYS:
            x = stats[key].double()
            x = x[~torch.isnan(x)]
            if x.numel():
                mean, std = float(x.mean()), float(x.std(unbiased=False))
                self.norm[key] = (mean, max(std, self.rel_floor * abs(mean), 1e-8))

    def __call__(self, stats: TensorDict) -> torch.Tensor:
        r, eps, delta = (_squash(stats[key].double(), *self.norm[key]) for key in self.KEYS)
        return trajectory_priority(r, eps, delta, self.lambda_r, self.lambda_delta, self.lambda_eps)

    def state_dict(self) -> dict:
        return {key: list(value) for key, value in self.norm.items()}

    def load_state_dict(self, state: dict) -> None:
        self.norm = {key: (float(state[key][0]), float(state[key][1])) for key in self.KEYS}


class CuriousScore(TrajectoryScore):
    """Curious Replay (Kauvar et al., ICML 2023): ``s = c·β^count + (ε + eps)^α_loss``, per trajectory.

    ``count`` is the number of slices sampled from the trajectory (new ones are drawn until seen) and ε its
    model (reconstruction) error, 0 while not measured. The paper's per-step defaults: c = 1e4, β = 0.7,
    α_loss = 0.7, eps = 0.01. Purely local: no normalization.

    Examples:
        >>> stats = TensorDict({"count": torch.tensor([0, 2]), "recon_error": torch.tensor([float("nan"), 3.0])}, [2])
        >>> CuriousScore(c=1.0, beta=0.5, alpha=1.0, eps=1.0)(stats).tolist()  # 1·0.5⁰ + (0 + 1), 1·0.5² + (3 + 1)
        [2.0, 4.25]
    """

    def __init__(self, c: float = 1e4, beta: float = 0.7, alpha: float = 0.7, eps: float = 0.01):
        if c < 0 or not 0 < beta <= 1 or alpha <= 0 or eps < 0:
            raise ValueError(f"need c >= 0, 0 < beta <= 1, alpha > 0, eps >= 0; got {c}, {beta}, {alpha}, {eps}")
        self.c, self.beta, self.alpha, self.eps = c, beta, alpha, eps

    def __call__(self, stats: TensorDict) -> torch.Tensor:
        loss = torch.nan_to_num(stats["recon_error"].double(), nan=0.0).clamp(min=0)
        return self.c * self.beta ** stats["count"].double() + (loss + self.eps) ** self.alpha


class UniformScore(TrajectoryScore):
    """Every trajectory alike: trajectories (not steps) drawn uniformly.

    Examples:
        >>> UniformScore()(TensorDict({"return": torch.zeros(3)}, [3])).tolist()
        [1.0, 1.0, 1.0]
    """

    def __call__(self, stats: TensorDict) -> torch.Tensor:
        return torch.ones(stats.shape, dtype=torch.double)


class CallableScore(TrajectoryScore):
    """A user function ``fn(stats) -> scores`` (see :class:`TrajectoryScore` for ``stats``).

    It sees only the trajectories whose scores are being written; a score that needs statistics over
    all trajectories should subclass :class:`TrajectoryScore` and implement :meth:`~TrajectoryScore.refresh`.

    Examples:
        >>> score = CallableScore(lambda stats: stats["length"].double())
        >>> score(TensorDict({"length": torch.tensor([3, 5])}, [2])).tolist()
        [3.0, 5.0]
    """

    def __init__(self, fn: Callable[[TensorDict], torch.Tensor]):
        self.fn = fn

    def __call__(self, stats: TensorDict) -> torch.Tensor:
        return torch.as_tensor(self.fn(stats), dtype=torch.double)


_SCORES = {"xp": XPScore, "curious": CuriousScore, "uniform": UniformScore}
SCORE_NAMES = tuple(_SCORES)  # the values of ``xp.replay.score``


def make_score(score: str | TrajectoryScore | Callable, **kwargs) -> TrajectoryScore:
    """A score by name (``xp``, ``curious``, ``uniform``) with its settings, an instance, or a callable.

    Examples:
        >>> type(make_score("curious", c=10.0)).__name__, make_score("xp").lambda_eps
        ('CuriousScore', 0.5)
    """
    if not isinstance(score, str):
        if kwargs:
            raise ValueError(f"score settings {sorted(kwargs)} go with a score name, not with {score!r}")
        return score if isinstance(score, TrajectoryScore) else CallableScore(score)
    if score not in _SCORES:
        raise ValueError(f"unknown trajectory score {score!r}; choose one of {list(_SCORES)} or pass a callable")
    return _SCORES[score](**kwargs)
