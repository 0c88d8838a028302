"""Load a run's checkpoint and roll its world model open-loop: real frames next to imagined ones.

    python docs/examples/open_loop_video.py --run-dir runs/boxing [--out open_loop.gif]

The world model sees the first 5 frames of replayed sequences (posterior), then imagines the rest from the
replayed actions alone (prior), as the official DreamerV3 report video does; the GIF shows real | imagined.
"""
import argparse
from pathlib import Path
from types import SimpleNamespace

import imageio.v2 as imageio
from omegaconf import OmegaConf
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_dreamerxp.envs import make_env
from torchrl_dreamerxp.replay import ContiguousSliceSampler
from torchrl_dreamerxp.training.agent import build_networks, env_shapes
from torchrl_dreamerxp.training.checkpoint import latest_checkpoint, load_networks, read_counters
from torchrl_dreamerxp.training.logging import open_loop_frames
from torchrl_dreamerxp.training.replay_snapshot import load_replay


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("open_loop.gif"))
    parser.add_argument("--length", type=int, default=32, help="frames per sequence")
    args = parser.parse_args()

    cfg = OmegaConf.load(args.run_dir / "config.yaml")
    world_model, _, _ = build_networks(cfg.model, env_shapes(make_env(cfg.env)))
    checkpoint = latest_checkpoint(args.run_dir / "checkpoints")
    load_networks(checkpoint, world_model=world_model)
    capacity = read_counters(checkpoint)["replay_capacity"]
    replay = TensorDictReplayBuffer(storage=LazyTensorStorage(capacity), sampler=ContiguousSliceSampler(args.length))
    load_replay(replay, checkpoint / "replay")
    batch = replay.sample(4 * args.length).reshape(4, args.length)
    frames = open_loop_frames(SimpleNamespace(world_model=world_model), batch, context=5)  # [T, 3, 4·H, 2·W]
    imageio.mimsave(args.out, list(frames.permute(0, 2, 3, 1).numpy()), duration=0.1)
    print(f"{checkpoint.name}: wrote {args.out} ({frames.shape[0]} frames; left real, right imagined)")


if __name__ == "__main__":
    main()
