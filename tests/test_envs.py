"""Tests of ``torchrl_dreamerxp.envs.make_env`` (all families, CPU, no network)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, OneHot
from torchrl.envs.utils import check_env_specs, step_mdp

from torchrl_dreamerxp.envs import make_env

ALL_ENVS = ["gym/CartPole-v1", "gym/Pendulum-v1", "atari/Boxing", "dmc/cup_catch",
            "dmc_proprio/walker_walk"]


def _rollout(env, actions):
    """Steps ``env`` from a reset through ``actions``; returns the stacked steps."""
    td = env.reset()
    steps = []
    for action in actions:
        td.set("action", action)
        td = env.step(td)
        steps.append(td.clone())
        td = step_mdp(td)
    return torch.stack(steps)


def _actions(env, n, seed=0):
    torch.manual_seed(seed)
    return [env.action_spec.rand() for _ in range(n)]


# ---------------------------------------------------------------------------------------
# Specs, keys, dtypes, is_first
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_ENVS)
def test_specs_keys_and_is_first(name):
    env = make_env(name, seed=0)
    check_env_specs(env)
    td = env.rollout(3)

    pixels = name.split("/")[0] in ("atari", "dmc")
    if pixels:
        assert "observation" not in td.keys()
        assert td["pixels"].dtype == torch.uint8
        assert td["pixels"].shape == (3, 3, 64, 64)
    else:
        assert "pixels" not in td.keys()
        assert td["observation"].dtype == torch.float32
        assert td["observation"].ndim == 2
    assert td["next", "reward"].dtype == torch.float32
    assert td["next", "reward"].shape == (3, 1)
    for key in ("done", "terminated", "truncated", "is_first"):
        assert td["next", key].dtype == torch.bool
        assert td["next", key].shape == (3, 1)
    assert td["is_first"][:, 0].tolist() == [True, False, False]
    assert not td["next", "is_first"].any()

    spec = env.action_spec
    if name in ("gym/CartPole-v1", "atari/Boxing"):
        assert isinstance(spec, OneHot)
        assert (td["action"].sum(-1) == 1).all()
    else:
        assert isinstance(spec, Bounded)
        assert spec.dtype == torch.float32
        assert (spec.space.low == -1).all() and (spec.space.high == 1).all()


def test_import_is_light():
    code = ("import sys, torchrl_dreamerxp.envs; "
            "print('ale_py' in sys.modules, 'dm_control' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, steps",
    [("gym/CartPole-v1", 8), ("gym/Pendulum-v1", 8), ("atari/Boxing", 30),
     ("dmc/cup_catch", 3), ("dmc_proprio/walker_walk", 20)],
)
def test_seed_makes_resets_and_steps_identical(name, steps):
    first, second = make_env(name, seed=7), make_env(name, seed=7)
    actions = _actions(first, steps)
    a, b = _rollout(first, actions), _rollout(second, actions)
    assert (a == b).all()
    # Resetting again after re-seeding reproduces the same first observation.
    key = "pixels" if "pixels" in a.keys() else "observation"
    first.set_seed(7)
    assert (first.reset()[key] == a[0][key]).all()


# ---------------------------------------------------------------------------------------
# Gym
# ---------------------------------------------------------------------------------------


def test_gym_continuous_actions_are_rescaled():
    import gymnasium

    env = make_env("gym/Pendulum-v1", seed=3)
    raw = gymnasium.make("Pendulum-v1")
    raw.reset(seed=3)  # what env.set_seed(3) does; the env's first reset is the next one
    obs, _ = raw.reset()
    td = env.reset()
    assert np.allclose(td["observation"].numpy(), obs)
    for unit, torque in [(1.0, 2.0), (-0.5, -1.0), (3.0, 2.0)]:  # 3.0 is clipped to 1
        td["action"] = torch.tensor([unit])
        td = env.step(td)
        obs, reward, *_ = raw.step(np.array([torque], np.float32))
        assert np.allclose(td["next", "observation"].numpy(), obs, atol=1e-6)
        assert td["next", "reward"].item() == pytest.approx(reward, abs=1e-5)
        td = td["next"]


def test_gym_max_episode_steps_truncates():
    env = make_env("gym/Pendulum-v1", seed=0, max_episode_steps=5)
    td = env.rollout(10)
    assert td.shape == (5,)
    assert td["next", "truncated"][-1] and not td["next", "terminated"][-1]


# ---------------------------------------------------------------------------------------
# Atari
# ---------------------------------------------------------------------------------------


def test_atari_matches_raw_ale_with_repeat_maxpool_and_pillow_resize():
    import ale_py
    from PIL import Image

    env = make_env("atari/Boxing", seed=0, noops=0)
    ale = ale_py.ALEInterface()
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(ale_py.roms.get_rom_path("boxing"))
    ale.reset_game()
    actions = ale.getMinimalActionSet()
    assert env.action_spec.shape[-1] == len(actions)

    td = env.reset()
    pooled_differs_from_last = False
    rng = np.random.default_rng(0)
    rewards = []
    for _ in range(80):
        index = int(rng.integers(len(actions)))
        reward, frames = 0.0, []
        for _ in range(4):
            reward += ale.act(actions[index])
            frames.append(ale.getScreenRGB())
        pooled = np.maximum(frames[-2], frames[-1])
        expected = np.asarray(Image.fromarray(pooled).resize((64, 64), Image.BILINEAR))
        last_only = np.asarray(Image.fromarray(frames[-1]).resize((64, 64), Image.BILINEAR))

        td["action"] = torch.nn.functional.one_hot(torch.tensor(index), len(actions))
        td = env.step(td)
        got = td["next", "pixels"].permute(1, 2, 0).numpy().astype(int)
        diff = np.abs(got - expected.astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99  # pillow up to rounding
        pooled_differs_from_last |= bool(np.abs(got - last_only.astype(int)).max() > 1)
        assert td["next", "reward"].item() == reward
        rewards.append(reward)
        td = td["next"]
    assert pooled_differs_from_last  # the max-pool over the last two frames is in effect
    assert any(rewards)  # the comparison covered some reward


def test_atari_frame_limit_truncates_and_game_over_terminates():
    env = make_env("atari/Boxing", seed=0, noops=0, frame_limit=40)  # 40 frames = 10 steps
    td = env.rollout(20)
    assert td.shape == (10,)
    assert td["next", "truncated"][-1] and not td["next", "terminated"][-1]
    assert not td["next", "done"][:-1].any()

    env = make_env("atari/Boxing", seed=0, noops=0, action_repeat=16)  # a bout: 7.2k frames
    td = env.rollout(1000)
    assert td["next", "done"][-1] and td.shape[0] < 1000
    assert td["next", "terminated"][-1] and not td["next", "truncated"][-1]


@pytest.mark.parametrize("terminal_on_life_loss", [False, True])
def test_atari_life_loss(terminal_on_life_loss):
    env = make_env("atari/Breakout", seed=0, terminal_on_life_loss=terminal_on_life_loss)
    ale = env.base_env.ale
    torch.manual_seed(0)
    td = env.reset()
    lives = ale.lives()
    for _ in range(2000):
        td = env.rand_step(td)
        if ale.lives() < lives:
            break
        assert not td["next", "done"]
        td = td["next"]
    assert ale.lives() == lives - 1 and not ale.game_over()
    assert bool(td["next", "done"]) is terminal_on_life_loss
    assert bool(td["next", "terminated"]) is terminal_on_life_loss


def test_atari_noops_vary_the_reset_and_follow_the_seed():
    def noops(seed, **overrides):
        env = make_env("atari/Pong", seed=seed, **overrides)
        env.reset()
        return env.base_env.ale.getEpisodeFrameNumber()  # frames played since reset_game

    draws = [noops(seed) for seed in range(8)]
    assert all(0 <= n <= 30 for n in draws) and len(set(draws)) > 1
    assert draws[:3] == [noops(seed) for seed in range(3)]
    assert noops(0, noops=0) == 0


# ---------------------------------------------------------------------------------------
# DMC
# ---------------------------------------------------------------------------------------


def test_dmc_proprio_episode_is_500_steps_and_truncated():
    env = make_env("dmc_proprio/walker_walk", seed=0)
    assert env.observation_spec["observation"].shape == (24,)
    td = env.rollout(1000)
    assert td.shape == (500,)
    assert td["next", "truncated"][-1] and not td["next", "terminated"][-1]
    assert not td["next", "done"][:-1].any()


def test_dmc_options_and_camera():
    env = make_env("dmc_proprio/cup_catch", seed=0, action_repeat=4)
    assert env.base_env.action_repeat == 4 and env.base_env.domain == "ball_in_cup"
    assert make_env("dmc/quadruped_walk", seed=0).base_env.camera == 2
    small = make_env("dmc/cup_catch", seed=0, size=32, camera=1)
    assert small.reset()["pixels"].shape == (3, 32, 32)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["foo/bar", "CartPole-v1", "gym/", 3])
def test_unknown_family(name):
    with pytest.raises(ValueError, match=r"gym, atari, dmc, dmc_proprio.*atari/Boxing"):
        make_env(name)


@pytest.mark.parametrize(
    "name, match",
    [
        ("gym/NotAnEnv-v0", "not a registered gymnasium id"),
        ("gym/FrozenLake-v1", "only vector"),
        ("atari/NotAGame", r"Unknown Atari game.*atari/MsPacman"),
        ("dmc/foo_bar", r"Unknown DMC task.*dmc/cup_catch"),
        ("dmc_proprio/walker_fly", "Unknown DMC task"),
    ],
)
def test_unknown_task(name, match):
    with pytest.raises(ValueError, match=match):
        make_env(name)


@pytest.mark.parametrize("name", ["atari/Boxing", "dmc/cup_catch", "gym/CartPole-v1"])
def test_unknown_override(name):
    with pytest.raises(TypeError, match="valid options"):
        make_env(name, colour="blue")


@pytest.mark.parametrize(
    "name, module, extra",
    [("atari/Boxing", "ale_py", "atari"), ("dmc/cup_catch", "dm_control", "dmc"),
     ("dmc_proprio/walker_walk", "dm_control", "dmc")],
)
def test_missing_dependency(monkeypatch, name, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=rf"pip install torchrl_dreamerxp\[{extra}\]"):
        make_env(name)


def test_float_one_hot_action_is_accepted():
    env = make_env("atari/Boxing", seed=0)
    td = env.reset()
    td["action"] = torch.nn.functional.one_hot(torch.tensor(1), 18).float()
    assert env.step(td)["next", "pixels"].shape == (3, 64, 64)
    assert isinstance(td, TensorDict)
