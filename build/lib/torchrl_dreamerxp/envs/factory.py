"""``make_env``: one name, one TorchRL env, with the keys the DreamerV3 agent reads.

Every env ``make_env`` returns has:

- ``"pixels"`` (uint8 ``[3, 64, 64]``) or ``"observation"`` (float32 ``[obs_dim]``);
- ``"action"``: one-hot (``OneHot``) for discrete actions, ``Bounded`` in ``[-1, 1]``
  float32 for continuous ones (rescaled to the real bounds inside the env);
- ``"reward"`` float32 ``[1]``; ``"done"``, ``"terminated"``, ``"truncated"`` bool ``[1]``;
- ``"is_first"`` bool ``[1]``, True on reset observations (TorchRL's ``InitTracker``).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torchrl.envs import EnvBase, InitTracker, TransformedEnv

from .atari import ATARI_DEFAULTS
from .dmc import DMC_DEFAULTS, DMC_PROPRIO_DEFAULTS
from .gym import GYM_DEFAULTS

__all__ = ["make_env", "check_env_name", "action_repeat", "FAMILIES"]

#: family -> (its overrides and their defaults, (module, extra) it needs, example name)
FAMILIES: dict[str, tuple[dict[str, Any], tuple[str, str] | None, str]] = {
    "gym": (GYM_DEFAULTS, None, "gym/CartPole-v1"),
    "atari": (ATARI_DEFAULTS, ("ale_py", "atari"), "atari/Boxing"),
    "dmc": (DMC_DEFAULTS, ("dm_control", "dmc"), "dmc/cup_catch"),
    "dmc_proprio": (DMC_PROPRIO_DEFAULTS, ("dm_control", "dmc"), "dmc_proprio/walker_walk"),
}


def _parse(name: str) -> tuple[str, str]:
    family, sep, task = name.partition("/") if isinstance(name, str) else ("", "", "")
    if not sep or not task or family not in FAMILIES:
        examples = ", ".join(repr(example) for _, _, example in FAMILIES.values())
        raise ValueError(
            f"Unknown env name {name!r}: use '<family>/<task>' with family one of "
            f"{', '.join(FAMILIES)} (e.g. {examples})."
        )
    return family, task


def _require(module: str, extra: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"This env family needs {module!r}, which is not installed: "
            f"pip install torchrl_dreamerxp[{extra}]"
        ) from err


def action_repeat(name: str, **overrides: Any) -> int:
    """Env frames per agent step of ``make_env(name, **overrides)``: the family's action repeat (1 for gym).

    The official DreamerV3 logs env frames (agent steps × action repeat); runs log both.

    Examples:
        >>> action_repeat("dmc_proprio/walker_walk"), action_repeat("atari/Boxing", action_repeat=2), action_repeat("gym/CartPole-v1")
        (2, 2, 1)
    """
    family, _ = _parse(name)
    return int({**FAMILIES[family][0], **overrides}.get("action_repeat", 1))


def check_env_name(name: str) -> None:
    """Raises ``ValueError`` (``ImportError`` for a missing extra) unless ``name`` names an env
    ``make_env`` can build; builds nothing (a registry or ROM-list look-up).

    Examples:
        >>> check_env_name("gym/CartPole-v1")
        >>> check_env_name("gym/NoSuchEnv-v0")
        Traceback (most recent call last):
        ...
        ValueError: 'NoSuchEnv-v0' is not a registered gymnasium id ...
    """
    family, task = _parse(name)
    _, dependency, example = FAMILIES[family]
    if dependency is not None:
        _require(*dependency)
    if family == "gym":
        import gymnasium

        try:
            gymnasium.spec(task)
        except gymnasium.error.Error:
            raise ValueError(f"{task!r} is not a registered gymnasium id (e.g. {example!r}; "
                             f"gymnasium.pprint_registry() lists them)") from None
    elif family == "atari":
        import ale_py.roms

        from .atari import game_to_rom_id

        if game_to_rom_id(task) not in ale_py.roms.get_all_rom_ids():
            raise ValueError(f"unknown Atari game {task!r} (e.g. {example!r}; ale_py.roms.get_all_rom_ids() lists them)")
    else:
        from .dmc import resolve_task

        resolve_task(task)


def make_env(
    name: str,
    *,
    seed: int | None = None,
    device: torch.device | str = "cpu",
    **overrides: Any,
) -> EnvBase:
    """Builds a TorchRL env from a ``"<family>/<task>"`` name.

    Families and their overrides (defaults in brackets):

    - ``gym/<id>``: any gymnasium id with a vector observation.
      ``max_episode_steps`` [registry's].
    - ``atari/<Game>``: Atari100k protocol of DreamerV3 (see ``AtariEnv``).
      ``action_repeat`` [4], ``size`` [64], ``sticky`` [False], ``noops`` [30],
      ``frame_limit`` [108000], ``terminal_on_life_loss`` [False].
    - ``dmc/<domain>_<task>``: 64x64 pixels (see ``DMCEnv``).
      ``action_repeat`` [2], ``size`` [64], ``camera`` [quadruped 2, else 0].
    - ``dmc_proprio/<domain>_<task>``: flattened proprioception. ``action_repeat`` [2].

    Args:
        name: ``"<family>/<task>"``, e.g. ``"atari/Boxing"``.
        seed: makes resets (and steps under the same actions) reproducible.
        device: device of the env's tensors.
        **overrides: family options listed above.

    Returns:
        A ``TransformedEnv`` whose base env is the family's env and whose transform
        is ``InitTracker(init_key="is_first")``.

    Raises:
        ValueError: unknown family or task.
        TypeError: an override the family does not have.
        ImportError: the family's optional dependency is missing.

    Examples:
        >>> env = make_env("gym/CartPole-v1", seed=0)
        >>> td = env.rollout(3)
        >>> td["action"].shape, bool(td["is_first"][0]), bool(td["is_first"][1])
        (torch.Size([3, 2]), True, False)
        >>> env = make_env("atari/Boxing", seed=0, noops=0)
        >>> env.reset()["pixels"].shape
        torch.Size([3, 64, 64])
    """
    family, task = _parse(name)
    defaults, dependency, _ = FAMILIES[family]
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise TypeError(
            f"Unknown option(s) {unknown} for the {family!r} family; valid options: "
            f"{sorted(defaults)}."
        )
    if dependency is not None:
        _require(*dependency)
    options = {**defaults, **overrides}

    if family == "gym":
        from .gym import make_gym

        env = make_gym(task, seed=seed, device=device, **options)
    elif family == "atari":
        from .atari import AtariEnv

        env = AtariEnv(task, seed=seed, device=device, **options)
    else:
        from .dmc import DMCEnv, resolve_task

        domain, dmc_task = resolve_task(task)
        env = DMCEnv(
            domain, dmc_task, pixels=family == "dmc", seed=seed, device=device, **options
        )
    return TransformedEnv(env, InitTracker(init_key="is_first"))
