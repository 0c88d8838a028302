"""DeepMind Control Suite tasks as TorchRL envs: 64x64 pixels or proprioception.

``DMCEnv`` is a small ``EnvBase`` directly over a ``dm_control.suite`` environment:
action repeat, action rescaling and rendering happen in one ``_step`` with no
extra transforms.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import EnvBase

from .specs import done_spec, reward_spec

__all__ = ["DMCEnv", "DMC_DEFAULTS", "DMC_PROPRIO_DEFAULTS", "DEFAULT_CAMERAS", "resolve_task"]

#: Pixel settings: action repeat 2 as in the DreamerV3 paper's DMC experiments
#: (the official ``configs.yaml`` leaves ``repeat: 1`` in its env block), 64x64 RGB,
#: camera from ``DEFAULT_CAMERAS`` (``None`` picks it).
DMC_DEFAULTS = dict(action_repeat=2, size=64, camera=None)
#: Proprioceptive settings: action repeat 2, no rendering.
DMC_PROPRIO_DEFAULTS = dict(action_repeat=2)
#: Camera ids of the official DreamerV3 DMC env; every other domain uses camera 0.
DEFAULT_CAMERAS = dict(quadruped=2, rodent=4)


def _import_suite():
    # MuJoCo picks its GL backend when dm_control is first imported.
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        from dm_control import suite
    except ImportError as err:  # pragma: no cover - exercised through a monkeypatch in tests
        raise ImportError(
            "DMC envs need dm-control and mujoco: pip install torchrl_dreamerxp[dmc]"
        ) from err
    return suite


def resolve_task(name: str) -> tuple[str, str]:
    """Maps a DreamerV3 task name to a dm_control ``(domain, task)`` pair.

    The official rule is ``domain, task = name.split("_", 1)`` with ``cup`` standing
    for ``ball_in_cup``; full dm_control names with underscores in the domain
    (``point_mass_easy``, ``ball_in_cup_catch``) are accepted too.

    Args:
        name: the task name, e.g. ``"cup_catch"`` or ``"walker_walk"``.

    Returns:
        ``(domain, task)`` as ``dm_control.suite.load`` expects them.

    Raises:
        ValueError: the suite has no such task.

    Examples:
        >>> resolve_task("cup_catch")
        ('ball_in_cup', 'catch')
        >>> resolve_task("point_mass_easy")
        ('point_mass', 'easy')
    """
    suite = _import_suite()
    domain, _, task = name.partition("_")
    domain = "ball_in_cup" if domain == "cup" else domain
    if (domain, task) in suite.ALL_TASKS:
        return domain, task
    for domain, task in suite.ALL_TASKS:
        if f"{domain}_{task}" == name:
            return domain, task
    domains = sorted({d for d, _ in suite.ALL_TASKS})
    raise ValueError(
        f"Unknown DMC task {name!r}: name tasks '<domain>_<task>' as in 'dmc/cup_catch' or "
        f"'dmc/walker_walk' ('cup' is ball_in_cup). Domains: {', '.join(domains)}. "
        f"All tasks: dm_control.suite.ALL_TASKS."
    )


class DMCEnv(EnvBase):
    """A DeepMind Control Suite task with DreamerV3's settings.

    - ``pixels=True``: the observation is ``"pixels"``, uint8 ``[3, size, size]`` from
      ``physics.render(size, size, camera_id=camera)`` (default quality, as the official
      env), no proprioception. Camera: ``DEFAULT_CAMERAS`` (quadruped 2), else 0.
    - ``pixels=False``: the observation is ``"observation"``, the task's observation dict
      flattened in sorted-key order, float32; nothing is rendered.
    - Actions: ``Bounded`` in ``[-1, 1]`` float32, clipped and rescaled to the task's
      bounds (most suite tasks already use ``[-1, 1]``).
    - ``action_repeat=2`` physics control steps per agent step, rewards summed; the
      suite's 1000-step time limit becomes 500 agent steps and ends with ``truncated``
      (a zero discount, which suite tasks never emit, would set ``terminated``).

    Args:
        domain: dm_control domain, e.g. ``"ball_in_cup"``.
        task: dm_control task, e.g. ``"catch"``.
        pixels: render pixels (True) or return proprioception (False).
        action_repeat: control steps per agent step.
        size: pixel height and width.
        camera: camera id; ``None`` picks ``DEFAULT_CAMERAS.get(domain, 0)``.
        seed: seed of the task's random initial states.
        device: device of the output tensors.

    Examples:
        >>> env = DMCEnv("walker", "walk", pixels=False, seed=0)
        >>> td = env.reset()
        >>> td["observation"].shape, td["observation"].dtype
        (torch.Size([24]), torch.float32)
        >>> env.action_spec.shape
        torch.Size([6])
    """

    def __init__(
        self,
        domain: str,
        task: str,
        *,
        pixels: bool = True,
        action_repeat: int = 2,
        size: int = 64,
        camera: int | None = None,
        seed: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        suite = _import_suite()
        super().__init__(device=device, batch_size=torch.Size([]))
        self.domain, self.task = domain, task
        self.pixels = bool(pixels)
        self.action_repeat = int(action_repeat)
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.camera = DEFAULT_CAMERAS.get(domain, 0) if camera is None else int(camera)
        self._env = suite.load(domain, task, task_kwargs={"random": seed})

        act = self._env.action_spec()
        self._act_low = np.asarray(act.minimum, np.float64)
        self._act_scale = (np.asarray(act.maximum, np.float64) - self._act_low) / 2.0
        self._obs_keys = sorted(self._env.observation_spec())
        obs_dim = sum(
            int(np.prod(spec.shape)) for spec in self._env.observation_spec().values()
        )

        if self.pixels:
            obs_spec = Bounded(0, 255, (3, *self.size), dtype=torch.uint8, device=self.device)
            self.observation_spec = Composite(pixels=obs_spec, shape=())
        else:
            obs_spec = Unbounded((obs_dim,), dtype=torch.float32, device=self.device)
            self.observation_spec = Composite(observation=obs_spec, shape=())
        self.action_spec = Bounded(-1.0, 1.0, act.shape, dtype=torch.float32, device=self.device)
        self.reward_spec = reward_spec(self.device)
        self.done_spec = done_spec(self.device)

    @property
    def physics(self):
        """The underlying ``dm_control`` physics (e.g. for ``physics.render``)."""
        return self._env.physics

    def _set_seed(self, seed: int | None) -> None:
        # Suite tasks draw every random initial state from ``task.random``.
        self._env.task._random = np.random.RandomState(seed)

    def _observe(self, observation) -> dict[str, torch.Tensor]:
        if self.pixels:
            image = self._env.physics.render(*self.size, camera_id=self.camera)
            # render() returns a vertically flipped view (negative strides): copy it CHW.
            pixels = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
            return {"pixels": pixels.to(self.device)}
        flat = np.concatenate(
            [np.asarray(observation[k], np.float32).reshape(-1) for k in self._obs_keys]
        )
        return {"observation": torch.from_numpy(flat).to(self.device)}

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        time_step = self._env.reset()
        false = torch.zeros(1, dtype=torch.bool, device=self.device)
        out = self._observe(time_step.observation)
        out.update(done=false, terminated=false.clone(), truncated=false.clone())
        return TensorDict(out, batch_size=(), device=self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action").detach().cpu().numpy().astype(np.float64)
        action = self._act_low + (np.clip(action, -1.0, 1.0) + 1.0) * self._act_scale
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(action)
            reward += time_step.reward or 0.0
            if time_step.last():
                break
        last = time_step.last()
        terminated = bool(last and time_step.discount == 0.0)
        truncated = bool(last and not terminated)
        device = self.device
        out = self._observe(time_step.observation)
        out.update(
            reward=torch.tensor([reward], dtype=torch.float32, device=device),
            done=torch.tensor([last], device=device),
            terminated=torch.tensor([terminated], device=device),
            truncated=torch.tensor([truncated], device=device),
        )
        return TensorDict(out, batch_size=(), device=device)
