"""How CartPole episodes end under a run's checkpoints: the pole falls, the cart leaves the track, or 500 steps.

    python benchmarks/cartpole_failures.py runs/learning_cartpole/seed0 [more run dirs] [--episodes 10]

For every checkpoint of every run directory, plays ``--episodes`` episodes with the policy's mode (as the
evaluation does) and sorts their ends by the last observation: ``|x| > 2.4`` (cart out of bounds), ``|θ| > 12°``
(pole fell), or neither (the 500-step time limit). Writes ``benchmarks/results/cartpole_failures.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

X_LIMIT, THETA_LIMIT = 2.4, 12 * 2 * math.pi / 360  # gymnasium CartPole-v1's termination thresholds


def end_kind(x: float, theta: float, terminated: bool) -> str:
    """Why an episode ended, from its last observation: ``cart_out``, ``pole_fell`` or ``time_limit``."""
    if terminated and abs(x) > X_LIMIT:
        return "cart_out"
    return "pole_fell" if terminated and abs(theta) > THETA_LIMIT else "time_limit"


def episode_ends(run_dir: Path, checkpoint: Path, episodes: int, seed: int) -> dict:
    import torch
    from omegaconf import OmegaConf
    from torchrl.envs import TransformedEnv
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    from torchrl_dreamerxp.envs import make_env
    from torchrl_dreamerxp.modules import DreamerPolicy
    from torchrl_dreamerxp.training.agent import build_networks, env_shapes
    from torchrl_dreamerxp.training.checkpoint import load_networks

    cfg = OmegaConf.load(run_dir / "config.yaml")
    env = make_env(cfg.env, seed=seed)
    world_model, actor, _ = build_networks(cfg.model, env_shapes(env))
    load_networks(checkpoint, world_model=world_model, actor=actor)
    policy = DreamerPolicy(world_model, actor)
    env = TransformedEnv(env, policy.make_primer())
    ends = {"cart_out": 0, "pole_fell": 0, "time_limit": 0}
    lengths = []
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(episodes):
            rollout = env.rollout(500, policy, break_when_any_done=True)
            x, _, theta, _ = rollout["next", "observation"][-1].tolist()
            terminated = bool(rollout["next", "terminated"][-1])
            ends[end_kind(x, theta, terminated)] += 1
            lengths.append(rollout.shape[0])
    return {"run": str(run_dir), "checkpoint": checkpoint.name, "ends": ends, "lengths": lengths}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories of gym/CartPole-v1 runs")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=123, help="seed of the evaluation env")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cartpole_failures.json")
    args = p.parse_args(argv)
    rows = []
    for run_dir in args.runs:
        for checkpoint in sorted((run_dir / "checkpoints").glob("step_*")):
            row = episode_ends(run_dir, checkpoint, args.episodes, args.seed)
            print(f"{run_dir} {checkpoint.name}: {row['ends']}, mean length {sum(row['lengths']) / len(row['lengths']):.0f}")
            rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"episodes": args.episodes, "seed": args.seed, "rows": rows,
                                    "command": " ".join(["python", *sys.argv])}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
