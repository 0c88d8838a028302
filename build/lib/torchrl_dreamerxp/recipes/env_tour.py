"""A tour of the env families: specs and random-policy returns, as a table.

Builds one env per family with ``make_env``, prints its observation and action
specs, and the mean return of a few random-policy episodes. Long episodes are cut
(the table says where): DMC pixels render in software at ~30 frames/s here.

Usage:
    python recipes/env_tour.py [--episodes 3] [--seed 0]

Examples:
    >>> # python recipes/env_tour.py --episodes 1
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from torchrl_dreamerxp.envs import make_env

#: (name, agent-step cap per episode or None for full episodes)
TOUR = [
    ("gym/CartPole-v1", None),
    ("gym/Pendulum-v1", None),
    ("atari/Boxing", None),
    ("dmc/cup_catch", 100),
    ("dmc_proprio/walker_walk", None),
]
FULL_EPISODE_CAP = 100_000  # far above every full episode in the tour


def describe_observation(env) -> str:
    """``key: shape dtype`` for each observation entry but ``is_first``."""
    parts = []
    for key, spec in env.observation_spec.items():
        if key != "is_first":
            shape = ",".join(map(str, spec.shape))
            parts.append(f"{key} [{shape}] {str(spec.dtype).removeprefix('torch.')}")
    return "\n".join(parts)


def describe_action(env) -> str:
    """Spec class, shape, dtype and (for continuous actions) bounds."""
    spec = env.action_spec
    kind = type(spec).__name__.removesuffix("Continuous")  # BoundedContinuous -> Bounded
    shape = ",".join(map(str, spec.shape))
    text = f"{kind} [{shape}] {str(spec.dtype).removeprefix('torch.')}"
    if hasattr(spec.space, "low"):
        low, high = spec.space.low.min().item(), spec.space.high.max().item()
        text += f" in [{low:g},{high:g}]"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    console = Console(width=max(Console().width, 160))  # the table needs ~150 columns

    table = Table(title=f"make_env tour: random policy, {args.episodes} episodes each")
    for column in ("env", "observation", "action", "steps/ep", "return mean ± std",
                   "episodes", "time"):
        table.add_column(column, no_wrap=True,
                         justify="right" if column in ("steps/ep", "time") else "left")

    for name, cap in TOUR:
        start = time.perf_counter()
        env = make_env(name, seed=args.seed)
        returns, lengths, cut = [], [], 0
        for _ in range(args.episodes):
            td = env.rollout(cap or FULL_EPISODE_CAP, break_when_any_done=True)
            returns.append(td["next", "reward"].sum().item())
            lengths.append(td.shape[0])
            cut += int(not td["next", "done"][-1].item())
        env.close()
        mean = sum(returns) / len(returns)
        std = (sum((r - mean) ** 2 for r in returns) / len(returns)) ** 0.5
        episodes = "full" if cut == 0 else f"cut at {cap} steps"
        table.add_row(
            name,
            describe_observation(env),
            describe_action(env),
            f"{sum(lengths) / len(lengths):.0f}",
            f"{mean:.1f} ± {std:.1f}",
            episodes,
            f"{time.perf_counter() - start:.1f} s",
        )
        console.print(f"[dim]{name}: done[/dim]")
    console.print(table)
    console.print(
        "Atari: Atari100k protocol (repeat 4, max-pool, 64x64, up to 30 no-ops, no sticky "
        "actions, lives unused). DMC: action repeat 2, 500 agent steps per full episode."
    )


if __name__ == "__main__":
    main()
