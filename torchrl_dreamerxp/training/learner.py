"""One DreamerV3 update: world model, imagination, actor and critic, one optimizer step."""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torchrl.objectives import SoftUpdate
from torchrl.trainers.algorithms import DreamerV3Optimizer

from ..modules import Actor, RewardEnsemble, TwoHotHead, WorldModel
from ..modules.layers import RMSNorm
from ..objectives import DreamerV3Loss, RewardEnsembleLoss
from .distributed import DistributedContext, TrainedModules

__all__ = ["Learner"]


class Learner(nn.Module):
    """The DreamerV3 update of ``agent.py`` assembled from this library's losses.

    One :class:`~torchrl.trainers.algorithms.DreamerV3Optimizer` (LaProp: RMS-normalised gradient then
    momentum, adaptive gradient clipping 0.3, eps 1e-20, linear warm-up) steps all parameters on the
    sum of the loss terms, as the official agent does. ``actor_lr``/``critic_lr`` give the actor's and the
    critic's parameter groups their own learning rate, as the 2023 paper did (1e-4 for the world model, 3e-5
    for the actor and the critic); ``None`` keeps ``lr``. The slow critic follows with ``SoftUpdate(tau=0.02)``.
    Loss scales: rec/rew/con/dyn 1, rep 0.1, policy/value 1, repval 0.3.

    XP latent reward disagreement: with ``ensemble`` (a :class:`~torchrl_dreamerxp.modules.RewardEnsemble`)
    each update also trains the ensemble on the detached posterior transitions of the batch, with its own
    Adam optimizer (``ensemble_lr``); ``reward_transform`` (an
    :class:`~torchrl_dreamerxp.transforms.IntrinsicRewardTransform`) rewrites the imagined rewards
    before returns are computed.

    ``precision="bfloat16"`` computes as the official agent does: parameters and optimizer state stay float32,
    each update casts the world model's, actor's and critic's weights to bfloat16 once (a differentiable
    cast: the gradients arrive in float32) and runs the forward passes under ``torch.autocast``, so matrix
    products, convolutions, activations and the recurrent state are bfloat16, while the norms (with their
    scales, which are not cast), the categorical and two-hot log-probabilities, the KL, the actor's
    distribution, λ-returns, the return scale and every loss reduction are float32. ``cast="autocast"``
    leaves the weights float32 and lets autocast cast them at each use (slower: see ``docs/benchmarks.md``).
    Under ``torchrun`` the weights are cast by autocast. ``"float32"`` (default) computes everything in float32.

    One update waits for the device once: the skip decision (loss and gradients finite) and every metric
    are read back together after ``backward``; the optimizer step is then queued without waiting.

    :meth:`update` takes a replayed batch ``[B, T + context]`` and returns its scalar metrics and its
    feedback to the replay, as the official agent returns its replay outputs: a ``[B, T]`` TensorDict of the
    posterior states ``"deter"``/``"stoch"`` (the replay context written back), the per-step reconstruction
    error ``"recon_error"`` and critic error ``"value_error"`` (NaN at the last step, which has no return
    target), all float32.

    Examples:
        >>> from torchrl_dreamerxp.modules import Actor, TwoHotHead, WorldModel
        >>> wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        >>> learner = Learner(wm, Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1),
        ...                   TwoHotHead(wm.rssm.feature_dim(), 8, 1), horizon=3)
        >>> batch = TensorDict({"observation": torch.randn(2, 5, 3), "prev_action": torch.zeros(2, 5, 2),
        ...     "reward": torch.zeros(2, 5), "is_first": torch.zeros(2, 5, dtype=torch.bool),
        ...     "is_terminal": torch.zeros(2, 5, dtype=torch.bool), "is_last": torch.zeros(2, 5, dtype=torch.bool),
        ...     "deter": torch.zeros(2, 5, 16), "stoch": torch.zeros(2, 5, 4, 4)}, [2, 5])
        >>> metrics, feedback = learner.update(batch)
        >>> sorted(metrics)[:2], feedback.shape, sorted(feedback.keys())
        (['advantage', 'entropy'], torch.Size([2, 4]), ['deter', 'recon_error', 'stoch', 'value_error'])
    """

    def __init__(self, world_model: WorldModel, actor: Actor, critic: TwoHotHead, *, horizon=15, lr=4e-5,
                 actor_lr=None, critic_lr=None, agc=0.3, eps=1e-20, warmup=1000, slow_critic_rate=0.02, reward_transform=None,
                 ensemble: RewardEnsemble | None = None, ensemble_lr=1e-4,
                 world_model_kwargs=None, actor_kwargs=None, critic_kwargs=None, precision="float32", cast="once", max_loss=float("inf")):
        super().__init__()
        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
        if cast not in ("once", "autocast"):
            raise ValueError(f"cast must be 'once' or 'autocast', got {cast!r}")
        if not max_loss > 0:
            raise ValueError(f"max_loss must be > 0, got {max_loss!r}")
        self.precision, self.cast, self.max_loss = precision, cast, float(max_loss)
        self.world_model, self.actor, self.critic = world_model, actor, critic
        self.loss = DreamerV3Loss(world_model, actor, critic, horizon=horizon, reward_transform=reward_transform,
                                  world_model_kwargs=world_model_kwargs, actor_kwargs=actor_kwargs,
                                  critic_kwargs=critic_kwargs)
        self.slow_critic = SoftUpdate(self.critic_loss, tau=slow_critic_rate)
        groups = [{"params": list(world_model.parameters())},
                  {"params": list(actor.parameters()), "lr": lr if actor_lr is None else actor_lr},
                  {"params": list(critic.parameters()), "lr": lr if critic_lr is None else critic_lr}]
        self.optimizer = DreamerV3Optimizer(groups, lr=lr, agc=agc, eps=eps, warmup_steps=warmup)
        self.reward_transform = reward_transform
        self.ensemble = ensemble
        if ensemble is not None:
            self.ensemble_loss = RewardEnsembleLoss(ensemble)
            self.ensemble_optimizer = torch.optim.Adam(ensemble.parameters(), lr=ensemble_lr)
        self.ensemble_skipped = 0
        self.distributed = DistributedContext()
        self.__dict__["_ddp"] = None  # not a submodule: the state dict keeps its single-process keys
        self.__dict__["_trained"] = TrainedModules(self)  # the networks whose weights a bf16 update casts
        # ... all but the norm scales: the norms compute in float32 with a float32 scale, as the official ones
        self.__dict__["_float32_params"] = {
            f"{module_name}.{name}" for module_name, module in self._trained.named_modules()
            if isinstance(module, RMSNorm) for name, _ in module.named_parameters(recurse=False)}

    # the parts of the objective, by the names they had before it was one LossModule
    world_model_loss = property(lambda self: self.loss.world_model_loss)
    imagination = property(lambda self: self.loss.imagination)
    actor_loss = property(lambda self: self.loss.actor_loss)
    critic_loss = property(lambda self: self.loss.critic_loss)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints before the objective was one LossModule name its parts at the top level
        for part in ("world_model_loss", "imagination", "actor_loss", "critic_loss"):
            for key in [k for k in state_dict if k.startswith(f"{prefix}{part}.")]:
                state_dict[f"{prefix}loss.{key[len(prefix):]}"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def enable_data_parallel(self, ctx: DistributedContext, **ddp_kwargs) -> "Learner":
        """Train data-parallel over the ranks of ``ctx`` (``torchrun``): each rank passes its own batch.

        The world model, actor and critic run under :class:`~torch.nn.parallel.DistributedDataParallel`
        (:class:`~torchrl_dreamerxp.training.distributed.TrainedModules`), which averages their gradients
        during ``backward``; the reward ensemble's gradients are averaged after its own ``backward``. With
        equal starting parameters (DDP broadcasts rank 0's) every rank then takes the same optimizer step.
        Whether a step is skipped (non-finite loss) is agreed by all ranks.

        Args:
            ctx: from :func:`~torchrl_dreamerxp.training.distributed.init_distributed`.
            **ddp_kwargs: passed to ``DistributedDataParallel``.
        """
        from torch.nn.parallel import DistributedDataParallel

        self.distributed = ctx
        if ctx.enabled:
            self.__dict__["_ddp"] = DistributedDataParallel(TrainedModules(self), **ddp_kwargs)
        return self

    def losses(self, batch: TensorDictBase) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], TensorDict]:
        """All loss terms (``loss_*``), the metrics and the replay feedback (see :meth:`update`) of one batch in
        the learner's precision, without an optimizer step (through DDP under ``torchrun``).

        Not free of side effects: the actor loss updates its return-percentile EMA.
        """
        with self._autocast():
            if self._ddp is not None:
                return self._ddp(batch)
            if self.precision == "bfloat16" and self.cast == "once":
                # one cast per weight and update; the float32 parameters receive the gradients
                weights = {name: p if name in self._float32_params else p.to(torch.bfloat16)
                           for name, p in self._trained.named_parameters()}
                return torch.func.functional_call(self._trained, weights, (batch,), strict=False)
            return self.compute_losses(batch)

    def compute_losses(self, batch: TensorDictBase) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], TensorDict]:
        """:meth:`losses` with the weights as they are (float32 unless the caller casts them): the
        :class:`~torchrl_dreamerxp.objectives.DreamerV3Loss` output split into loss terms, metrics and feedback."""
        out = self.loss(batch)
        feedback = out.pop("feedback")
        terms = {k: v for k, v in out.items() if k.startswith("loss_")}
        return terms, {k: v for k, v in out.items() if not k.startswith("loss_")}, feedback

    def replay_rewards(self, data: TensorDictBase, deter: torch.Tensor, stoch: torch.Tensor) -> torch.Tensor:
        """The replayed rewards ``[B, T]`` with the intrinsic reward mixed in (:meth:`DreamerV3Loss.replay_rewards`)."""
        return self.loss.replay_rewards(data, deter, stoch)

    def update(self, batch: TensorDictBase) -> tuple[dict[str, float], TensorDict | None]:
        """One optimizer step on ``batch``; returns every loss and diagnostic as floats, and the feedback
        ``[B, T]`` for the replay (class docstring).

        A non-finite loss or gradient, or a loss above ``max_loss`` (an explosion, though finite), skips the step
        (``"skipped": 1.0``): no parameter, optimizer state, return-normalization statistic or slow critic
        changes, and the feedback is ``None``, so nothing of the batch goes back into the replay.
        """
        norm_state = {k: v.clone() for k, v in self.actor_loss.return_norm.state_dict().items()}
        terms, metrics, feedback = self.losses(batch)
        loss = sum(terms.values())
        self.optimizer.zero_grad(set_to_none=True)
        # always backward (under DDP every rank must, and the gradients arrive averaged): a non-finite loss
        # on any rank leaves non-finite gradients everywhere, so one check after it decides for all ranks
        loss.backward()
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        finite = (torch.isfinite(loss) & (loss.detach().abs() <= self.max_loss)  # an explosion, even a finite one
                  & torch.isfinite(torch.stack(torch._foreach_norm(grads))).all())
        names = [*terms, *metrics, "loss"]
        values = torch.stack([finite.float(), *(v.detach().float().reshape(()).to(loss.device)
                                                for v in (*terms.values(), *metrics.values(), loss))])
        finite, *values = values.tolist()  # the update's one wait for the device
        finite = self.distributed.all_true(bool(finite))
        if not finite:  # divergence: skip, restore what the forward pass moved
            self.optimizer.zero_grad(set_to_none=True)
            self.actor_loss.return_norm.load_state_dict(norm_state)
            return {"skipped": 1.0, "loss": values[-1]}, None
        self.optimizer.step()
        self.slow_critic.step()
        out = dict(zip(names, values))
        out["skipped"] = 0.0
        if self.ensemble is not None:
            out["loss_ensemble"] = self.update_ensemble(batch, feedback)
            out["ensemble_skipped"] = float(self.ensemble_skipped)
        return out, feedback

    def update_ensemble(self, batch: TensorDictBase, feedback: TensorDict) -> float:
        """One step of the reward ensemble on the posterior transitions of ``batch`` (``feedback``'s states)."""
        data = batch[:, self.world_model_loss.context:]
        transitions = data.select("prev_action", "reward", "is_first").clone(False)
        transitions.set("deter", feedback["deter"])
        transitions.set("stoch", feedback["stoch"])
        with self._autocast():
            loss = self.ensemble_loss(transitions)["loss_ensemble"]
        self.ensemble_optimizer.zero_grad(set_to_none=True)
        loss.backward()  # as in update: always, then one check for loss and gradients on all ranks
        self.distributed.average_gradients(self.ensemble.parameters())
        grads = [p.grad for p in self.ensemble.parameters() if p.grad is not None]
        finite = torch.isfinite(loss) & torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()
        if self.distributed.all_true(bool(finite)):
            self.ensemble_optimizer.step()
        else:  # a diverging ensemble step is skipped and counted, like the main one
            self.ensemble_optimizer.zero_grad(set_to_none=True)
            self.ensemble_skipped += 1
        return float(loss.detach())

    def _autocast(self):
        device = next(self.world_model.parameters()).device  # the batch may carry no device
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    def training_state_dict(self) -> dict:
        """Optimizer and scheduler states (the module parameters are in :meth:`state_dict`)."""
        state = {"optimizer": self.optimizer.state_dict()}
        if self.ensemble is not None:
            state["ensemble_optimizer"] = self.ensemble_optimizer.state_dict()
        if self.reward_transform is not None:
            state["scheduler"] = self.reward_transform.scheduler.state_dict()
        return state

    def load_training_state_dict(self, state: dict) -> None:
        optimizer = state["optimizer"]
        groups = self.optimizer.param_groups
        if len(optimizer["param_groups"]) == 1 < len(groups):
            # a checkpoint from before actor_lr/critic_lr kept all parameters in one group, in the order
            # world model, actor, critic: split it the same way so such runs still resume
            only, ids, start, split = optimizer["param_groups"][0], optimizer["param_groups"][0]["params"], 0, []
            for group in groups:
                split.append({**only, "lr": group["lr"], "params": ids[start:start + len(group["params"])]})
                start += len(group["params"])
            optimizer = {**optimizer, "param_groups": split}
        self.optimizer.load_state_dict(optimizer)
        if self.ensemble is not None:
            self.ensemble_optimizer.load_state_dict(state["ensemble_optimizer"])
        if self.reward_transform is not None:
            self.reward_transform.scheduler.load_state_dict(state["scheduler"])
