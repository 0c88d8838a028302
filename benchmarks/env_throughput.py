"""Agent steps/s of ``make_env("atari/Boxing")`` against raw ``ale_py`` stepping.

Both sides do the same work per agent step: 4 emulator frames with one action,
a pixel-wise max over the last two frames, a 64x64 antialiased bilinear resize
(the env's resize), a reward sum and a game-over check. The env side steps the
way a TorchRL collector does (``env.step_and_maybe_reset``) with one-hot actions
prepared beforehand; ``env.rollout`` with its built-in random policy is reported
too. Repeats are interleaved and the medians compared.

Usage:
    python benchmarks/env_throughput.py [--steps 2000] [--repeats 3]

Writes ``benchmarks/results/env_throughput.json``.

Examples:
    >>> # python benchmarks/env_throughput.py --steps 500 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from torchrl_dreamerxp.envs import make_env  # noqa: E402

GAME, ROM_ID, REPEAT, SIZE = "Boxing", "boxing", 4, (64, 64)
RESULTS = Path(__file__).resolve().parent / "results" / "env_throughput.json"


def raw_ale(action_indices: np.ndarray) -> float:
    """Steps raw ``ale_py`` with the env's per-step work; returns agent steps/s."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("random_seed", 0)
    ale.loadROM(ale_py.roms.get_rom_path(ROM_ID))
    ale.reset_game()
    actions = ale.getMinimalActionSet()
    height, width = ale.getScreenDims()
    frames = [np.zeros((height, width, 3), np.uint8) for _ in range(2)]
    pooled = np.zeros((height, width, 3), np.uint8)
    pooled_t = torch.from_numpy(pooled).permute(2, 0, 1).unsqueeze(0)
    total_reward = 0.0
    start = time.perf_counter()
    for index in action_indices:
        action, reward = actions[index], 0.0
        for i in range(REPEAT):
            reward += ale.act(action)
            if i >= REPEAT - 2:
                ale.getScreenRGB(frames[i - (REPEAT - 2)])
        np.maximum(frames[0], frames[1], out=pooled)
        F.interpolate(pooled_t, size=SIZE, mode="bilinear", antialias=True)[0].contiguous()
        total_reward += reward
        if ale.game_over():
            ale.reset_game()
    return len(action_indices) / (time.perf_counter() - start)


def torchrl_env(action_indices: np.ndarray) -> float:
    """Steps ``make_env("atari/Boxing")`` like a collector; returns agent steps/s."""
    env = make_env(f"atari/{GAME}", seed=0)
    n = env.action_spec.shape[-1]
    one_hots = F.one_hot(torch.from_numpy(action_indices % n), n)
    td = env.reset()
    start = time.perf_counter()
    for action in one_hots:
        td.set("action", action)
        _, td = env.step_and_maybe_reset(td)
    return len(action_indices) / (time.perf_counter() - start)


def torchrl_rollout(steps: int) -> float:
    """``env.rollout`` with TorchRL's random policy (spec sampling, stacking); steps/s."""
    env = make_env(f"atari/{GAME}", seed=0)
    start = time.perf_counter()
    env.rollout(steps, break_when_any_done=False)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="agent steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one env per process, as in collector workers

    indices = np.random.default_rng(0).integers(0, 18, args.steps)
    raw_ale(indices[:200])  # warm-up (imports, first ROM load)
    torchrl_env(indices[:200])
    raw, env, rollout = [], [], []
    for _ in range(args.repeats):
        raw.append(raw_ale(indices))
        env.append(torchrl_env(indices))
        rollout.append(torchrl_rollout(args.steps))

    result = {
        "benchmark": "env_throughput",
        "env": f"atari/{GAME}",
        "work_per_step": "4 frames, max-pool last 2, 64x64 antialiased bilinear resize",
        "steps_per_repeat": args.steps,
        "repeats": args.repeats,
        "raw_ale_steps_per_s": statistics.median(raw),
        "torchrl_env_steps_per_s": statistics.median(env),
        "ratio": statistics.median(env) / statistics.median(raw),
        "torchrl_rollout_steps_per_s": statistics.median(rollout),
        "rollout_ratio": statistics.median(rollout) / statistics.median(raw),
        "runs": {"raw_ale": raw, "torchrl_env": env, "torchrl_rollout": rollout},
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"raw ale_py:          {result['raw_ale_steps_per_s']:8.0f} agent steps/s")
    print(f"make_env step loop:  {result['torchrl_env_steps_per_s']:8.0f} agent steps/s "
          f"({result['ratio']:.0%} of raw)")
    print(f"make_env rollout:    {result['torchrl_rollout_steps_per_s']:8.0f} agent steps/s "
          f"({result['rollout_ratio']:.0%} of raw)")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
