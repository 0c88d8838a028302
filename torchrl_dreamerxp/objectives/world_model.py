"""World model loss of DreamerV3: reconstruction, reward, continue and the two KL terms."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torchrl.objectives import LossModule

from ..modules.world_model import WorldModel

__all__ = ["WorldModelLoss"]


class WorldModelLoss(LossModule):
    """DreamerV3 world model loss on replayed slices ``[B, T]`` (DreamerV3 data layout).

    Each step ``t`` of the input holds the observation ``o_t``, the action that led to it, the reward
    received on arriving, ``is_first``, ``is_terminal`` and ``is_last``. With ``context=1`` the first
    step of each slice is not trained: its stored ``"deter"``/``"stoch"`` (written back by the last
    update that saw it; zeros when never trained) is the start state of the others ("replay context").

    Per step (then averaged and scaled)::

        rec  = Σ_pixels (x̂ − x/255)² + Σ_features (x̂ − symlog(x))²
        rew  = two-hot CE(reward head, r_t)
        con  = BCE(continue head, (1 − is_terminal)·(1 − 1/horizon))
        dyn  = max(free_nats, KL(sg(q) ‖ p)),   rep = max(free_nats, KL(q ‖ sg(p)))

    Returns ``loss_model_reconstruction``, ``loss_model_reward``, ``loss_model_continue``,
    ``loss_model_kl_dyn``, ``loss_model_kl_rep`` and diagnostics: ``recon_error`` (per step,
    ``[B, T]``, what prioritized replay uses), ``kl``, and the posterior ``deter``/``stoch`` ``[B, T, ...]``
    (with gradients: the replay value loss and imagination start there).

    Args:
        world_model: the :class:`~torchrl_dreamerxp.modules.WorldModel`.
        free_nats: KL free bits (1.0). dyn_scale, rep_scale: 1.0 / 0.1. rec_scale, reward_scale,
            cont_scale: 1.0. horizon: 333, the continue target is scaled by ``1 − 1/horizon``.
        context: steps at the start of each slice used only as start state (1).

    Examples:
        >>> from torchrl_dreamerxp.modules import WorldModel
        >>> wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        >>> loss = WorldModelLoss(wm)
        >>> td = TensorDict({"observation": torch.randn(2, 5, 3), "prev_action": torch.zeros(2, 5, 2),
        ...     "reward": torch.zeros(2, 5), "is_first": torch.zeros(2, 5, dtype=torch.bool),
        ...     "is_terminal": torch.zeros(2, 5, dtype=torch.bool), "is_last": torch.zeros(2, 5, dtype=torch.bool),
        ...     "deter": torch.zeros(2, 5, 16), "stoch": torch.zeros(2, 5, 4, 4)}, [2, 5])
        >>> out = loss(td)
        >>> out["recon_error"].shape
        torch.Size([2, 4])
    """

    @dataclass
    class _AcceptedKeys:
        """Keys of the replayed slice; change them with :meth:`set_keys`."""

        observation: str = "observation"
        pixels: str = "pixels"
        prev_action: str = "prev_action"  # step t stores a_{t-1}, the action that led to it
        reward: str = "reward"
        is_first: str = "is_first"
        is_terminal: str = "is_terminal"
        is_last: str = "is_last"
        deter: str = "deter"
        stoch: str = "stoch"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(self, world_model: WorldModel, *, free_nats=1.0, dyn_scale=1.0, rep_scale=0.1, rec_scale=1.0,
                 reward_scale=1.0, cont_scale=1.0, horizon=333, context=1):
        super().__init__()
        self.world_model = world_model
        self.free_nats, self.dyn_scale, self.rep_scale = free_nats, dyn_scale, rep_scale
        self.rec_scale, self.reward_scale, self.cont_scale = rec_scale, reward_scale, cont_scale
        self.discount = 1.0 - 1.0 / horizon
        self.context = context

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        k = self.tensor_keys
        wm = self.world_model
        c = self.context
        data = tensordict[:, c:]
        obs = {}
        if "observation" in wm.obs_keys:
            obs["observation"] = data.get(k.observation)
        if "pixels" in wm.obs_keys:
            obs["pixels"] = data.get(k.pixels)
        if c:
            deter0 = tensordict.get(k.deter)[:, c - 1]
            stoch0 = tensordict.get(k.stoch)[:, c - 1]
        else:
            deter0, stoch0 = wm.rssm.initial(data.shape[0], device=data.device)
        embed = wm.encoder(**obs)
        is_first = data.get(k.is_first).reshape(data.shape)
        deter, stoch, post, prior = wm.rssm.observe(embed, data.get(k.prev_action), is_first, deter0, stoch0)
        feat = wm.rssm.features(deter, stoch)
        rec = wm.decoder.loss(feat, **obs)
        reward = data.get(k.reward).reshape(data.shape).float()
        rew = wm.reward.loss(wm.reward(feat), reward)
        cont_target = (~data.get(k.is_terminal).reshape(data.shape)).float() * self.discount
        con = wm.cont.loss(wm.cont(feat), cont_target)
        dyn, rep, kl = wm.rssm.kl_losses(post, prior, self.free_nats)
        return TensorDict(
            {
                "loss_model_reconstruction": self.rec_scale * rec.mean(),
                "loss_model_reward": self.reward_scale * rew.mean(),
                "loss_model_continue": self.cont_scale * con.mean(),
                "loss_model_kl_dyn": self.dyn_scale * dyn.mean(),
                "loss_model_kl_rep": self.rep_scale * rep.mean(),
                "recon_error": rec.detach(),
                "kl": kl.mean(),
                "deter": deter,
                "stoch": stoch,
            },
            batch_size=[],
        )
