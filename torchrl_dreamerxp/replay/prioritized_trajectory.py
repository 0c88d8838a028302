"""DreamerV3-XP prioritized trajectory replay: slices drawn from trajectories chosen by a pluggable score."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl._torchrl import MinSegmentTreeFp64, SumSegmentTreeFp64
from torchrl.data.replay_buffers.samplers import PrioritizedSampler, Sampler
from torchrl.data.replay_buffers.storages import Storage

from .trajectory_index import TrajectoryIndex
from .trajectory_scores import TrajectoryScore, make_score

__all__ = ["PrioritizedTrajectorySampler"]

_QUANTITIES = ("recon_error", "value_error")


def _leaves(tree, ids: torch.Tensor) -> torch.Tensor:
    """A segment tree's leaves at ``ids`` as a tensor (the tree gives a bare float for a single id)."""
    return torch.as_tensor(tree[ids], dtype=torch.double).reshape(-1)


# A PrioritizedSampler subclass only so that TorchRL's buffers forward priorities to it
# (``TensorDictReplayBuffer.update_tensordict_priority`` checks the type); none of its trees are used.
class PrioritizedTrajectorySampler(PrioritizedSampler):
    """Samples slices of ``slice_len`` steps, each from a trajectory drawn by its score.

    **Trajectories** are indexed when steps are written (:class:`~torchrl_dreamerxp.replay.TrajectoryIndex`:
    the writer's indices, read once; overwritten steps leave their trajectory, which retires with its last
    step). Per trajectory it keeps the task return ``R`` (sum of its finite rewards: the episode's return,
    also after its oldest steps were overwritten), running averages
    (rate ``error_rate``, the first value sets it) of the reconstruction error ε and critic error δ of the
    updates that trained on its steps, and how many slices were drawn from it.

    **Probabilities.** ``P(i) = (1 − u)·s_i^α / Σ_j s_j^α + u / N`` over the N live trajectories, with
    ``u = uniform_fraction`` (all uniform while every score is 0) and ``s`` the ``score``: ``"xp"``
    (default, :class:`~torchrl_dreamerxp.replay.XPScore`: ``(λ_r + λ_δ·δ̂)·R̂ + λ_ε·ε̂`` on standardized,
    squashed R, ε, δ; a trajectory with no ε nor δ yet enters at the current maximum), ``"curious"``
    (:class:`~torchrl_dreamerxp.replay.CuriousScore`), ``"uniform"``, or a callable over the per-trajectory
    statistics. ``s^α`` sits in sum trees over trajectory ids: drawing and priority updates are O(log n);
    every ``refresh_every`` samples the score's normalization is recomputed over all live trajectories
    (one vectorized pass). Non-finite values never enter: NaN errors are "not measured", infinite ones are
    counted in ``nonfinite_errors``, non-finite rewards in ``nonfinite_rewards``.

    **Slices** start at a uniform stored step of the drawn trajectory and run on through the following
    steps of its stream (a short trajectory's slice continues into the next episode of the same env, whose
    ``init_key`` resets a recurrent model), moved back where they would pass the stream's newest step.
    With ``importance_beta`` each step gets ``"priority_weight" = (P_min / P(i))^β`` of its slice's
    trajectory (the slice is the unit drawn), as TorchRL's prioritized samplers write it.

    **Priorities the TorchRL way.** ``rb.update_priority(index, tensor)`` feeds the tensor as the per-step
    quantity ``tensor_priority`` (δ by default: what TorchRL losses write as ``"td_error"``);
    ``rb.update_tensordict_priority(td)`` reads the buffer's ``priority_key`` (``"td_error"``) the same way;
    :meth:`update_priority` with a TensorDict or mapping carries ``"recon_error"`` and/or ``"value_error"``
    by name in one call. NaN entries (steps without an error) are skipped.

    **Layouts.** A 1-D storage written in time order (one env), a ``LaneWriter``'s lanes (``lanes``), or a
    2-D storage ``LazyTensorStorage(n, ndim=2)`` extended with ``[N, T]`` batches from ``SerialEnv``,
    ``ParallelEnv`` or a multi-env collector (one stream per env, never merged). A storage whose items hold
    several steps, or (with ``traj_key``) flattened envs whose trajectories interleave, raise an error.

    Args:
        slice_len: steps per slice (``T + context``).
        score: ``"xp"``, ``"curious"``, ``"uniform"``, a :class:`~torchrl_dreamerxp.replay.TrajectoryScore`
            or a callable ``fn(stats) -> scores``.
        score_kwargs: settings of a named score (e.g. ``lambda_r``, ``lambda_delta``, ``lambda_eps`` for ``xp``).
        uniform_fraction: probability mass spread uniformly over live trajectories (0.1).
        alpha: exponent of the score (1.0).
        error_rate: rate of the running averages of ε and δ (0.1).
        importance_beta: exponent of the importance weights, ``None`` to write none.
        reward_key: stored reward summed into R (TorchRL's ``("next", "reward")``).
        init_key: stored flag of a trajectory's first step (``"is_init"``, from ``InitTracker``; may be absent).
        done_key: stored flag of a trajectory's last step (``("next", "done")``; may be absent).
        traj_key: stored trajectory id (``("collector", "traj_ids")``, what TorchRL collectors write; may be
            absent). Where present, a change of id starts a trajectory, and steps of one trajectory written after
            another's (envs flattened into one stream) raise an error instead of merging silently.
        tensor_priority: the quantity a plain tensor priority is: ``"value_error"`` or ``"recon_error"``.
        lanes: lanes of a ``LaneWriter`` writing a 1-D storage.
        refresh_every: samples between two recomputations of the score's normalization.
        **score_settings: shorthand for ``score_kwargs``.

    Examples:
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> sampler = PrioritizedTrajectorySampler(slice_len=4, reward_key="reward", init_key="is_first", done_key=None)
        >>> rb = TensorDictReplayBuffer(storage=LazyTensorStorage(100), sampler=sampler, batch_size=8)
        >>> is_first = torch.tensor([True, False, False, True, False, False, False, False])
        >>> _ = rb.extend(TensorDict({"is_first": is_first, "reward": torch.ones(8)}, [8]))
        >>> sampler.num_trajectories, sampler.trajectory_stats()["return"].tolist()
        (2, [3.0, 5.0])
        >>> batch = rb.sample()
        >>> batch["td_error"] = torch.ones(8)
        >>> rb.update_tensordict_priority(batch)  # δ of the sampled steps, TorchRL's way
        >>> sampler.update_priority(batch["index"], TensorDict(recon_error=torch.ones(8), batch_size=[8]))
    """

    def __init__(self, slice_len: int, *, score: str | TrajectoryScore | Callable = "xp",
                 score_kwargs: Mapping | None = None, uniform_fraction: float = 0.1, alpha: float = 1.0,
                 error_rate: float = 0.1, importance_beta: float | None = None,
                 reward_key: NestedKey = ("next", "reward"), init_key: NestedKey | None = "is_init",
                 done_key: NestedKey | None = ("next", "done"),
                 traj_key: NestedKey | None = ("collector", "traj_ids"),
                 tensor_priority: str = "value_error", lanes: int = 1, refresh_every: int = 100, **score_settings):
        Sampler.__init__(self)
        if int(slice_len) < 1:
            raise ValueError(f"slice_len must be >= 1, got {slice_len}")
        if not 0.0 <= uniform_fraction <= 1.0:
            raise ValueError(f"uniform_fraction must be in [0, 1], got {uniform_fraction}")
        if alpha <= 0 or not 0 < error_rate <= 1:
            raise ValueError(f"alpha must be > 0 and error_rate in (0, 1], got {alpha}, {error_rate}")
        if importance_beta is not None and importance_beta < 0:
            raise ValueError(f"importance_beta must be >= 0 or None, got {importance_beta}")
        if tensor_priority not in _QUANTITIES:
            raise ValueError(f"tensor_priority must be one of {_QUANTITIES}, got {tensor_priority!r}")
        if int(refresh_every) < 1:
            raise ValueError(f"refresh_every must be >= 1, got {refresh_every}")
        self.slice_len, self.uniform_fraction, self.error_rate = int(slice_len), uniform_fraction, error_rate
        self._alpha, self._beta, self._eps = alpha, importance_beta, 0.0  # PrioritizedSampler's names
        self.importance_beta, self.tensor_priority, self.refresh_every = importance_beta, tensor_priority, int(refresh_every)
        self.reduction = "max"  # how TorchRL reduces a priority with extra dims before handing it over
        self.score = make_score(score, **{**dict(score_kwargs or {}), **score_settings})
        self._keys = dict(reward_key=reward_key, init_key=init_key, done_key=done_key, traj_key=traj_key, lanes=lanes)
        self._empty()

    @property
    def default_priority(self) -> float:
        return math.nan  # TorchRL hands this over for data without a priority: "not measured"

    @property
    def alpha(self) -> float:
        return self._alpha

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(slice_len={self.slice_len}, score={type(self.score).__name__}, "
                f"trajectories={self.num_trajectories})")

    # -- state ------------------------------------------------------------------------------------
    def _empty(self) -> None:
        self.index = TrajectoryIndex(**self._keys)
        self._trees: tuple | None = None
        self.nonfinite_errors, self.samples, self.births = 0, 0, 0
        self.max_mass: float | None = None  # the largest measured score^α (fresh trajectories enter there)
        self._unannounced = 0  # steps marked by the writer and not yet announced by extend
        self.last_sampled = torch.empty(0, dtype=torch.long)

    def _allocate(self, capacity: int) -> None:
        self.recon = torch.full((capacity,), math.nan, dtype=torch.double)
        self.value_err = torch.full((capacity,), math.nan, dtype=torch.double)
        self.count = torch.zeros(capacity, dtype=torch.long)
        self.born = torch.zeros(capacity, dtype=torch.long)
        self._build_trees()

    def _build_trees(self) -> None:
        capacity = self.index.capacity
        self._trees = (SumSegmentTreeFp64(capacity), SumSegmentTreeFp64(capacity), MinSegmentTreeFp64(capacity))

    @property
    def num_trajectories(self) -> int:
        """Live trajectories (from the sum tree of live ids: O(log n), not a scan)."""
        return 0 if self._trees is None else int(round(self._trees[1].query(0, self.index.capacity)))

    @property
    def nonfinite_rewards(self) -> int:
        return self.index.nonfinite_rewards

    def trajectory_stats(self, ids: torch.Tensor | None = None) -> TensorDict:
        """Per-trajectory statistics (what scores read), of ``ids`` or of every live trajectory in id order."""
        if ids is None:
            ids = self.index.alive().nonzero().squeeze(1)
        return TensorDict({"return": self.index.ret[ids], "stored_return": self.index.stored_ret[ids], "recon_error": self.recon[ids],
                           "value_error": self.value_err[ids], "length": self.index.length[ids],
                           "count": self.count[ids], "id": ids}, [ids.numel()])

    # -- writes (TorchRL calls mark_update from the writer, right after the rows are stored) ------------
    def mark_update(self, index, *, storage: Storage | None = None) -> None:
        if storage is None:
            return
        index = torch.as_tensor(index).long()
        if index.ndim == 0:
            index = index.reshape(1)
        first = self.index.layout is None
        changes = self.index.write(storage, index)
        if first:
            self._allocate(self.index.capacity)
        new = changes["new"]
        self.recon[new], self.value_err[new], self.count[new] = math.nan, math.nan, 0
        self.born[new] = self.births + torch.arange(new.numel())
        self.births += new.numel()
        self._write_leaves(changes["changed"])
        self._clear_leaves(changes["retired"])
        self._unannounced += index.shape[0]

    def extend(self, index: torch.Tensor) -> None:
        index = torch.as_tensor(index)
        self._announce(index.shape[0] if index.ndim else 1)

    def add(self, index: int) -> None:
        self._announce(1)

    def _announce(self, n: int) -> None:
        if n > self._unannounced:
            raise RuntimeError(
                "PrioritizedTrajectorySampler indexes steps as the writer stores them, and this writer did not say "
                "which rows it wrote (mark_update): use TorchRL's RoundRobinWriter/TensorDictRoundRobinWriter or LaneWriter")
        self._unannounced -= n

    # -- scores in the trees ------------------------------------------------------------------------
    def _write_leaves(self, ids: torch.Tensor) -> None:
        if not ids.numel():
            return
        stats = self.trajectory_stats(ids)
        s = torch.nan_to_num(torch.as_tensor(self.score(stats), dtype=torch.double).reshape(-1), nan=0.0,
                             posinf=0.0).clamp(min=0.0)
        mass = s ** self.alpha
        measured = ~(torch.isnan(stats["recon_error"]) & torch.isnan(stats["value_error"]))
        if measured.any():
            top = float(mass[measured].max())
            self.max_mass = top if self.max_mass is None else max(self.max_mass, top)
        if self.score.fresh_at_max:
            mass = torch.where(measured, mass, torch.full_like(mass, 1.0 if self.max_mass is None else self.max_mass))
        total, alive, low = self._trees
        total[ids] = mass
        alive[ids] = torch.ones_like(mass)
        low[ids] = mass

    def _clear_leaves(self, ids: torch.Tensor) -> None:
        if ids.numel():
            total, alive, low = self._trees
            total[ids], alive[ids] = torch.zeros(ids.numel(), dtype=torch.double), torch.zeros(ids.numel(), dtype=torch.double)
            low[ids] = torch.full((ids.numel(),), math.inf, dtype=torch.double)

    def refresh(self) -> None:
        """Recompute the score's normalization over every live trajectory and rewrite all scores (O(n))."""
        ids = self.index.alive().nonzero().squeeze(1)
        self.score.refresh(self.trajectory_stats(ids))
        self.max_mass = None  # _write_leaves sets it to the largest measured score^α of the live trajectories
        self._write_leaves(ids)

    def probabilities(self) -> torch.Tensor:
        """``P(i)`` of every trajectory id (0 for unused ids; sums to 1)."""
        if not self.num_trajectories:
            raise RuntimeError("no trajectory stored yet")
        total, alive, _ = self._trees
        ids = torch.arange(self.index.capacity)
        mass, live = _leaves(total, ids), _leaves(alive, ids)
        uniform = live / live.sum()
        if mass.sum() <= 0:
            return uniform
        return (1 - self.uniform_fraction) * mass / mass.sum() + self.uniform_fraction * uniform

    # -- sampling -----------------------------------------------------------------------------------
    def _mixture(self) -> tuple[float, float, float]:
        """Σ s^α, the number of live trajectories, and the uniform fraction in force (all of it while Σ s^α = 0)."""
        total, alive, _ = self._trees
        n = self.index.capacity
        mass_sum = total.query(0, n)
        return mass_sum, alive.query(0, n), self.uniform_fraction if mass_sum > 0 else 1.0

    def _draw(self, num: int) -> torch.Tensor:
        total, alive, _ = self._trees
        n = self.index.capacity
        mass_sum, live_sum, u = self._mixture()
        from_uniform = torch.rand(num) < u
        target = torch.rand(num, dtype=torch.double) * (1 - 1e-12)
        traj = torch.empty(num, dtype=torch.long)
        if from_uniform.any():
            traj[from_uniform] = torch.as_tensor(alive.scan_lower_bound(target[from_uniform] * live_sum)).long()
        if (~from_uniform).any():
            traj[~from_uniform] = torch.as_tensor(total.scan_lower_bound(target[~from_uniform] * mass_sum)).long()
        traj = traj.clamp(max=n - 1)
        dead = _leaves(alive, traj) <= 0  # a draw on a boundary (a random number of exactly 0): redraw uniformly
        while dead.any():
            traj[dead] = torch.as_tensor(alive.scan_lower_bound(torch.rand(int(dead.sum()), dtype=torch.double)
                                                                * live_sum * (1 - 1e-12))).long().clamp(max=n - 1)
            dead = _leaves(alive, traj) <= 0
        return traj

    def sample(self, storage: Storage, batch_size: int) -> tuple[Any, dict]:
        if batch_size % self.slice_len:
            raise ValueError(f"batch_size {batch_size} is not a multiple of slice_len {self.slice_len}")
        if not self.num_trajectories:
            raise RuntimeError("no trajectory stored yet")
        if self.samples % self.refresh_every == 0:
            self.refresh()
        self.samples += 1
        traj = self._draw(batch_size // self.slice_len)
        slots = self.index.windows(traj, self.slice_len).reshape(-1)
        info: dict[str, Any] = {}
        if self.importance_beta is not None:
            info["priority_weight"] = self._weights(traj).repeat_interleave(self.slice_len)
        self.count.index_add_(0, traj, torch.ones_like(traj))
        self._write_leaves(traj.unique())
        self.last_sampled = traj
        return self.index.storage_index(slots), info

    def _weights(self, traj: torch.Tensor) -> torch.Tensor:
        total, _, low = self._trees
        n = self.index.capacity
        mass_sum, live, u = self._mixture()
        p = lambda mass: (1 - u) * mass / max(mass_sum, 1e-300) + u / live  # noqa: E731
        lowest = low.query(0, n)
        if lowest <= 0 and u == 0:  # trajectories of mass 0 are never drawn: the least drawable one sets the scale
            ids = self.index.alive().nonzero().squeeze(1)
            masses = _leaves(total, ids)
            lowest = float(masses[masses > 0].min())
        p_min = p(torch.tensor(lowest, dtype=torch.double))
        return (p_min / p(_leaves(total, traj))).pow(self.importance_beta).float()

    # -- priorities ---------------------------------------------------------------------------------
    def _quantities(self, priority: Any) -> dict[str, torch.Tensor]:
        if isinstance(priority, (TensorDictBase, Mapping)):
            found = {key: priority[key] for key in _QUANTITIES if key in priority.keys()}
            if not found:
                raise ValueError(f"the priority carries none of {_QUANTITIES}: got keys {list(priority.keys())}")
            return found
        return {self.tensor_priority: torch.as_tensor(priority)}

    def update_priority(self, index, priority: Any, *, storage: Storage | None = None) -> None:
        """Fold the per-step errors of the steps at ``index`` into their trajectories' running averages.

        ``priority`` is a tensor (the ``tensor_priority`` quantity) or a TensorDict/mapping with
        ``"recon_error"`` and/or ``"value_error"``, one value per step of ``index`` (NaN: no value).
        """
        if self.index.layout is None:
            raise RuntimeError("update_priority before any step was stored")
        slots = self.index.slots(index)
        traj = self.index.slot_traj[slots]
        touched = []
        for key, values in self._quantities(priority).items():
            err = torch.as_tensor(values).detach().reshape(-1).double().cpu()
            if err.numel() == 1 and slots.numel() > 1:
                err = err.expand(slots.numel())
            if err.numel() != slots.numel():
                raise ValueError(f"{key} has {err.numel()} values for {slots.numel()} indexed steps")
            infinite = torch.isinf(err)
            if infinite.any():
                self.nonfinite_errors += int(infinite.sum())
                warnings.warn(f"PrioritizedTrajectorySampler ignored {int(infinite.sum())} infinite {key} values",
                              stacklevel=2)
            ok = torch.isfinite(err) & (traj >= 0)
            if not ok.any():
                continue
            ids, inverse = traj[ok].unique(return_inverse=True)
            mean = torch.zeros(ids.numel(), dtype=torch.double).index_add_(0, inverse, err[ok])
            mean /= torch.bincount(inverse, minlength=ids.numel())
            store = self.recon if key == "recon_error" else self.value_err
            current = store[ids]
            store[ids] = torch.where(torch.isnan(current), mean, current + self.error_rate * (mean - current))
            touched.append(ids)
        if touched:
            self._write_leaves(torch.cat(touched).unique())

    def update_tensordict_priority(self, data: TensorDictBase) -> None:
        """The errors a TensorDict carries by name (``"recon_error"``, ``"value_error"``) at its ``"index"``."""
        self.update_priority(data["index"], data.select(*[k for k in _QUANTITIES if k in data.keys()]).reshape(-1))

    # -- logging --------------------------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """Logged by the recipe: score quantiles, share of draws from the newest 10%, ESS, counts."""
        if not self.num_trajectories:
            return {}
        ids = self.index.alive().nonzero().squeeze(1)
        total = self._trees[0]
        mass = _leaves(total, ids)
        q = torch.quantile(mass, torch.tensor([0.05, 0.5, 0.95], dtype=torch.double))
        p = self.probabilities()[ids]
        born = self.born[ids]
        newest = ids[born >= torch.quantile(born.double(), 0.9)]
        return {
            "replay/score_p5": float(q[0]), "replay/score_p50": float(q[1]), "replay/score_p95": float(q[2]),
            "replay/sampled_newest_10pct": float(torch.isin(self.last_sampled, newest).float().mean())
            if self.last_sampled.numel() else 0.0,
            "replay/effective_sample_size": float(1.0 / (p**2).sum()),
            "replay/trajectories": float(ids.numel()),
            "replay/nonfinite_errors": float(self.nonfinite_errors),
            "replay/nonfinite_rewards": float(self.nonfinite_rewards),
        }

    # -- persistence -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"index": self.index.state_dict(), "score": self.score.state_dict(),
                                 "nonfinite_errors": self.nonfinite_errors, "samples": self.samples,
                                 "births": self.births, "max_mass": self.max_mass, "unannounced": self._unannounced,
                                 "last_sampled": self.last_sampled.clone()}
        if self.index.layout is not None:
            ids = self.index.alive().nonzero().squeeze(1)
            state.update(recon=self.recon.clone(), value_err=self.value_err.clone(), count=self.count.clone(),
                         born=self.born.clone(), leaf_ids=ids, leaf_mass=_leaves(self._trees[0], ids))
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._empty()
        self.index.load_state_dict(state_dict["index"])
        self.score.load_state_dict(state_dict["score"])
        self.nonfinite_errors, self.samples = int(state_dict["nonfinite_errors"]), int(state_dict["samples"])
        self.births, self.max_mass = int(state_dict["births"]), state_dict["max_mass"]
        self._unannounced, self.last_sampled = int(state_dict["unannounced"]), state_dict["last_sampled"].clone()
        if self.index.layout is not None:
            for key in ("recon", "value_err", "count", "born"):
                setattr(self, key, state_dict[key].clone())
            self._build_trees()  # the saved leaves exactly (a fresh one keeps the maximum of when it came)
            ids, mass = state_dict["leaf_ids"], state_dict["leaf_mass"].double()
            if ids.numel():
                total, alive, low = self._trees
                total[ids], alive[ids], low[ids] = mass, torch.ones_like(mass), mass

    def dumps(self, path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), Path(path) / "sampler.pt")

    def loads(self, path) -> None:
        self.load_state_dict(torch.load(Path(path) / "sampler.pt", weights_only=True))
