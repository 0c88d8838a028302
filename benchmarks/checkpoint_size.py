"""Checkpoint size: the filled rows of the replay (this library) against TorchRL's whole-storage ``dumps``.

Trains CartPole (gym family defaults, ``vector_small``) for ``--steps`` env steps with a replay preallocated for
``--capacity`` steps, as a run with ``steps=<capacity>`` would be, then measures its last checkpoint and a
TorchRL ``ReplayBuffer.dumps`` of the same replay (what checkpoints held before). JSON to
``benchmarks/results/checkpoint_size.json``.

    python benchmarks/checkpoint_size.py --steps 6000 --capacity 100000
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_dreamerxp.paths import config_dir
from torchrl_dreamerxp.recipes import train
from torchrl_dreamerxp.training.checkpoint import latest_checkpoint, read_counters
from torchrl_dreamerxp.training.replay_snapshot import load_replay

RESULTS = Path(__file__).resolve().parent / "results"


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--train-ratio", type=float, default=4, help="few updates: the size does not depend on them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=[
                "env=gym/CartPole-v1", f"steps={args.steps}", f"replay_size={args.capacity}",
                f"train_ratio={args.train_ratio}", f"checkpoint_every={args.steps}", "logger.mode=none",
                f"eval.every={args.steps}", "eval.episodes=1", f"run_dir={tmp}/run", "progress=false"])
        # preallocated as for a run of --capacity steps (the recipe sizes its replay from `steps`), stopped at --steps
        train.default_replay_capacity = lambda cfg, world: args.capacity
        run_dir = train.run(cfg)
        checkpoint = latest_checkpoint(run_dir / "checkpoints")
        counters = read_counters(checkpoint)
        replay = TensorDictReplayBuffer(storage=LazyTensorStorage(counters["replay_capacity"]))
        load_replay(replay, checkpoint / "replay")
        replay.dumps(Path(tmp) / "torchrl_dumps")
        result = {
            "command": f"python benchmarks/checkpoint_size.py --steps {args.steps} --capacity {args.capacity}",
            "env_steps": counters["env_steps"], "replay_capacity": counters["replay_capacity"],
            "replay_rows": len(replay),
            "checkpoint_mb": folder_bytes(checkpoint) / 1e6,
            "checkpoint_replay_mb": folder_bytes(checkpoint / "replay") / 1e6,
            "torchrl_dumps_replay_mb": folder_bytes(Path(tmp) / "torchrl_dumps") / 1e6,
        }
    result["checkpoint_mb_before"] = result["checkpoint_mb"] - result["checkpoint_replay_mb"] + result["torchrl_dumps_replay_mb"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "checkpoint_size.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
