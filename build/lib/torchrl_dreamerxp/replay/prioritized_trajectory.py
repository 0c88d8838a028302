"""DreamerV3-XP prioritized trajectory replay: trajectories sampled by return, model and critic error."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torchrl.data.replay_buffers.samplers import Sampler
from torchrl.data.replay_buffers.storages import Storage

from ..functional import trajectory_priority

__all__ = ["PrioritizedTrajectorySampler"]


class PrioritizedTrajectorySampler(Sampler):
    """Samples slices of ``slice_len`` steps, each from a trajectory chosen by its XP score.

    **Trajectories** are read from the stored steps: a step with ``is_first`` starts one (or, with
    ``traj_key``, a change of trajectory id does). The one still being written is a trajectory too;
    when a circular storage wraps, overwritten steps leave their trajectory (which dies with its last step).

    **Per trajectory** it keeps ``R`` (sum of the stored extrinsic ``reward``), and exponential moving
    averages (rate ``error_rate``) of the per-step reconstruction error ``ε`` and critic error ``δ`` of
    the updates that used its steps, fed by :meth:`update_priority` with the sampled indices.

    **Score and probabilities.** Over the live trajectories that have been measured, each of R, ε, δ
    is min-max normalized to [0, 1] (a constant quantity becomes 0), then

        s_i = (λ_r + λ_δ·δ̂_i)·R̂_i + λ_ε·ε̂_i        (functional.trajectory_priority; ≥ 0 by construction)
        P(i) = (1 − u)·s_i^α / Σ_j s_j^α + u / N       (uniform if all scores are 0)

    with ``u = uniform_fraction`` so nothing starves. A trajectory not measured yet (new) scores the
    current maximum. Non-finite errors (a diverging loss) are ignored and counted in
    ``nonfinite_errors``, never stored. Probabilities are thus never negative or NaN.

    **Slices** start at a uniform step of the chosen trajectory and may run past its end into the
    steps stored after it (short trajectories are kept, ``is_first`` resets the RSSM), shifted back
    where they would pass the newest stored step. With ``importance_beta`` set, each step gets
    ``"priority_weight" = (N·P(i))^(−β) / max_j (N·P(j))^(−β)``, as TorchRL's prioritized samplers.

    Sampling costs O(#trajectories) vectorized work plus O(#new steps) to index what was written
    since the last call; nothing scales with the number of stored steps in Python.

    Args:
        slice_len: steps per slice (``T + context``).
        lambda_r: score weight of the return (0.1).
        lambda_delta: score weight of the critic error (0.4).
        lambda_eps: score weight of the reconstruction error (0.5).
        uniform_fraction: probability mass spread uniformly (0.1).
        alpha: exponent of the score (1.0).
        error_rate: EMA rate of ε and δ per trajectory (0.1; the first measurement initialises it).
        importance_beta: exponent of the importance weights, ``None`` to write none.
        reward_key: stored key summed into R.
        is_first_key: stored key that marks trajectory starts.
        traj_key: optional trajectory-id key used instead of ``is_first``.

    Examples:
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> from tensordict import TensorDict
        >>> sampler = PrioritizedTrajectorySampler(slice_len=4)
        >>> rb = TensorDictReplayBuffer(storage=LazyTensorStorage(100), sampler=sampler, batch_size=8)
        >>> is_first = torch.tensor([True, False, False, True, False, False, False, False])
        >>> _ = rb.extend(TensorDict({"is_first": is_first, "reward": torch.ones(8)}, [8]))
        >>> batch, info = rb.sample(return_info=True)
        >>> batch.shape, sampler.num_trajectories
        (torch.Size([8]), 2)
        >>> sampler.update_priority(info["index"], {"recon_error": torch.ones(8), "value_error": torch.ones(8)})
    """

    def __init__(self, slice_len: int, *, lambda_r: float = 0.1, lambda_delta: float = 0.4, lambda_eps: float = 0.5,
                 uniform_fraction: float = 0.1, alpha: float = 1.0, error_rate: float = 0.1,
                 importance_beta: float | None = None, reward_key: str = "reward", is_first_key: str = "is_first",
                 traj_key: str | None = None):
        super().__init__()
        if not 0.0 <= uniform_fraction <= 1.0:
            raise ValueError(f"uniform_fraction must be in [0, 1], got {uniform_fraction}")
        if alpha <= 0 or not 0 < error_rate <= 1:
            raise ValueError(f"alpha must be > 0 and error_rate in (0, 1], got {alpha}, {error_rate}")
        if min(lambda_r, lambda_delta, lambda_eps) < 0:
            raise ValueError("the score weights lambda_r, lambda_delta, lambda_eps must be >= 0")
        self.slice_len = slice_len
        self.lambda_r, self.lambda_delta, self.lambda_eps = lambda_r, lambda_delta, lambda_eps
        self.uniform_fraction, self.alpha, self.error_rate = uniform_fraction, alpha, error_rate
        self.importance_beta = importance_beta
        self.reward_key, self.is_first_key, self.traj_key = reward_key, is_first_key, traj_key
        self._empty()

    # -- bookkeeping ----------------------------------------------------------------------------
    def _empty(self):
        self._pending: list[torch.Tensor] = []
        self._cursor = 0  # next write position
        self._size = 0  # stored steps
        self.step_traj = torch.empty(0, dtype=torch.long)  # storage index -> trajectory id (-1: empty)
        # per trajectory (grown on demand)
        self.start = torch.empty(0, dtype=torch.long)  # storage index of its oldest stored step
        self.length = torch.empty(0, dtype=torch.long)
        self.ret = torch.empty(0)
        self.recon = torch.empty(0)
        self.value_err = torch.empty(0)
        self.measured = torch.empty(0, dtype=torch.bool)
        self.last_ext_id = None  # id in traj_key of the trajectory being written
        self.nonfinite_errors = 0
        self.sampled_newest = 0.0

    @property
    def num_trajectories(self) -> int:
        return int((self.length > 0).sum())

    def extend(self, index: torch.Tensor) -> None:
        index = torch.as_tensor(index).reshape(-1)
        if index.numel():
            self._pending.append(index.clone())

    def add(self, index: int) -> None:
        self.extend(torch.tensor([index]))

    def _grow(self, n_new: int) -> None:
        n = self.start.numel() + n_new
        pad = lambda x, v: torch.cat([x, torch.full((n - x.numel(),), v, dtype=x.dtype)])  # noqa: E731
        self.start, self.length = pad(self.start, 0), pad(self.length, 0)
        self.ret, self.recon, self.value_err = pad(self.ret, 0.0), pad(self.recon, 0.0), pad(self.value_err, 0.0)
        self.measured = pad(self.measured, False)

    def _ingest(self, storage: Storage) -> None:
        """Index the steps written since the last call (vectorized over them)."""
        # one write at a time: a later write may overwrite steps of an earlier one
        pending, self._pending = self._pending, []
        for index in pending:
            self._ingest_write(storage, index)

    def _ingest_write(self, storage: Storage, index: torch.Tensor) -> None:
        capacity = storage.max_size
        if self.step_traj.numel() != capacity:
            self.step_traj = torch.full((capacity,), -1, dtype=torch.long)
        keys = [self.reward_key, self.traj_key or self.is_first_key]
        data = storage.get(index).select(*keys)
        reward = data.get(self.reward_key).reshape(-1).float()
        if self.traj_key is not None:
            ext = data.get(self.traj_key).reshape(-1)
            prev = torch.cat([torch.tensor([-1 if self.last_ext_id is None else self.last_ext_id]), ext[:-1]])
            starts = ext != prev
            self.last_ext_id = int(ext[-1])
        else:
            starts = data.get(self.is_first_key).reshape(-1).bool()
        if self.start.numel() == 0:
            starts[0] = True  # the very first stored step opens a trajectory whatever it says
        # overwritten steps leave their trajectory; storage is overwritten oldest first, so a partly
        # overwritten trajectory now starts right after its last overwritten step
        old = self.step_traj[index]
        was = old >= 0
        if was.any():
            n, ids = self.length.numel(), old[was]
            self.length -= torch.bincount(ids, minlength=n)
            last = torch.full((n,), -1, dtype=torch.long).scatter_reduce(
                0, ids, torch.arange(index.numel())[was], reduce="amax")
            hit = last >= 0
            self.start[hit] = (index[last[hit]] + 1) % capacity
        first_new = self.start.numel()
        traj = (first_new - 1) + torch.cumsum(starts.long(), 0)  # steps before a start continue the last one
        self._grow(int(starts.sum()))
        n = self.length.numel()
        self.step_traj[index] = traj
        self.length += torch.bincount(traj, minlength=n)
        self.ret.index_add_(0, traj, reward)
        self.start[first_new:] = index[starts]
        self._cursor = (int(index[-1]) + 1) % capacity
        self._size = min(self._size + index.numel(), capacity)

    # -- scores -----------------------------------------------------------------------------------
    @staticmethod
    def _minmax(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not mask.any():
            return torch.zeros_like(x)
        lo, hi = x[mask].min(), x[mask].max()
        return ((x - lo) / (hi - lo)).clamp(0, 1) if hi > lo else torch.zeros_like(x)

    def scores(self) -> torch.Tensor:
        """XP score of every trajectory id (0 for dead ones)."""
        alive = self.length > 0
        known = alive & self.measured
        s = trajectory_priority(self._minmax(self.ret, known), self._minmax(self.recon, known),
                                self._minmax(self.value_err, known), self.lambda_r, self.lambda_delta, self.lambda_eps)
        s = torch.where(known, s, torch.zeros_like(s))
        fresh = alive & ~self.measured
        top = s[known].max() if known.any() else torch.tensor(1.0)
        s = torch.where(fresh, top.clamp(min=0.0), s)
        return s

    def probabilities(self) -> torch.Tensor:
        """Sampling probability of every trajectory id (sums to 1 over the live ones)."""
        alive = self.length > 0
        n = int(alive.sum())
        if n == 0:
            raise RuntimeError("no trajectory stored yet")
        s = self.scores().clamp(min=0.0) ** self.alpha * alive
        total = s.sum()
        uniform = alive.float() / n
        if not torch.isfinite(total) or total <= 0:
            return uniform
        return (1 - self.uniform_fraction) * s / total + self.uniform_fraction * uniform

    # -- sampler API ------------------------------------------------------------------------------
    def sample(self, storage: Storage, batch_size: int) -> tuple[torch.Tensor, dict]:
        if batch_size % self.slice_len:
            raise ValueError(f"batch_size {batch_size} is not a multiple of slice_len {self.slice_len}")
        self._ingest(storage)
        capacity = storage.max_size
        if self._size < self.slice_len:
            raise RuntimeError(f"the storage holds {self._size} steps, fewer than one slice of {self.slice_len}")
        probs = self.probabilities()
        num = batch_size // self.slice_len
        traj = torch.multinomial(probs, num, replacement=True)
        offset = (torch.rand(num) * self.length[traj]).long()
        # positions counted from the oldest stored step, so the window can be kept before the newest
        oldest = self._cursor % capacity if self._size == capacity else 0
        pos = (self.start[traj] + offset - oldest) % capacity
        pos = pos.clamp(max=self._size - self.slice_len)
        starts = (oldest + pos) % capacity
        index = ((starts[:, None] + torch.arange(self.slice_len)) % capacity).reshape(-1)
        alive_ids = (self.length > 0).nonzero().flatten()
        newest = alive_ids[-max(1, len(alive_ids) // 10):]
        self.sampled_newest = float(torch.isin(traj, newest).float().mean())
        info: dict[str, Any] = {}
        if self.importance_beta is not None:
            n = len(alive_ids)
            w = (n * probs[traj]) ** (-self.importance_beta)
            w_max = ((n * probs[alive_ids].min()) ** (-self.importance_beta))
            info["priority_weight"] = (w / w_max).repeat_interleave(self.slice_len)
        return index, info

    def update_priority(self, index: torch.Tensor, priority: Any, *, storage: Storage | None = None) -> None:
        """Fold per-step errors of the sampled ``index`` into their trajectories' running averages.

        ``priority`` is a mapping with ``"recon_error"`` and/or ``"value_error"`` tensors of the same
        number of elements as ``index`` (steps without an error, e.g. a slice's context step, may carry
        NaN through ``index``'s shape: they are skipped but not counted as non-finite).
        """
        index = torch.as_tensor(index).reshape(-1)
        traj = self.step_traj[index] if self.step_traj.numel() else torch.full_like(index, -1)
        touched = torch.zeros(self.start.numel(), dtype=torch.bool)
        for key, store in (("recon_error", "recon"), ("value_error", "value_err")):
            if key not in priority:
                continue
            err = torch.as_tensor(priority[key]).detach().reshape(-1).float().cpu()
            if err.numel() != index.numel():
                raise ValueError(f"{key} has {err.numel()} elements for {index.numel()} indices")
            finite = torch.isfinite(err)
            bad = int((~finite).sum())
            if bad:
                self.nonfinite_errors += bad
                warnings.warn(f"PrioritizedTrajectorySampler ignored {bad} non-finite {key} values", stacklevel=2)
            ok = finite & (traj >= 0)
            if not ok.any():
                continue
            n = self.start.numel()
            sums = torch.zeros(n).index_add_(0, traj[ok], err[ok])
            counts = torch.bincount(traj[ok], minlength=n)
            hit = counts > 0
            mean = sums[hit] / counts[hit]
            current = getattr(self, store)
            first = ~self.measured[hit]
            updated = torch.where(first, mean, current[hit] + self.error_rate * (mean - current[hit]))
            current[hit] = updated
            touched |= hit
        self.measured |= touched

    def stats(self) -> dict[str, float]:
        """Logged by the recipe: score quantiles, share of samples from the newest 10%, ESS."""
        alive = self.length > 0
        if not alive.any():
            return {}
        s = self.scores()[alive]
        q = torch.quantile(s, torch.tensor([0.05, 0.5, 0.95]))
        p = self.probabilities()[alive]
        return {
            "replay/score_p5": float(q[0]), "replay/score_p50": float(q[1]), "replay/score_p95": float(q[2]),
            "replay/sampled_newest_10pct": self.sampled_newest,
            "replay/effective_sample_size": float(1.0 / (p**2).sum()),
            "replay/trajectories": float(alive.sum()),
            "replay/nonfinite_errors": float(self.nonfinite_errors),
        }

    # -- persistence -----------------------------------------------------------------------------
    _STATE = ("step_traj", "start", "length", "ret", "recon", "value_err", "measured")

    def state_dict(self) -> dict[str, Any]:
        state = {k: getattr(self, k).clone() for k in self._STATE}
        state.update(cursor=self._cursor, size=self._size, pending=[p.clone() for p in self._pending],
                     last_ext_id=self.last_ext_id, nonfinite_errors=self.nonfinite_errors)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for k in self._STATE:
            setattr(self, k, state_dict[k].clone())
        self._cursor, self._size = state_dict["cursor"], state_dict["size"]
        self._pending = [p.clone() for p in state_dict["pending"]]
        self.last_ext_id = state_dict["last_ext_id"]
        self.nonfinite_errors = state_dict["nonfinite_errors"]

    def dumps(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), Path(path) / "sampler.pt")

    def loads(self, path):
        self.load_state_dict(torch.load(Path(path) / "sampler.pt"))
