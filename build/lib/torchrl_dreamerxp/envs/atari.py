"""Atari 2600 games under the Atari100k protocol of DreamerV3, as a TorchRL env.

The env talks to ``ale_py.ALEInterface`` directly (no gymnasium in between): one
agent step is ``action_repeat`` emulator frames, the observation is the
pixel-wise max of the last two raw frames, resized to 64x64 RGB. Going through
the ALE directly is what keeps the TorchRL env close to raw emulator speed (see
``benchmarks/env_throughput.py``).
"""

from __future__ import annotations

import re
import threading

import numpy as np
import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Composite, OneHot
from torchrl.envs import EnvBase

from .specs import done_spec, reward_spec

__all__ = ["AtariEnv", "ATARI_DEFAULTS", "game_to_rom_id"]

#: Atari100k settings of the official DreamerV3 (``configs.yaml``, ``atari100k``):
#: ``size: [64, 64], repeat: 4, sticky: False, gray: False, actions: needed,
#: lives: unused, noops: 30, resize: pillow, clip_reward: False`` and the
#: emulator's ``length=108000`` frames (30 minutes of play at 60 Hz).
ATARI_DEFAULTS = dict(
    action_repeat=4,
    size=64,
    sticky=False,
    noops=30,
    frame_limit=108_000,
    terminal_on_life_loss=False,
)

# ALE's ROM loading is not thread-safe (the official env holds a lock too).
_ALE_LOCK = threading.Lock()


def game_to_rom_id(game: str) -> str:
    """Turns a game name into an ale_py ROM id.

    CamelCase becomes snake_case; names already in snake_case pass through.

    Args:
        game: a game name such as ``"Boxing"``, ``"MsPacman"`` or ``"private_eye"``.

    Returns:
        The ROM id understood by ``ale_py.roms.get_rom_path``.

    Examples:
        >>> game_to_rom_id("Boxing")
        'boxing'
        >>> game_to_rom_id("MsPacman")
        'ms_pacman'
        >>> game_to_rom_id("PrivateEye")
        'private_eye'
    """
    rom_id = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", game).lower()
    # The one ROM whose id does not follow the CamelCase rule (as in the official env).
    return {"james_bond": "jamesbond"}.get(rom_id, rom_id)


def _import_ale():
    try:
        import ale_py
        import ale_py.roms
    except ImportError as err:  # pragma: no cover - exercised through a monkeypatch in tests
        raise ImportError(
            "Atari envs need ale-py (and opencv for some tools): "
            "pip install torchrl_dreamerxp[atari]"
        ) from err
    return ale_py


class _EpisodeState:
    __slots__ = ("frames", "lives")

    def __init__(self) -> None:
        self.frames = 0  # emulator frames played by agent steps (no-ops not counted)
        self.lives = 0


