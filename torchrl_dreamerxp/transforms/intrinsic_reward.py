"""Latent reward disagreement as a TorchRL transform: mix an ensemble's intrinsic reward into the reward."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import Composite, Unbounded
from torchrl.envs.transforms import Transform

from ..functional import intrinsic_reward, mix_rewards
from ..schedulers import RewardWeightScheduler

__all__ = ["IntrinsicRewardTransform"]


def _inside_next(key: NestedKey) -> NestedKey:
    """``("next", k)`` → ``k``: the key as it reads inside the ``"next"`` tensordict of an env step."""
    if isinstance(key, tuple) and key[0] == "next":
        return key[1:] if len(key) > 2 else key[1]
    return key


class IntrinsicRewardTransform(Transform):
    """Writes ``r = λ·r_ext + (1 − λ)·r_intr`` where the reward is read, λ from a scheduler.

    ``r_intr = functional.intrinsic_reward(r̂, window, ends)``: the ensemble's mean plus population variance
    of its reward predictions ``r̂_k``, averaged over the next ``window`` steps. Windows run along the time
    dimension ``time_dim``, stop at its end (a slice's end) and after an episode's last step. The extrinsic
    and intrinsic parts are written under ``extrinsic_key`` and ``intrinsic_key``, which are not rewards (an
    env keeps one reward key, and ``RewardSum`` sums the mixed reward only). The ensemble runs without
    gradients; λ is read from the scheduler at every call.

    **TorchRL's layout** (default keys): each row is a transition, ``(deter, stoch, action)`` at ``t`` and
    ``("next", deter)``, ``("next", "reward")``, ``("next", "done")`` after it, as collectors, rollouts and
    replay buffers hold them. The prediction for row ``t`` scores ``("next", "reward")[t]``; an episode ends
    at a row whose ``("next", "done")`` or ``("next", "truncated")`` is set, or before a row with ``init_key``
    (``InitTracker``). It works on:

    - an env (appended to it): each step is scored alone, a window of 1 (the future is not known yet);
    - a replay buffer (``rb.append_transform``) or any ``[..., T]`` tensordict passed to :meth:`forward`.
      A flat sample of ``B·T`` steps needs ``slice_len`` (it is cut into ``[B, slice_len]``); a 1-D input
      without it is refused rather than read as one long trajectory.

    **Imagined layout** (:meth:`for_imagination`, what :class:`~torchrl_dreamerxp.modules.Imagination`
    writes): rows are states ``0 … H``, ``reward[t]`` is the reward of arriving at ``t``, ``action[t]`` the
    action taken at ``t``; row ``t ≥ 1`` is scored from ``(h_{t−1}, z_{t−1}, a_{t−1})`` and ``h_t``. Row 0 (and
    a row with ``init_key``, a reset) has no prediction: intrinsic 0, reward left as it was.

    ``stoch_key=None`` lets the ensemble read ``deter_key`` alone (e.g. an observation, with a
    ``RewardEnsemble(obs_dim, stoch=0, classes=0, mode="reward")``) in a model-free pipeline.

    Args:
        ensemble: a :class:`~torchrl_dreamerxp.modules.RewardEnsemble` (``reward_predictions`` → ``[K, ...]``).
        scheduler: any λ scheduler of :mod:`torchrl_dreamerxp.schedulers`.
        window: steps averaged into each intrinsic reward (≥ 1).
        reward_key: the reward read and rewritten (``("next", "reward")``).
        deter_key: the state read at ``t`` (``"deter"``).
        stoch_key: the stochastic state read at ``t`` (``"stoch"``; ``None``: none).
        action_key: the action taken at ``t`` (``"action"``).
        next_deter_key: the state after the step (``("next", "deter")``; ``None``: the imagined layout).
        done_key: flag of an episode's last step (``("next", "done")``; absent entries are skipped).
        truncated_key: flag of a cut trajectory's last step (``("next", "truncated")``).
        init_key: flag of an episode's first row (``"is_init"``).
        extrinsic_key: where the extrinsic part is written (``("next", "reward_extrinsic")``).
        intrinsic_key: where the intrinsic part is written (``("next", "reward_intrinsic")``).
        time_dim: the time dimension of the batch (``-1``: ``[..., T]``, as collectors and slices are).
        slice_len: steps per slice of a flat ``[B·T]`` input.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_dreamerxp.modules import RewardEnsemble
        >>> from torchrl_dreamerxp.schedulers import ConstantWeight
        >>> ens = RewardEnsemble(3, 0, 0, action_dim=1, members=3, units=8, layers=1, mode="reward")
        >>> t = IntrinsicRewardTransform(ens, ConstantWeight(0.5), window=2, deter_key="observation",
        ...                              next_deter_key=("next", "observation"), stoch_key=None)
        >>> rollout = TensorDict({"observation": torch.zeros(2, 5, 3), "action": torch.zeros(2, 5, 1),
        ...     "next": {"observation": torch.zeros(2, 5, 3), "reward": torch.ones(2, 5, 1),
        ...              "done": torch.zeros(2, 5, 1, dtype=torch.bool)}}, [2, 5])
        >>> out = t(rollout)
        >>> out["next", "reward_extrinsic"].shape, bool((out["next", "reward"] != 1).any())
        (torch.Size([2, 5, 1]), True)
    """

    def __init__(self, ensemble, scheduler: RewardWeightScheduler, window: int = 5, *,
                 reward_key: NestedKey = ("next", "reward"), deter_key: NestedKey = "deter",
                 stoch_key: NestedKey | None = "stoch", action_key: NestedKey = "action",
                 next_deter_key: NestedKey | None = ("next", "deter"), done_key: NestedKey | None = ("next", "done"),
                 truncated_key: NestedKey | None = ("next", "truncated"), init_key: NestedKey | None = "is_init",
                 extrinsic_key: NestedKey = ("next", "reward_extrinsic"),
                 intrinsic_key: NestedKey = ("next", "reward_intrinsic"), time_dim: int = -1,
                 slice_len: int | None = None):
        if int(window) < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if slice_len is not None and int(slice_len) < 1:
            raise ValueError(f"slice_len must be >= 1 or None, got {slice_len}")
        in_keys = [k for k in (reward_key, deter_key, stoch_key, action_key, next_deter_key) if k is not None]
        super().__init__(in_keys=[_inside_next(k) for k in in_keys],  # as TorchRL checks them against the env's specs
                         out_keys=[_inside_next(k) for k in (reward_key, extrinsic_key, intrinsic_key)])
        self.ensemble, self.scheduler, self.window = ensemble, scheduler, int(window)
        self.reward_key, self.deter_key, self.stoch_key, self.action_key = reward_key, deter_key, stoch_key, action_key
        self.next_deter_key, self.done_key, self.truncated_key, self.init_key = next_deter_key, done_key, truncated_key, init_key
        self.extrinsic_key, self.intrinsic_key = extrinsic_key, intrinsic_key
        self.time_dim, self.slice_len = time_dim, slice_len

    @classmethod
    def for_imagination(cls, ensemble, scheduler: RewardWeightScheduler, window: int = 5,
                        init_key: NestedKey | None = None) -> "IntrinsicRewardTransform":
        """The transform on :class:`~torchrl_dreamerxp.modules.Imagination`'s layout (keys ``reward``, ``deter``,
        ``stoch``, ``action``; parts under ``reward_extrinsic``/``reward_intrinsic``).

        Examples:
            >>> from tensordict import TensorDict
            >>> from torchrl_dreamerxp.modules import RewardEnsemble
            >>> from torchrl_dreamerxp.schedulers import ConstantWeight
            >>> ens = RewardEnsemble(8, 2, 2, action_dim=1, members=3, units=8, layers=1, mode="reward")
            >>> t = IntrinsicRewardTransform.for_imagination(ens, ConstantWeight(0.5), window=2)
            >>> imagined = TensorDict({"deter": torch.zeros(4, 6, 8), "stoch": torch.zeros(4, 6, 2, 2),
            ...     "action": torch.zeros(4, 6, 1), "reward": torch.ones(4, 6)}, [4, 6])
            >>> out = t(imagined)
            >>> out["reward_extrinsic"][0, 0].item(), out["reward_intrinsic"][0, 0].item()
            (1.0, 0.0)
        """
        return cls(ensemble, scheduler, window, reward_key="reward", next_deter_key=None, done_key=None,
                   truncated_key=None, init_key=init_key, extrinsic_key="reward_extrinsic",
                   intrinsic_key="reward_intrinsic")

    @property
    def lam(self) -> float:
        """The extrinsic weight λ in force now."""
        return float(self.scheduler.value)

    def _stoch(self, td: TensorDictBase, key: NestedKey, deter: torch.Tensor) -> torch.Tensor:
        return deter.new_zeros(*deter.shape[:-1], 0, 0) if key is None else td.get(key)

    def _flag(self, td: TensorDictBase, key: NestedKey | None) -> torch.Tensor | None:
        value = None if key is None else td.get(key, None)
        return None if value is None else value.reshape(td.shape).bool()

    # -- trajectories ([..., T] tensordicts, replay buffers) -------------------------------------------
    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Score a batch of trajectories (time on ``time_dim``; a flat one cut into ``slice_len`` steps)."""
        td = tensordict
        if td.ndim == 0:
            raise ValueError("IntrinsicRewardTransform needs a time dimension: got a tensordict with no batch dims")
        if td.ndim == 1 and self.slice_len is None:
            raise ValueError(
                f"a flat tensordict of {td.shape[0]} steps: pass slice_len (steps per slice of a replay sample) so "
                f"windows stop at slice ends, or give it a [batch, time] shape")
        if td.ndim == 1:
            if td.shape[0] % self.slice_len:
                raise ValueError(f"{td.shape[0]} steps are not a whole number of slices of {self.slice_len}")
            out = self._score(td.reshape(-1, self.slice_len))
            return tensordict.update(out.reshape(tensordict.shape))
        time_dim = self.time_dim % td.ndim
        if time_dim != td.ndim - 1:
            return tensordict.update(self._score(td.transpose(time_dim, td.ndim - 1)).transpose(time_dim, td.ndim - 1))
        return tensordict.update(self._score(td))

    def _score(self, td: TensorDictBase) -> TensorDictBase:
        """``td`` with time last → the three written entries."""
        deter = td.get(self.deter_key)
        stoch, action = self._stoch(td, self.stoch_key, deter), td.get(self.action_key)
        reward = td.get(self.reward_key)
        flat = reward.reshape(td.shape)
        init = self._flag(td, self.init_key)
        if self.next_deter_key is None:  # imagined layout: row t is reached from row t − 1
            preds = self.ensemble.reward_predictions(deter[..., :-1, :], stoch[..., :-1, :, :], action[..., :-1, :],
                                                     deter[..., 1:, :])  # [K, ..., T−1]: arrivals at 1 … T−1
            ends = None
            if init is not None:  # an arrival whose next row is a reset ends its episode
                ends = torch.nn.functional.pad(init[..., 2:], (0, 1))
            r_intr = torch.nn.functional.pad(intrinsic_reward(preds, self.window, ends), (1, 0))
            if init is not None:
                r_intr = r_intr.masked_fill(init, 0.0)
            mixed = mix_rewards(flat, r_intr, self.lam)
            mixed[..., 0] = flat[..., 0]
            if init is not None:
                mixed = torch.where(init, flat, mixed)
        else:  # TorchRL's layout: row t is a transition
            preds = self.ensemble.reward_predictions(deter, stoch, action, td.get(self.next_deter_key))
            ends = torch.zeros(td.shape, dtype=torch.bool, device=flat.device)
            for key in (self.done_key, self.truncated_key):
                flag = self._flag(td, key)
                if flag is not None:
                    ends |= flag
            if init is not None:
                ends[..., :-1] |= init[..., 1:]
            r_intr = intrinsic_reward(preds, self.window, ends)
            mixed = mix_rewards(flat, r_intr, self.lam)
        out = td.empty()
        out.set(self.extrinsic_key, reward.clone())
        out.set(self.intrinsic_key, r_intr.reshape(reward.shape).to(reward.dtype))
        out.set(self.reward_key, mixed.reshape(reward.shape).to(reward.dtype))
        return out

    # -- an env ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        """Env step ``t → t+1``: a window of one step."""
        if self.next_deter_key is None:
            raise ValueError("the imagined layout scores trajectories (forward), not env steps: set next_deter_key")
        reward_key = _inside_next(self.reward_key)
        r_ext = next_tensordict.get(reward_key)
        deter = tensordict.get(self.deter_key)
        preds = self.ensemble.reward_predictions(deter, self._stoch(tensordict, self.stoch_key, deter),
                                                 tensordict.get(self.action_key),
                                                 next_tensordict.get(_inside_next(self.next_deter_key)))  # [K, ...]
        r_intr = intrinsic_reward(preds.unsqueeze(-1), window=1).reshape(r_ext.shape).to(r_ext.dtype)
        next_tensordict.set(_inside_next(self.extrinsic_key), r_ext.clone())
        next_tensordict.set(_inside_next(self.intrinsic_key), r_intr)
        next_tensordict.set(reward_key, mix_rewards(r_ext, r_intr, self.lam))
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        # the parts are observations of the env: a reset state has them too (nothing received yet: 0)
        zero = self.parent.full_reward_spec[_inside_next(self.reward_key)].zero()
        for key in (self.extrinsic_key, self.intrinsic_key):
            tensordict_reset.set(_inside_next(key), zero.clone())
        return tensordict_reset

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        return next_tensordict  # env steps are scored in _step, trajectories in forward

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        reward = output_spec["full_reward_spec"][_inside_next(self.reward_key)]
        observation = output_spec["full_observation_spec"]
        for key in (self.extrinsic_key, self.intrinsic_key):  # observations, not rewards: one reward key stays
            observation[_inside_next(key)] = Unbounded(shape=reward.shape, dtype=reward.dtype, device=reward.device)
        return super().transform_output_spec(output_spec)
