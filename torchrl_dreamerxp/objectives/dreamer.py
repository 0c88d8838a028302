"""The whole DreamerV3 objective on a replayed batch as one TorchRL ``LossModule``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule

from ..modules import Actor, Imagination, TwoHotHead, WorldModel
from .actor import ActorLoss
from .critic import CriticLoss
from .world_model import WorldModelLoss

__all__ = ["DreamerV3Loss"]


class DreamerV3Loss(LossModule):
    """World model, imagination, actor and critic losses of one replayed batch, composed as the official
    ``agent.py`` composes them: the world model's posterior states start the imagined rollouts, the actor and the
    critic learn on them, and the critic's replay value loss learns from the posterior features with the
    imagined returns as bootstrap.

    Returns every ``loss_*`` term (their sum is the update's loss), the scalar diagnostics of the parts, and
    under ``"feedback"`` the replay's feedback ``[B, T]``: the posterior ``"deter"``/``"stoch"`` (detached),
    the per-step reconstruction error ``"recon_error"`` and critic error ``"value_error"`` (NaN at the last
    step, which has no return target), all float32.

    XP latent reward disagreement: with a ``reward_transform`` (an
    :class:`~torchrl_dreamerxp.transforms.IntrinsicRewardTransform`) the imagined rewards are mixed before the
    returns are computed, and the replay value loss learns the same mixed reward of the replayed steps.

    Args:
        world_model: the world model.
        actor: the actor.
        critic: the two-hot critic.
        horizon: imagined steps (15).
        reward_transform: an intrinsic-reward transform, or ``None``.
        world_model_kwargs: passed to :class:`WorldModelLoss`.
        actor_kwargs: passed to :class:`ActorLoss`.
        critic_kwargs: passed to :class:`CriticLoss`.

    Examples:
        >>> from torchrl_dreamerxp.modules import Actor, TwoHotHead, WorldModel
        >>> wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        >>> feat = wm.rssm.feature_dim()
        >>> loss = DreamerV3Loss(wm, Actor(feat, 2, True, units=8, layers=1), TwoHotHead(feat, 8, 1), horizon=3)
        >>> batch = TensorDict({"observation": torch.randn(2, 5, 3), "prev_action": torch.zeros(2, 5, 2),
        ...     "reward": torch.zeros(2, 5), "is_first": torch.zeros(2, 5, dtype=torch.bool),
        ...     "is_terminal": torch.zeros(2, 5, dtype=torch.bool), "is_last": torch.zeros(2, 5, dtype=torch.bool),
        ...     "deter": torch.zeros(2, 5, 16), "stoch": torch.zeros(2, 5, 4, 4)}, [2, 5])
        >>> out = loss(batch)
        >>> sorted(k for k in out.keys() if k.startswith("loss_"))[:3], out["feedback"].shape
        (['loss_actor', 'loss_critic', 'loss_critic_replay'], torch.Size([2, 4]))
    """

    @dataclass
    class _AcceptedKeys:
        """Keys this loss reads itself; the world model loss's own are set on ``world_model_loss.set_keys``."""

        prev_action: str = "prev_action"
        reward: str = "reward"
        is_first: str = "is_first"
        is_terminal: str = "is_terminal"
        is_last: str = "is_last"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(self, world_model: WorldModel, actor: Actor, critic: TwoHotHead, *, horizon: int = 15,
                 reward_transform=None, world_model_kwargs=None, actor_kwargs=None, critic_kwargs=None):
        super().__init__()
        self.world_model_loss = WorldModelLoss(world_model, **(world_model_kwargs or {}))
        self.imagination = Imagination(world_model, actor, horizon, reward_transform)
        self.actor_loss = ActorLoss(actor, critic, **(actor_kwargs or {}))
        self.critic_loss = CriticLoss(critic, **(critic_kwargs or {}))
        self.__dict__["reward_transform"] = reward_transform  # owned by the imagination

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @torch.no_grad()
    def replay_rewards(self, data: TensorDictBase, deter: torch.Tensor, stoch: torch.Tensor) -> torch.Tensor:
        """The replayed rewards ``[B, T]`` with the intrinsic reward mixed in, as imagination mixes them.

        Step ``t`` stores ``prev_action``, the action that led to it; the transform scores the action taken at
        ``t``, which is the one stored at ``t + 1`` (the last step has none: its arrival reward is never used).
        Windows stop at an episode start inside the slice (``is_first``), whose own step keeps its reward.
        """
        k = self.tensor_keys
        stored = data.get(k.prev_action)
        taken = torch.cat([stored[:, 1:], torch.zeros_like(stored[:, :1])], 1)
        td = TensorDict({"deter": deter.detach(), "stoch": stoch.detach(), "action": taken,
                         "reward": data.get(k.reward).reshape(data.shape).float(),
                         "is_first": data.get(k.is_first).reshape(data.shape).bool()}, data.shape)
        return self.reward_transform(td).get("reward")

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        k = self.tensor_keys
        wm = self.world_model_loss(tensordict)
        imagined = self.imagination(wm["deter"].flatten(0, 1), wm["stoch"].flatten(0, 1))
        actor = self.actor_loss(imagined)
        data = tensordict[:, self.world_model_loss.context:]
        replay = TensorDict({"reward": data.get(k.reward), "is_terminal": data.get(k.is_terminal),
                             "is_last": data.get(k.is_last)}, data.shape)
        if self.reward_transform is not None:  # XP: the replay value loss learns the same mixed reward
            replay.set("reward", self.replay_rewards(data, wm["deter"], wm["stoch"]))
        replay.set("feature", self.world_model_loss.world_model.rssm.features(wm["deter"], wm["stoch"]))
        replay.set("bootstrap", imagined["lambda_return"][:, 0].reshape(replay.shape))
        critic = self.critic_loss(TensorDict({"imagined": imagined, "replay": replay}, []))
        out = {}
        if "reward_intrinsic" in imagined.keys():  # XP: the two parts of the mixed imagined reward
            out["reward_extrinsic"] = imagined["reward_extrinsic"][:, 1:].mean()
            out["reward_intrinsic"] = imagined["reward_intrinsic"][:, 1:].mean()
            out["lambda"] = torch.tensor(float(self.reward_transform.lam))
        for part in (wm, actor, critic):
            out.update({key: value if key.startswith("loss_") else value.detach()
                        for key, value in part.items() if key.startswith("loss_") or value.dim() == 0})
        value_error = critic["value_error"].float()
        out["feedback"] = TensorDict({  # float32 also in bf16: they go back into the replay
            "recon_error": wm["recon_error"].float(),
            "value_error": torch.cat([value_error, torch.full_like(value_error[:, :1], float("nan"))], 1),
            "deter": wm["deter"].detach().float(),
            "stoch": wm["stoch"].detach().float(),
        }, replay.shape)
        return TensorDict(out, [])