class AtariEnv(EnvBase):
    """An Atari game with DreamerV3's Atari100k preprocessing.

    Settings (defaults follow the official DreamerV3 ``atari100k`` config):

    - ``action_repeat=4`` emulator frames per agent step, rewards summed, no reward clipping;
    - observation: pixel-wise max over the last 2 raw frames of the repeat, resized to
      ``size`` x ``size`` RGB, uint8, channels-first, under ``"pixels"``;
    - resize: bilinear with antialiasing (``torch.nn.functional.interpolate(...,
      antialias=True)`` on uint8), which reproduces pillow's ``Image.BILINEAR``
      used by the official env (99.9% of pixels identical, the rest off by 1);
    - ``sticky=False`` (``repeat_action_probability=0``), minimal ("needed") action set;
    - each reset plays a uniform random number of no-ops in ``[0, noops]`` (``noops=30``);
    - life loss does not end the episode (``lives: unused``) unless
      ``terminal_on_life_loss=True``; then a life loss sets ``terminated`` and the next
      reset restarts the game (the official ``lives: reset``);
    - game over sets ``terminated``; reaching ``frame_limit=108000`` emulator frames (no-ops
      not counted) sets ``truncated``.

    As in the official env, a repeat stops early on game over/frame limit, and only the
    last 2 frames of a repeat are captured (so an early stop pools the frames captured
    last). Differences from the official code: the reset observation pools two copies of
    the current screen (the official reset overwrites it with a stale buffer), and the
    frame limit sets ``truncated`` rather than ``terminated``.

    Actions are one-hot (``OneHot`` spec, int64; a float one-hot works too) over the
    minimal action set. The reward is float32 ``[1]``.

    Args:
        game: the game, CamelCase (``"Boxing"``, ``"MsPacman"``) or a ROM id (``"ms_pacman"``).
        action_repeat: emulator frames per agent step.
        size: output height and width (an int, or an ``(h, w)`` pair).
        sticky: if True, use ALE sticky actions with probability 0.25.
        noops: maximum number of no-op frames played at reset.
        frame_limit: emulator frames after which the episode is truncated.
        terminal_on_life_loss: end the episode (terminated) when a life is lost.
        seed: seed of the no-op draws and of the emulator.
        device: device of the output tensors.

    Examples:
        >>> env = AtariEnv("Boxing", seed=0)
        >>> td = env.reset()
        >>> td["pixels"].shape, td["pixels"].dtype
        (torch.Size([3, 64, 64]), torch.uint8)
        >>> td = env.rand_step(td)
        >>> td["next", "reward"].shape
        torch.Size([1])
    """

    def __init__(
        self,
        game: str,
        *,
        action_repeat: int = ATARI_DEFAULTS["action_repeat"],
        size: int | tuple[int, int] = ATARI_DEFAULTS["size"],
        sticky: bool = ATARI_DEFAULTS["sticky"],
        noops: int = ATARI_DEFAULTS["noops"],
        frame_limit: int = ATARI_DEFAULTS["frame_limit"],
        terminal_on_life_loss: bool = ATARI_DEFAULTS["terminal_on_life_loss"],
        seed: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        if noops < 0:
            raise ValueError(f"noops must be >= 0, got {noops}")
        ale_py = _import_ale()
        rom_id = game_to_rom_id(game)
        known = sorted(ale_py.roms.get_all_rom_ids())
        rom_path = ale_py.roms.get_rom_path(rom_id) if rom_id in known else None
        if rom_path is None:
            raise ValueError(
                f"Unknown Atari game {game!r} (ROM id {rom_id!r}). Name games in CamelCase "
                f"as in 'atari/Boxing' or 'atari/MsPacman' (or by ROM id, 'atari/ms_pacman'); "
                f"ale_py ships {len(known)} ROMs: {', '.join(known[:8])}, ..."
            )
        super().__init__(device=device, batch_size=torch.Size([]))
        self.game = game
        self.action_repeat = int(action_repeat)
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.sticky = bool(sticky)
        self.noops = int(noops)
        self.frame_limit = int(frame_limit)
        self.terminal_on_life_loss = bool(terminal_on_life_loss)
        self._rom_path = str(rom_path)
        self._noop = ale_py.Action.NOOP

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # static: no banner
        self.ale = ale_py.ALEInterface()
        self.ale.setFloat("repeat_action_probability", 0.25 if self.sticky else 0.0)
        self._set_seed(seed)
        self._actions = list(self.ale.getMinimalActionSet())

        height, width = self.ale.getScreenDims()
        # Two raw frame buffers (HWC, as ALE writes them) and their max-pool.
        self._frames = [np.zeros((height, width, 3), np.uint8) for _ in range(2)]
        self._pooled = np.zeros((height, width, 3), np.uint8)
        # A channels-first view of the pool, batched for F.interpolate (no copy).
        self._pooled_t = torch.from_numpy(self._pooled).permute(2, 0, 1).unsqueeze(0)
        # Per-episode counters live in a plain object: attribute writes on an EnvBase
        # (an nn.Module) cost microseconds each, and the step loop makes several.
        self._episode = _EpisodeState()

        self.observation_spec = Composite(
            pixels=Bounded(0, 255, (3, *self.size), dtype=torch.uint8, device=self.device),
            shape=(),
        )
        self.action_spec = OneHot(len(self._actions), dtype=torch.int64, device=self.device)
        self.reward_spec = reward_spec(self.device)
        self.done_spec = done_spec(self.device)

    @property
    def action_meanings(self) -> list[str]:
        """Names of the actions, in the order of the one-hot index."""
        return [a.name for a in self._actions]

    def _set_seed(self, seed: int | None) -> None:
        # One generator drives the no-op draws; the emulator gets a seed drawn from it
        # (ALE only reads its seed when a ROM is loaded, hence the reload).
        self._rng = np.random.default_rng(seed)
        self.ale.setInt("random_seed", int(self._rng.integers(0, 2**31)))
        with _ALE_LOCK:
            self.ale.loadROM(self._rom_path)

    def _capture(self) -> None:
        # Keep the two most recent frames: rotate, then write the newest into slot 0.
        self._frames.reverse()
        self.ale.getScreenRGB(self._frames[0])

    def _pixels(self) -> torch.Tensor:
        np.maximum(self._frames[0], self._frames[1], out=self._pooled)
        # uint8 bilinear + antialias: pillow's BILINEAR resize (the official one).
        pixels = F.interpolate(
            self._pooled_t, size=self.size, mode="bilinear", antialias=True, align_corners=False
        )[0].contiguous()
        return pixels if self.device.type == "cpu" else pixels.to(self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        ale = self.ale
        with _ALE_LOCK:
            ale.reset_game()
        for _ in range(int(self._rng.integers(self.noops + 1))):
            ale.act(self._noop)
            if ale.game_over():
                with _ALE_LOCK:
                    ale.reset_game()
        self._capture()
        np.copyto(self._frames[1], self._frames[0])
        self._episode.frames = 0
        self._episode.lives = ale.lives()
        false = torch.zeros(1, dtype=torch.bool, device=self.device)
        return TensorDict(
            {
                "pixels": self._pixels(),
                "done": false,
                "terminated": false.clone(),
                "truncated": false.clone(),
            },
            batch_size=(),
            device=self.device,
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        ale, episode = self.ale, self._episode
        action = self._actions[int(tensordict.get("action").argmax())]
        reward = 0.0
        terminated = truncated = False
        repeat = self.action_repeat
        for i in range(repeat):
            reward += ale.act(action)
            episode.frames += 1
            if i >= repeat - 2:
                self._capture()
            if ale.game_over():
                terminated = True
            elif episode.frames >= self.frame_limit:
                truncated = True
            lives = ale.lives()
            if self.terminal_on_life_loss and 0 < lives < episode.lives:
                terminated = True
            episode.lives = lives
            if terminated or truncated:
                break
        device = self.device
        return TensorDict(
            {
                "pixels": self._pixels(),
                "reward": torch.tensor([reward], dtype=torch.float32, device=device),
                "done": torch.tensor([terminated or truncated], device=device),
                "terminated": torch.tensor([terminated], device=device),
                "truncated": torch.tensor([truncated], device=device),
            },
            batch_size=(),
            device=device,
        )
