"""Sampler speed: PrioritizedTrajectorySampler against TorchRL's SliceSampler on the same storage.

    python benchmarks/sampler_speed.py [--steps 1000000] [--trajectories 10000] [--repeats 50]

1M stored steps in 10k trajectories, batch 16 slices × 64 steps. Times (median over repeats):
``sample`` of ours vs ``SliceSampler`` (traj_key) and vs ``PrioritizedSliceSampler``; a priority update
(1024 per-step errors) of ours vs ``PrioritizedSliceSampler.update_priority``; and the one-off indexing of
the 1M written steps by our sampler. JSON to ``benchmarks/results/sampler_speed.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import PrioritizedSliceSampler, SliceSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from torchrl_dreamerxp.replay import PrioritizedTrajectorySampler  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def data(steps: int, trajectories: int) -> TensorDict:
    # trajectory lengths vary (uniform around the mean) and some are shorter than a slice
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(8, 2 * steps // trajectories - 8, (trajectories,), generator=g)
    lengths[-1] += steps - lengths.sum()
    episode = torch.repeat_interleave(torch.arange(trajectories), lengths)
    is_first = torch.zeros(steps, dtype=torch.bool)
    is_first[torch.cumsum(lengths, 0)[:-1]] = True
    is_first[0] = True
    return TensorDict({"is_first": is_first, "episode": episode, "reward": torch.rand(steps)}, [steps])


def timeit(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--trajectories", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sampler_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    td = data(args.steps, args.trajectories)
    batch = args.batch * args.seq

    def buffer(sampler):
        rb = TensorDictReplayBuffer(storage=LazyTensorStorage(args.steps), sampler=sampler, batch_size=batch)
        rb.extend(td)
        return rb

    ours = PrioritizedTrajectorySampler(args.seq)
    rb_ours = buffer(ours)
    t = time.perf_counter()
    ours._ingest(rb_ours.storage)
    ingest = time.perf_counter() - t
    # every trajectory measured once, so the score is the real XP score (not the "new at max" one)
    ours.update_priority(torch.arange(args.steps), {"recon_error": torch.rand(args.steps), "value_error": torch.rand(args.steps)})

    slice_rb = buffer(SliceSampler(slice_len=args.seq, traj_key="episode", cache_values=True))
    prio_slice = PrioritizedSliceSampler(max_capacity=args.steps, slice_len=args.seq, traj_key="episode",
                                         cache_values=True, alpha=1.0, beta=0.5)
    prio_rb = buffer(prio_slice)

    index = torch.randint(0, args.steps, (batch,))
    errors = {"recon_error": torch.rand(batch), "value_error": torch.rand(batch)}
    results = {
        "sample_s": {
            "ours": timeit(lambda: rb_ours.sample(), args.repeats),
            "torchrl_SliceSampler": timeit(lambda: slice_rb.sample(), args.repeats),
            "torchrl_PrioritizedSliceSampler": timeit(lambda: prio_rb.sample(), args.repeats),
        },
        "priority_update_s": {
            "ours": timeit(lambda: ours.update_priority(index, errors), args.repeats),
            "torchrl_PrioritizedSliceSampler": timeit(lambda: prio_slice.update_priority(index, torch.rand(batch)), args.repeats),
        },
        "ours_first_indexing_of_all_steps_s": ingest,
    }
    results["ratio_sample_ours_over_SliceSampler"] = results["sample_s"]["ours"] / results["sample_s"]["torchrl_SliceSampler"]
    results["ratio_update_ours_over_PrioritizedSliceSampler"] = (
        results["priority_update_s"]["ours"] / results["priority_update_s"]["torchrl_PrioritizedSliceSampler"])
    out = {"config": vars(args) | {"out": str(args.out)}, "results": results, "torch": torch.__version__,
           "machine": platform.processor() or platform.machine(), "command": " ".join(sys.argv),
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
