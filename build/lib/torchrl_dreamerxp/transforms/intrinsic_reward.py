"""Latent reward disagreement as a TorchRL transform: mix an ensemble's intrinsic reward into imagined rewards."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.data import Composite, Unbounded
from torchrl.envs.transforms import Transform

from ..functional import intrinsic_reward, mix_rewards
from ..modules.reward_ensemble import RewardEnsemble
from ..schedulers import RewardWeightScheduler

__all__ = ["IntrinsicRewardTransform"]


class IntrinsicRewardTransform(Transform):
    """Writes ``r = λ·r_ext + (1 − λ)·r_intr`` where the actor and critic read the reward.

    On an imagined trajectory ``[..., H+1]`` (time last, as :class:`~torchrl_dreamerxp.modules.Imagination`
    writes it: ``reward[..., t]`` is the reward of arriving at state ``t``, ``action[..., t]`` the action
    taken at state ``t``), passed to :meth:`forward`:

    - the ensemble predicts ``r̂_{k,t}`` for every arrival ``t = 1 … H`` from ``(h_{t−1}, z_{t−1}, a_{t−1})``
      and ``h_t``;
    - ``r_intr = functional.intrinsic_reward(r̂, window)``: ensemble mean plus population variance,
      averaged over the next ``window`` steps, the window cut at the horizon;
    - ``reward ← functional.mix_rewards(r_ext, r_intr, scheduler.value)``; the extrinsic and intrinsic
      parts stay under ``"reward_extrinsic"`` and ``"reward_intrinsic"`` for logging. The start state
      (index 0) has no prediction: its intrinsic reward is 0 and its reward is left as it was (no
      return uses it).

    On an env (a model-based env whose steps carry the latent state), each step is scored alone:
    the window needs future steps, so there ``r_intr_t = r̄_t + v_t`` (a window of 1).

    The ensemble runs without gradients; λ is read from the scheduler at every call, so stepping the
    scheduler during training changes the mix from the next call on.

    Args:
        ensemble: a :class:`~torchrl_dreamerxp.modules.RewardEnsemble`.
        scheduler: any λ scheduler of :mod:`torchrl_dreamerxp.schedulers`.
        window: steps averaged into each intrinsic reward (≥ 1).
        reward_key: the reward read and rewritten.
        deter_key: deterministic state read.
        stoch_key: stochastic state read.
        action_key: action read.
        extrinsic_key: where the extrinsic part is written.
        intrinsic_key: where the intrinsic part is written.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_dreamerxp.modules import RewardEnsemble
        >>> from torchrl_dreamerxp.schedulers import ConstantWeight
        >>> ens = RewardEnsemble(8, 2, 2, action_dim=1, members=3, units=8, layers=1, mode="reward")
        >>> t = IntrinsicRewardTransform(ens, ConstantWeight(0.5), window=2)
        >>> imagined = TensorDict({"deter": torch.zeros(4, 6, 8), "stoch": torch.zeros(4, 6, 2, 2),
        ...     "action": torch.zeros(4, 6, 1), "reward": torch.ones(4, 6)}, [4, 6])
        >>> out = t(imagined)
        >>> sorted(k for k in out.keys() if k.startswith("reward"))
        ['reward', 'reward_extrinsic', 'reward_intrinsic']
        >>> out["reward_extrinsic"][0, 0].item(), out["reward_intrinsic"][0, 0].item()
        (1.0, 0.0)
    """

    def __init__(self, ensemble: RewardEnsemble, scheduler: RewardWeightScheduler, window: int = 5, *,
                 reward_key="reward", deter_key="deter", stoch_key="stoch", action_key="action",
                 extrinsic_key="reward_extrinsic", intrinsic_key="reward_intrinsic"):
        if int(window) < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        super().__init__(in_keys=[reward_key, deter_key, stoch_key, action_key],
                         out_keys=[reward_key, extrinsic_key, intrinsic_key])
        self.ensemble, self.scheduler, self.window = ensemble, scheduler, int(window)
        self.reward_key, self.deter_key, self.stoch_key, self.action_key = reward_key, deter_key, stoch_key, action_key
        self.extrinsic_key, self.intrinsic_key = extrinsic_key, intrinsic_key

    @property
    def lam(self) -> float:
        """The extrinsic weight λ in force now."""
        return float(self.scheduler.value)

    def _write(self, td: TensorDictBase, r_ext: torch.Tensor, r_intr: torch.Tensor, mixed: torch.Tensor) -> None:
        td.set(self.extrinsic_key, r_ext)
        td.set(self.intrinsic_key, r_intr)
        td.set(self.reward_key, mixed)

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Score an imagined trajectory ``[..., H+1]`` (time is the last batch dimension)."""
        deter, stoch = tensordict.get(self.deter_key), tensordict.get(self.stoch_key)
        action = tensordict.get(self.action_key)
        r_ext = tensordict.get(self.reward_key)
        flat_reward = r_ext.reshape(tensordict.shape)
        preds = self.ensemble.reward_predictions(deter[..., :-1, :], stoch[..., :-1, :, :], action[..., :-1, :],
                                                 deter[..., 1:, :])  # [K, ..., H]
        r_intr = torch.nn.functional.pad(intrinsic_reward(preds, self.window), (1, 0))
        mixed = mix_rewards(flat_reward, r_intr, self.lam)
        mixed[..., 0] = flat_reward[..., 0]
        self._write(tensordict, flat_reward.clone(), r_intr, mixed.reshape(r_ext.shape))
        return tensordict

    @torch.no_grad()
    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        """Env step ``t → t+1``: a window of one step."""
        r_ext = next_tensordict.get(self.reward_key)
        preds = self.ensemble.reward_predictions(
            tensordict.get(self.deter_key), tensordict.get(self.stoch_key), tensordict.get(self.action_key),
            next_tensordict.get(self.deter_key),
        )  # [K, ...]
        r_intr = intrinsic_reward(preds.unsqueeze(-1), window=1).reshape(r_ext.shape)  # one step: mean + variance
        self._write(next_tensordict, r_ext.clone(), r_intr, mix_rewards(r_ext, r_intr, self.lam))
        return next_tensordict

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        return next_tensordict  # only env steps (``_step``) and trajectories (``forward``) are scored

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        # the two parts are rewards too: declared so the env's specs stay complete
        spec = reward_spec[self.reward_key]
        for key in (self.extrinsic_key, self.intrinsic_key):
            reward_spec[key] = Unbounded(shape=spec.shape, dtype=spec.dtype, device=spec.device)
        return reward_spec
