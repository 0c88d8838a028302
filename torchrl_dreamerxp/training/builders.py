"""The recipe's TorchRL parts built from a training config: training env, replay buffer, collector."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictReplayBuffer
from torchrl.envs import Compose, EnvCreator, ParallelEnv, TransformedEnv

from ..envs import make_env
from ..replay import ContiguousSliceSampler, LaneWriter, PrioritizedTrajectorySampler
from .exact_resume import CollectionLog, rngs_kept
from .run_state import RunState

__all__ = ["make_training_env", "replay_lanes", "default_replay_capacity", "make_replay", "make_collector", "with_transforms"]


def make_training_env(cfg: DictConfig, seed: int):
    """The env the collector steps: one env in this process, or ``cfg.envs`` envs in worker processes.

    Parallel envs run one thread each; the policy still runs here, batched over the envs.

    Examples:
        >>> cfg = OmegaConf.create({"env": "gym/CartPole-v1", "envs": 1, "device": "cpu", "env_kwargs": {}})
        >>> make_training_env(cfg, seed=0).reset()["observation"].shape
        torch.Size([4])
    """
    if cfg.envs == 1:
        return make_env(cfg.env, seed=seed, device=cfg.device, **cfg.env_kwargs)
    make_one = partial(make_env, cfg.env, seed=seed, device=cfg.device,
                       **OmegaConf.to_container(cfg.env_kwargs, resolve=True))
    # num_threads: by default ParallelEnv lowers this process's torch threads by one per worker (to one
    # here), which slowed the learner by 31% at the official Atari train ratio (docs/benchmarks.md)
    return ParallelEnv(cfg.envs, EnvCreator(make_one), num_sub_threads=1, num_threads=torch.get_num_threads())


def replay_lanes(cfg: DictConfig) -> int:
    """One replay lane per stream of env steps: each parallel env or Ray worker.

    Examples:
        >>> replay_lanes(OmegaConf.create({"envs": 4, "collector": {"backend": "local", "workers": 2}}))
        4
    """
    return cfg.collector.workers if cfg.collector.backend == "ray" else cfg.envs


def default_replay_capacity(cfg: DictConfig, world_size: int = 1) -> int:
    """Never more than the run needs (episode resets add rows), a multiple of the lanes.

    Examples:
        >>> cfg = OmegaConf.create({"envs": 2, "collector": {"backend": "local"}, "replay_size": 10**6,
        ...                         "steps": 1000, "batch_length": 64, "replay_context": 1})
        >>> default_replay_capacity(cfg)  # 1000 steps + 50% for resets + one slice per lane
        1630
    """
    lanes = replay_lanes(cfg)
    size = min(cfg.replay_size, (cfg.steps + cfg.steps // 2) // world_size + (cfg.batch_length + cfg.replay_context) * lanes)
    return size - size % lanes


def make_replay(cfg: DictConfig, capacity: int, scratch_dir: Path, local_batch: int):
    """The replay buffer: contiguous slices of ``batch_length + replay_context`` steps, uniform or (XP)
    prioritized by trajectory (its ``sampler``); memory-mapped above ``replay_memmap_above`` steps; parallel envs or Ray
    workers write one lane each, so a slice never mixes two envs.

    Examples:
        >>> cfg = OmegaConf.create({"batch_length": 8, "replay_context": 1, "envs": 1, "replay_memmap_above": 10**5,
        ...                         "collector": {"backend": "local"}, "xp": {"prioritized": False}})
        >>> replay = make_replay(cfg, capacity=100, scratch_dir=Path("/nonexistent"), local_batch=2)
        >>> replay.batch_size, type(replay.sampler).__name__
        (18, 'ContiguousSliceSampler')
    """
    slice_len = cfg.batch_length + cfg.replay_context
    lanes = replay_lanes(cfg)
    storage = (LazyMemmapStorage(capacity, scratch_dir=scratch_dir) if capacity > cfg.replay_memmap_above
               else LazyTensorStorage(capacity, device="cpu"))
    sampler = prioritized_sampler(cfg.xp.replay, slice_len, lanes) if cfg.xp.prioritized else \
        ContiguousSliceSampler(slice_len, lanes=lanes)
    writer = {"writer": LaneWriter(lanes, "lane")} if lanes > 1 else {}
    return TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=local_batch * slice_len, **writer)


def prioritized_sampler(replay_cfg: DictConfig, slice_len: int, lanes: int) -> PrioritizedTrajectorySampler:
    """The XP sampler ``xp.replay`` describes, on the recipe's stored keys (one lane per env).

    Examples:
        >>> cfg = OmegaConf.create({"score": "curious", "curious": {"c": 10.0}, "uniform_fraction": 0.1, "alpha": 1.0,
        ...                         "error_rate": 0.1, "refresh_every": 100})
        >>> prioritized_sampler(cfg, slice_len=8, lanes=2).score.c
        10.0
    """
    settings = {key: replay_cfg[key] for key in ("uniform_fraction", "alpha", "error_rate", "refresh_every")}
    return PrioritizedTrajectorySampler(
        slice_len, score=replay_cfg.score, score_kwargs=dict(replay_cfg.get(replay_cfg.score) or {}), lanes=lanes,
        reward_key="reward", init_key="is_first", done_key="is_last", **settings)


def with_transforms(env, *transforms):
    """``env`` with ``transforms`` appended: on its own ``TransformedEnv`` when it is one (no nested wrapper,
    which TorchRL unwraps with a warning), else in a new one.

    Examples:
        >>> from torchrl.envs import RewardSum, StepCounter
        >>> env = with_transforms(make_env("gym/CartPole-v1"), StepCounter(), RewardSum())
        >>> type(env.base_env).__name__, len(env.transform) >= 2
        ('GymWrapper', True)
    """
    if not isinstance(env, TransformedEnv):
        return TransformedEnv(env, Compose(*transforms))
    for transform in transforms:
        env.append_transform(transform)
    return env


def make_collector(cfg: DictConfig, env, policy, state: RunState, rank: int = 0, world_size: int = 1,
                   log: CollectionLog | None = None, resume_from: dict | None = None) -> Iterator[TensorDictBase]:
    """Rounds of ``frames_per_batch`` env steps (this rank's share) until ``cfg.steps``, random actions for
    the prefill; a resumed run's collector starts at its checkpoint's env step. Lazy: nothing is built or
    stepped before the first round is asked for. ``collector.backend=ray``: remote workers (Ray actors),
    each stepping a CPU copy of the policy.

    Examples:
        >>> cfg = OmegaConf.create({"frames_per_batch": 8, "steps": 16, "prefill": 16, "seed": 0,
        ...                         "collector": {"backend": "local"}})
        >>> env = make_env("gym/CartPole-v1")
        >>> rounds = make_collector(cfg, env, None, RunState())  # no policy: random actions
        >>> [batch.numel() for batch in rounds]
        [8, 8]
        >>> list(make_collector(cfg, env, None, RunState(env_steps=16)))  # a finished run collects nothing
        []
    """
    from .ray_collection import make_ray_collector

    if state.env_steps >= cfg.steps:  # resumed from the run's last checkpoint: nothing left to collect
        return
    per_round = cfg.frames_per_batch // world_size

    def whole_rounds(frames: int) -> int:  # TorchRL collects whole rounds; rounding here spares its warnings
        return -(-frames // per_round) * per_round
    totals = dict(frames_per_batch=per_round,
                  total_frames=max(whole_rounds((cfg.steps - state.env_steps) // world_size), per_round),
                  init_random_frames=whole_rounds(max((cfg.prefill - state.env_steps) // world_size, 0)))
    # an exact resume seeds as the run began and replays; otherwise the env starts afresh on another seed
    seed = cfg.seed + 10_007 * rank + (0 if resume_from is not None else state.env_steps)
    if cfg.collector.backend == "ray":
        collector = make_ray_collector(
            policy, cfg.env, workers=cfg.collector.workers, seed=seed, worker_cpus=cfg.collector.worker_cpus,
            address=cfg.collector.ray_address, env_kwargs=OmegaConf.to_container(cfg.env_kwargs, resolve=True),
            **totals)
    else:
        with rngs_kept(enabled=resume_from is not None):  # the replay must not move the RNGs the run goes on with
            collector = Collector(env, policy, auto_register_policy_transforms=False, **totals)
            collector.set_seed(seed)
            if resume_from is not None:
                CollectionLog.restore_carrier(collector, env, resume_from)
        if log is not None:
            log.collector = collector
    try:
        yield from collector
    finally:
        collector.shutdown()
