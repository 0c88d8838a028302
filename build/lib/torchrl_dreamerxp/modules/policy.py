"""The acting policy: the RSSM posterior step followed by the actor, state carried in the tensordict."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import Composite, Unbounded
from torchrl.envs import TensorDictPrimer
from torchrl.envs.utils import ExplorationType, exploration_type

from .actor import Actor
from .world_model import WorldModel

__all__ = ["DreamerPolicy"]


class DreamerPolicy(TensorDictModuleBase):
    """Policy for TorchRL collectors: ``RSSM.obs_step`` (the same function training uses) + actor.

    Reads the observation, ``"is_first"`` and the recurrent state ``"deter"``, ``"stoch"``,
    ``"prev_action"`` (zeros after a reset, from :meth:`make_primer`); writes ``"action"`` and the new
    state under ``("next", ...)`` so the env carries it to the next step. Samples under
    ``ExplorationType.RANDOM``; takes the mode under ``DETERMINISTIC``/``MODE`` (evaluation).
    Continuous actions are clipped to [−1, 1] for the env.

    Examples:
        >>> from torchrl_dreamerxp.modules import Actor, WorldModel
        >>> from tensordict import TensorDict
        >>> wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        >>> policy = DreamerPolicy(wm, Actor(wm.rssm.feature_dim(), 2, discrete=True, units=8, layers=1))
        >>> td = TensorDict({"observation": torch.zeros(3), "is_first": torch.ones(1, dtype=torch.bool),
        ...     "deter": torch.zeros(16), "stoch": torch.zeros(4, 4), "prev_action": torch.zeros(2)}, [])
        >>> policy(td)["action"].sum()
        tensor(1.)
    """

    def __init__(self, world_model: WorldModel, actor: Actor):
        super().__init__()
        self.world_model, self.actor = world_model, actor
        self.in_keys = [*world_model.obs_keys, "is_first", "deter", "stoch", "prev_action"]
        self.out_keys = ["action", ("next", "deter"), ("next", "stoch"), ("next", "prev_action")]

    def make_primer(self) -> TensorDictPrimer:
        """Env transform that adds the zeroed recurrent state at every reset."""
        rssm = self.world_model.rssm
        return TensorDictPrimer(
            Composite(
                deter=Unbounded(shape=(rssm.deter,)),
                stoch=Unbounded(shape=(rssm.stoch, rssm.classes)),
                prev_action=Unbounded(shape=(self.actor.action_dim,)),
            ),
            default_value=0.0,
            expand_specs=True,  # a batched env (parallel envs) gets one state per env
        )

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        td = tensordict.reshape(-1) if tensordict.batch_dims != 1 else tensordict
        rssm = self.world_model.rssm
        deter, stoch, _ = rssm.obs_step(
            td["deter"], td["stoch"], td["prev_action"], self.world_model.encode(td), td["is_first"].reshape(-1)
        )
        deterministic = exploration_type() in (ExplorationType.DETERMINISTIC, ExplorationType.MODE)
        action, _, _ = self.actor(rssm.features(deter, stoch), deterministic=deterministic)
        if not self.actor.discrete:
            action = action.clamp(-1.0, 1.0)
        shape = tensordict.shape
        tensordict.set("action", action.reshape(*shape, -1))
        tensordict.set(("next", "deter"), deter.reshape(*shape, -1))
        tensordict.set(("next", "stoch"), stoch.reshape(*shape, *stoch.shape[-2:]))
        tensordict.set(("next", "prev_action"), action.reshape(*shape, -1))
        return tensordict
