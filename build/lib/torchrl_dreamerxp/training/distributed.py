"""Data-parallel training under ``torchrun``: the process group, and the modules DDP keeps in sync."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistributedContext", "init_distributed", "TrainedModules"]


class DistributedContext:
    """Rank and world size of this process (``rank 0 of 1`` outside ``torchrun``).

    Examples:
        >>> ctx = DistributedContext()
        >>> ctx.rank, ctx.world_size, ctx.is_main
        (0, 1, True)
    """

    def __init__(self, rank: int = 0, world_size: int = 1):
        self.rank, self.world_size = rank, world_size

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def require_multiples(self, cfg, keys) -> None:
        """Totals each rank takes an equal share of must divide by the world size.

        Examples:
            >>> DistributedContext(0, 2).require_multiples({"steps": 7}, ["steps"])
            Traceback (most recent call last):
            ...
            ValueError: steps=7 must be a multiple of the 2 torchrun processes
        """
        for key in keys:
            if cfg[key] % self.world_size:
                raise ValueError(f"{key}={cfg[key]} must be a multiple of the {self.world_size} torchrun processes")

    def device(self, name: str) -> torch.device:
        """The device of ``name`` for this rank: a bare ``cuda`` is this rank's GPU under ``torchrun``.

        Examples:
            >>> DistributedContext().device("cpu")
            device(type='cpu')
        """
        device = torch.device(name)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return device

    def broadcast(self, value):
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank (so all ranks take the same branch)."""
        if not self.enabled:
            return flag
        # nccl reduces CUDA tensors only
        device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor(int(flag), device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t)

    def average_gradients(self, params) -> None:
        """Average the gradients of ``params`` over the ranks (for a loss computed outside DDP's forward)."""
        if not self.enabled:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world_size

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str = "cpu") -> DistributedContext:
    """Joins the process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ...).

    gloo on CPU, nccl on CUDA. Without ``torchrun`` (``WORLD_SIZE`` unset or 1), returns rank 0 of 1.

    Examples:
        >>> init_distributed().world_size
        1
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext()
    if not dist.is_initialized():
        cuda = str(device).startswith("cuda")
        if cuda:  # one GPU per process: torchrun's LOCAL_RANK picks it
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size())


class TrainedModules(nn.Module):
    """What :class:`~torch.nn.parallel.DistributedDataParallel` wraps: the world model, actor and critic,
    with the learner's loss computation as ``forward``.

    DDP averages these modules' gradients across ranks during ``backward`` and broadcasts rank 0's
    buffers at every forward, including the actor loss's return-percentile statistics, so every rank
    normalizes advantages from the same running statistics. The learner itself is not a submodule (its
    reward ensemble is trained by a separate loss, outside this forward).

    Examples:
        >>> from torchrl_dreamerxp.modules import Actor, TwoHotHead, WorldModel
        >>> from torchrl_dreamerxp.training import Learner
        >>> wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        >>> learner = Learner(wm, Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1),
        ...                   TwoHotHead(wm.rssm.feature_dim(), 8, 1), horizon=3)
        >>> sorted(name for name, _ in TrainedModules(learner).named_children())
        ['actor', 'critic', 'return_norm', 'world_model']
    """

    def __init__(self, learner):
        super().__init__()
        self.world_model, self.actor, self.critic = learner.world_model, learner.actor, learner.critic
        self.return_norm = learner.actor_loss.return_norm
        self.__dict__["learner"] = learner  # not a submodule: only the modules above are synchronized

    def forward(self, batch):
        return self.learner.compute_losses(batch)
