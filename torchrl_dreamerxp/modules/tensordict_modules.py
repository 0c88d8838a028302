"""TensorDict faces of the networks: the RSSM steps, the world model and the reward ensemble as TensorDict modules.

Thin wrappers over the tensor code the recipe runs (nothing is recomputed differently): each declares its
``in_keys`` and ``out_keys`` and reads and writes a TensorDict, so the networks plug into TorchRL's
``TensorDictSequential``, collectors and its model-based env API (:class:`DreamerModelEnv`).
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs.model_based import ModelBasedEnvBase

from .reward_ensemble import RewardEnsemble
from .rssm import RSSM
from .world_model import WorldModel

__all__ = ["RSSMObserveStep", "RSSMImagineStep", "WorldModelStep", "RewardEnsembleModule", "DreamerModelEnv"]


class RSSMObserveStep(TensorDictModuleBase):
    """The posterior step :meth:`RSSM.obs_step`: ``(deter, stoch, prev_action, embed, is_first) → (deter, stoch, logits)``.

    Where ``is_first`` is set the previous state and action are zeroed first (an episode start).

    Examples:
        >>> from tensordict import TensorDict
        >>> rssm = RSSM(action_dim=2, embed_dim=5, deter=16, hidden=8, stoch=4, classes=4, blocks=4)
        >>> step = RSSMObserveStep(rssm)
        >>> td = TensorDict({"deter": torch.zeros(3, 16), "stoch": torch.zeros(3, 4, 4), "prev_action": torch.zeros(3, 2),
        ...                  "embed": torch.randn(3, 5), "is_first": torch.ones(3, dtype=torch.bool)}, [3])
        >>> bool(torch.allclose(step(td)["stoch"].sum(-1), torch.ones(3, 4))), step.out_keys  # one-hot samples
        (True, ['deter', 'stoch', 'post_logits'])
    """

    def __init__(self, rssm: RSSM, in_keys=("deter", "stoch", "prev_action", "embed", "is_first"),
                 out_keys=("deter", "stoch", "post_logits")):
        super().__init__()
        self.rssm, self.in_keys, self.out_keys = rssm, list(in_keys), list(out_keys)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        deter, stoch, prev_action, embed, is_first = (tensordict.get(k) for k in self.in_keys)
        for key, value in zip(self.out_keys, self.rssm.obs_step(deter, stoch, prev_action, embed, is_first.bool())):
            tensordict.set(key, value)
        return tensordict


class RSSMImagineStep(TensorDictModuleBase):
    """The prior step :meth:`RSSM.img_step`: ``(deter, stoch, action) → (deter, stoch, logits)``.

    The default out keys overwrite the state, as a model-based env's step does; pass
    ``out_keys=[("next", "deter"), ("next", "stoch"), ("next", "prior_logits")]`` to keep both.

    Examples:
        >>> from tensordict import TensorDict
        >>> rssm = RSSM(action_dim=2, embed_dim=5, deter=16, hidden=8, stoch=4, classes=4, blocks=4)
        >>> td = TensorDict({"deter": torch.zeros(3, 16), "stoch": torch.zeros(3, 4, 4), "action": torch.zeros(3, 2)}, [3])
        >>> RSSMImagineStep(rssm, out_keys=[("next", "deter"), ("next", "stoch"), ("next", "prior_logits")])(td)["next", "deter"].shape
        torch.Size([3, 16])
    """

    def __init__(self, rssm: RSSM, in_keys=("deter", "stoch", "action"), out_keys=("deter", "stoch", "prior_logits")):
        super().__init__()
        self.rssm, self.in_keys, self.out_keys = rssm, list(in_keys), list(out_keys)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        deter, stoch, action = (tensordict.get(k) for k in self.in_keys)
        for key, value in zip(self.out_keys, self.rssm.img_step(deter, stoch, action)):
            tensordict.set(key, value)
        return tensordict


class WorldModelStep(TensorDictModuleBase):
    """One imagined step of the world model: the prior step, then its reward and continuation heads.

    ``(deter, stoch, action) → (deter, stoch, reward, cont)`` with ``reward`` the reward head's mean
    prediction ``[..., 1]`` and ``cont`` the continue head's probability ``[..., 1]`` that the episode goes on
    (DreamerV3 weights imagined returns by it rather than cutting the rollout).

    Examples:
        >>> from tensordict import TensorDict
        >>> wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        >>> td = TensorDict({"deter": torch.zeros(5, 16), "stoch": torch.zeros(5, 4, 4), "action": torch.zeros(5, 2)}, [5])
        >>> out = WorldModelStep(wm)(td)
        >>> out["reward"].shape, bool(((out["cont"] > 0) & (out["cont"] < 1)).all())
        (torch.Size([5, 1]), True)
    """

    def __init__(self, world_model: WorldModel, in_keys=("deter", "stoch", "action"),
                 out_keys=("deter", "stoch", "reward", "cont")):
        super().__init__()
        self.world_model, self.in_keys, self.out_keys = world_model, list(in_keys), list(out_keys)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        deter, stoch, action = (tensordict.get(k) for k in self.in_keys)
        wm = self.world_model
        deter, stoch, _ = wm.rssm.img_step(deter, stoch, action)
        feat = wm.rssm.features(deter, stoch)
        reward = wm.reward.predict(wm.reward(feat)).unsqueeze(-1)
        cont = torch.sigmoid(wm.cont(feat)).unsqueeze(-1)
        for key, value in zip(self.out_keys, (deter, stoch, reward, cont)):
            tensordict.set(key, value)
        return tensordict


class RewardEnsembleModule(TensorDictModuleBase):
    """The ensemble's reward predictions for a transition: ``(deter, stoch, action, ("next", "deter")) → [..., K]``.

    Examples:
        >>> from tensordict import TensorDict
        >>> ens = RewardEnsemble(16, 4, 4, action_dim=2, members=3, units=8, layers=1, mode="reward")
        >>> td = TensorDict({"deter": torch.zeros(5, 16), "stoch": torch.zeros(5, 4, 4), "action": torch.zeros(5, 2),
        ...                  "next": {"deter": torch.zeros(5, 16)}}, [5])
        >>> RewardEnsembleModule(ens)(td)["reward_predictions"].shape
        torch.Size([5, 3])
    """

    def __init__(self, ensemble: RewardEnsemble, in_keys=("deter", "stoch", "action", ("next", "deter")),
                 out_key: NestedKey = "reward_predictions"):
        super().__init__()
        self.ensemble, self.in_keys, self.out_keys = ensemble, list(in_keys), [out_key]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        preds = self.ensemble.reward_predictions(*(tensordict.get(k) for k in self.in_keys))  # [K, ...]
        tensordict.set(self.out_keys[0], preds.movedim(0, -1))
        return tensordict


class DreamerModelEnv(ModelBasedEnvBase):
    """The world model as a TorchRL model-based env: states ``deter``/``stoch``, steps by :class:`WorldModelStep`.

    Like TorchRL's ``DreamerEnv`` it never ends an episode (imagination runs a fixed horizon); the predicted
    probability of continuing is an observation, ``cont``.

    ``reset`` starts from the states in the given tensordict (e.g. posterior states of replayed steps) or
    from zeros; ``rollout`` with any TorchRL policy over ``deter``/``stoch`` then imagines trajectories, and
    transforms (e.g. :class:`~torchrl_dreamerxp.transforms.IntrinsicRewardTransform`) append as on any env.

    Examples:
        >>> wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        >>> env = DreamerModelEnv(wm, action_dim=2, batch_size=[4])
        >>> rollout = env.rollout(5)
        >>> rollout.shape, rollout["next", "deter"].shape
        (torch.Size([4, 5]), torch.Size([4, 5, 16]))
    """

    def __init__(self, world_model: WorldModel, action_dim: int, batch_size=(), device="cpu"):
        super().__init__(WorldModelStep(world_model), device=device, batch_size=torch.Size(batch_size),
                         allow_done_after_reset=True)
        rssm = world_model.rssm
        shape = self.batch_size
        state = dict(deter=Unbounded((*shape, rssm.deter)), stoch=Unbounded((*shape, rssm.stoch, rssm.classes)))
        self.observation_spec = Composite(**state, cont=Bounded(0.0, 1.0, (*shape, 1)), shape=shape)
        self.state_spec = Composite(**state, shape=shape)
        self.action_spec = Bounded(-1.0, 1.0, (*shape, action_dim))
        self.reward_spec = Unbounded((*shape, 1))

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        start = self.observation_spec.zero()
        start["cont"] = torch.ones_like(start["cont"])
        if tensordict is not None:
            start.update(tensordict.select(*self.state_spec.keys(), strict=False))
        return start

    def _set_seed(self, seed):
        torch.manual_seed(seed)
