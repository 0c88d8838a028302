"""Sampler speed: PrioritizedTrajectorySampler against TorchRL's SliceSampler and PrioritizedSliceSampler.

    python benchmarks/sampler_speed.py [--steps 1000000] [--trajectories 10000 30000 100000] [--repeats 30]

For each trajectory count: 1M stored steps, batch 16 slices × 64 steps, the same storage contents for all
samplers. Times (median over repeats) of ``sample``, of a priority update of the sampled steps (ours: ε and δ
in one call; TorchRL's: one tensor) and of the two together (one training step's replay work), plus our
indexing of the 1M steps as they are written (1000 writes of 1000 steps). Ratios are ours over TorchRL's,
measured in the same run (where TorchRL's sampler runs out of memory, the JSON says so instead). JSON to
``benchmarks/results/sampler_speed.json``, a bar plot next to it.
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


def measure(td: TensorDict, args) -> dict:
    steps, batch = td.shape[0], args.batch * args.seq

    def buffer(sampler, chunk=None):
        rb = TensorDictReplayBuffer(storage=LazyTensorStorage(steps), sampler=sampler, batch_size=batch)
        for start in range(0, steps, chunk or steps):
            rb.extend(td[start:start + (chunk or steps)])
        return rb

    ours = PrioritizedTrajectorySampler(args.seq, reward_key="reward", init_key="is_first", done_key=None)
    t = time.perf_counter()
    rb_ours = buffer(ours, chunk=1000)  # indexed as it is written
    write = time.perf_counter() - t
    # every trajectory measured once, so the score is the real XP score (not the "new at max" one)
    ours.update_priority(torch.arange(steps), TensorDict(recon_error=torch.rand(steps), value_error=torch.rand(steps),
                                                         batch_size=[steps]))
    slice_rb = buffer(SliceSampler(slice_len=args.seq, traj_key="episode", cache_values=True))
    index = rb_ours.sample()["index"]
    errors = TensorDict(recon_error=torch.rand(batch), value_error=torch.rand(batch), batch_size=[batch])

    def ours_step():
        ours.update_priority(rb_ours.sample()["index"], TensorDict(recon_error=torch.rand(batch), value_error=torch.rand(batch),
                                                       batch_size=[batch]))

    r = {
        "live_trajectories_ours": ours.num_trajectories,
        "sample_s": {"ours": timeit(lambda: rb_ours.sample(), args.repeats),
                     "torchrl_SliceSampler": timeit(lambda: slice_rb.sample(), args.repeats)},
        "priority_update_s": {"ours": timeit(lambda: ours.update_priority(index, errors), args.repeats)},
        "sample_plus_update_s": {"ours": timeit(ours_step, args.repeats)},
        "ours_refresh_s": timeit(ours.refresh, max(3, args.repeats // 10)),
        "ours_indexing_while_writing_s": write,
    }
    del slice_rb
    try:  # TorchRL's prioritized slices pad every trajectory: at many trajectories it may not fit in memory
        prio_slice = PrioritizedSliceSampler(max_capacity=steps, slice_len=args.seq, traj_key="episode",
                                             cache_values=True, alpha=1.0, beta=0.5)
        prio_rb = buffer(prio_slice)
        torchrl_index = prio_rb.sample()["index"]
        r["sample_s"]["torchrl_PrioritizedSliceSampler"] = timeit(lambda: prio_rb.sample(), args.repeats)
        r["priority_update_s"]["torchrl_PrioritizedSliceSampler"] = timeit(
            lambda: prio_rb.update_priority(torchrl_index, torch.rand(batch)), args.repeats)
        r["sample_plus_update_s"]["torchrl_PrioritizedSliceSampler"] = timeit(
            lambda: prio_rb.update_priority(prio_rb.sample()["index"], torch.rand(batch)), args.repeats)
    except (RuntimeError, MemoryError) as err:
        r["torchrl_PrioritizedSliceSampler_error"] = f"{type(err).__name__}: {str(err)[:300]}"
        return r
    ratio = lambda key: r[key]["ours"] / r[key]["torchrl_PrioritizedSliceSampler"]  # noqa: E731
    r["ratio_sample_plus_update_ours_over_PrioritizedSliceSampler"] = ratio("sample_plus_update_s")
    r["ratio_sample_ours_over_PrioritizedSliceSampler"] = ratio("sample_s")
    r["ratio_update_ours_over_PrioritizedSliceSampler"] = ratio("priority_update_s")
    r["ratio_sample_ours_over_SliceSampler"] = r["sample_s"]["ours"] / r["sample_s"]["torchrl_SliceSampler"]
    return r


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.5), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        labels = ["sample", "update", "sample+update"]
        keys = ("sample_s", "priority_update_s", "sample_plus_update_s")
        ours = [r[k]["ours"] for k in keys]
        theirs = [r[k].get("torchrl_PrioritizedSliceSampler", 0.0) for k in keys]
        x = torch.arange(3).numpy()
        ax.bar(x - 0.2, [v * 1e3 for v in ours], 0.4, label="PrioritizedTrajectorySampler")
        ax.bar(x + 0.2, [v * 1e3 for v in theirs], 0.4, label="TorchRL PrioritizedSliceSampler"
               + (" (out of memory)" if "torchrl_PrioritizedSliceSampler_error" in r else ""))
        ax.set_xticks(x, labels)
        ax.set_ylabel("ms (median)")
        ax.set_title(f"1M steps, {name} trajectories")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--trajectories", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sampler_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for n in args.trajectories:
        results[str(n)] = measure(data(args.steps, n), args)
        print(n, json.dumps(results[str(n)], indent=1), flush=True)
    out = {"config": vars(args) | {"out": str(args.out)}, "results": results, "torch": torch.__version__,
           "machine": platform.processor() or platform.machine(), "command": " ".join(sys.argv),
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
