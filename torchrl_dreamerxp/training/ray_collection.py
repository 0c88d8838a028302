"""Collection on a Ray cluster: TorchRL's ``RayCollector`` with one env per remote worker."""
from __future__ import annotations

import signal
import threading
from functools import partial

from tensordict import TensorDict
from torchrl.collectors import WeightUpdaterBase
from torchrl.envs import RewardSum, TransformedEnv

from ..envs import make_env
from .graceful_stop import STOP_SIGNALS, GracefulStop

__all__ = ["ObjectStoreWeightUpdater", "init_ray", "make_ray_collector", "ray_config_problems", "worker_env"]


def ray_config_problems(cfg) -> list[str]:
    """What in a training config rules out ``collector.backend=ray`` (one line each; empty: nothing).

    Examples:
        >>> from omegaconf import OmegaConf
        >>> cfg = OmegaConf.create({"frames_per_batch": 16, "envs": 2, "device": "cpu", "xp": {"prioritized": False},
        ...                         "collector": {"workers": 3}})
        >>> ray_config_problems(cfg)[:2]
        ['frames_per_batch=16 must be a multiple of collector.workers=3', 'envs must be 1 (each Ray worker steps one env; use collector.workers)']
    """
    import os

    problems = []
    if cfg.frames_per_batch % cfg.collector.workers:
        problems.append(f"frames_per_batch={cfg.frames_per_batch} must be a multiple of "
                        f"collector.workers={cfg.collector.workers}")
    if cfg.envs != 1:
        problems.append("envs must be 1 (each Ray worker steps one env; use collector.workers)")
    if cfg.device != "cpu":
        problems.append("device must be cpu (the workers step CPU copies of the policy)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        problems.append("not under torchrun (one learner process feeds from the Ray workers)")
    try:
        import ray  # noqa: F401
    except ImportError:
        problems.append("Ray is not installed (pip install ray)")
    return problems


def init_ray(address: str | None = None) -> None:
    """Connects to the Ray cluster at ``address`` (``"auto"``, ``"host:port"``; ``None`` starts a local one),
    unless Ray is already initialized; no dashboard, worker output kept out of this process's log.

    Examples:
        >>> import ray
        >>> init_ray()  # doctest: +SKIP
        >>> ray.is_initialized()  # doctest: +SKIP
        True
    """
    import ray

    if not ray.is_initialized():
        # ray.init installs its own SIGTERM handler in this process: a run's graceful stop (GracefulStop) must
        # stay the one that answers, or a SIGTERM would end the run without its checkpoint. Only that one is
        # put back; elsewhere Ray's handler (which shuts Ray down) stays
        main = threading.current_thread() is threading.main_thread()
        handlers = {s: signal.getsignal(s) for s in STOP_SIGNALS} if main else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        for s, handler in handlers.items():
            if isinstance(getattr(handler, "__self__", None), GracefulStop):
                signal.signal(s, handler)


class ObjectStoreWeightUpdater(WeightUpdaterBase):
    """Pushes the policy's weights to every worker of the ``RayCollector`` it is registered with, through
    Ray's object store (one ``ray.put`` per push, then each worker's ``update_policy_weights_``).

    Why not TorchRL's default ``RayWeightSyncScheme``: it sends each tensor over a gloo process group,
    which refuses non-contiguous tensors, and the pixel encoder's and decoder's convolution weights are
    channels-last (measured: ``RuntimeError: input tensor has to be contiguous`` on Atari). The object
    store pickles any layout, and a worker copies the values into its own parameters.

    Args:
        policy: the learner's policy; its current parameter values are pushed.

    Examples:
        >>> from torchrl_dreamerxp.modules import Actor, DreamerPolicy, WorldModel
        >>> wm = WorldModel(action_dim=2, obs_dim=4, deter=16, hidden=8, stoch=4, classes=4, units=8, blocks=4)
        >>> updater = ObjectStoreWeightUpdater(DreamerPolicy(wm, Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1)))
        >>> updater.all_worker_ids()  # no collector registered yet
        []
    """

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def all_worker_ids(self) -> list[int]:
        collector = self.collector
        return list(range(len(collector.remote_collectors))) if collector is not None else []

    def _get_server_weights(self):
        import ray

        return ray.put(TensorDict.from_module(self.policy).data.cpu())

    def _maybe_map_weights(self, server_weights):
        return server_weights  # already an object-store reference

    def _sync_weights_with_worker(self, *, worker_id: int | None = None, server_weights=None) -> None:
        # Ray runs an actor's calls in order: the worker's next batch request comes after this update
        self.collector.remote_collectors[worker_id].update_policy_weights_.remote(policy_weights=server_weights)


def worker_env(env_name: str, seed: int, env_kwargs: dict, primer) -> TransformedEnv:
    """One worker's env, built inside its Ray actor: the env, the policy's state primer, ``RewardSum``.

    A module-level function so Ray can pickle it by reference: every node needs ``torchrl_dreamerxp``
    installed (``pip install -e .``).

    Examples:
        >>> from torchrl_dreamerxp.modules import Actor, DreamerPolicy, WorldModel
        >>> wm = WorldModel(action_dim=2, obs_dim=4, deter=16, hidden=8, stoch=4, classes=4, units=8, blocks=4)
        >>> policy = DreamerPolicy(wm, Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1))
        >>> env = worker_env("gym/CartPole-v1", 0, {}, policy.make_primer())
        >>> td = env.reset()
        >>> td["deter"].shape, "episode_reward" in td.keys()
        (torch.Size([16]), True)
    """
    from .builders import with_transforms

    return with_transforms(make_env(env_name, seed=seed, **env_kwargs), primer, RewardSum())


def make_ray_collector(policy, env_name: str, *, workers: int, seed: int, frames_per_batch: int,
                       total_frames: int, init_random_frames: int = 0, env_kwargs: dict | None = None,
                       worker_cpus: float = 1, address: str | None = None):
    """TorchRL's :class:`~torchrl.collectors.distributed.RayCollector`: ``workers`` remote collectors
    (Ray actors), one env each, stepping a copy of ``policy`` on CPU.

    Sync mode: every round asks each worker for ``frames_per_batch / workers`` steps and stacks them
    ``[workers, steps]``, the layout of parallel envs, so each worker can write its own replay lane
    (:class:`~torchrl_dreamerxp.replay.LaneWriter`). The policy's weights go to every worker before each
    round (``update_after_each_batch``, through Ray's object store: :class:`ObjectStoreWeightUpdater`), so
    a round is collected with the weights of all updates before it, as with the local collector.

    Args:
        policy: a :class:`~torchrl_dreamerxp.modules.DreamerPolicy` (its ``make_primer`` is used per env).
        env_name: a :func:`~torchrl_dreamerxp.envs.make_env` name.
        workers: remote collectors.
        seed: worker ``i``'s env is seeded ``seed + 101 * i``.
        frames_per_batch: env steps per round over all workers (a multiple of ``workers``).
        total_frames: env steps to collect; ``init_random_frames`` of them with random actions.
        env_kwargs: family overrides for ``make_env``.
        worker_cpus: CPUs each worker reserves in Ray.
        address: a running cluster (``"auto"``, ``"host:port"``); ``None`` starts a local one unless Ray
            is already initialized.

    Examples:
        >>> from torchrl_dreamerxp.modules import Actor, DreamerPolicy, WorldModel
        >>> wm = WorldModel(action_dim=2, obs_dim=4, deter=16, hidden=8, stoch=4, classes=4, units=8, blocks=4)
        >>> policy = DreamerPolicy(wm, Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1))
        >>> collector = make_ray_collector(policy, "gym/CartPole-v1", workers=2, seed=0,  # doctest: +SKIP
        ...                                frames_per_batch=32, total_frames=64)
        >>> [batch.shape for batch in collector]  # doctest: +SKIP
        [torch.Size([2, 16]), torch.Size([2, 16])]
    """
    from torchrl.collectors.distributed import RayCollector

    if frames_per_batch % workers:
        raise ValueError(f"frames_per_batch={frames_per_batch} must be a multiple of workers={workers}")
    init_ray(address)
    env_fns = [partial(worker_env, env_name, seed + 101 * i, dict(env_kwargs or {}), policy.make_primer())
               for i in range(workers)]
    collector = RayCollector(
        env_fns, policy, sync=True, update_after_each_batch=True, frames_per_batch=frames_per_batch,
        total_frames=total_frames, init_random_frames=init_random_frames,
        remote_configs={"num_cpus": worker_cpus}, collector_kwargs={"auto_register_policy_transforms": False},
        weight_updater=ObjectStoreWeightUpdater(policy))
    collector.update_policy_weights_()  # the workers start from the learner's current weights
    return collector
