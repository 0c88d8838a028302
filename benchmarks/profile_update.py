"""Where the time of one DreamerV3 update goes: a table per phase.

Phases, timed inside the same updates (``time.perf_counter`` around each part; CPU ops are synchronous):
world model loss (forward), imagination, actor loss, critic loss (both forward), optimizer step (LaProp +
AGC), slow critic, ensemble training (``--intrinsic``; its scoring of imagined steps is part of
"imagination", ``benchmarks/update_speed.py`` reports both together), and
"backward and the rest" (the main backward pass, zero_grad, the finiteness check, Python). Also the ``torch.profiler`` top operators of one update.

Usage:
    python benchmarks/profile_update.py [--preset size12m] [--iters 3] [--threads 2] [--intrinsic] [--compile] [--precision bfloat16]
    python benchmarks/profile_update.py --preset tiny --batch 2 --seq 8 --horizon 3 --iters 1   # smoke

Writes ``benchmarks/results/profile_update_<preset>.json``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="size12m")
    p.add_argument("--obs", choices=["vector", "pixels"], default="vector")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--intrinsic", action="store_true", help="with the XP reward ensemble")
    p.add_argument("--compile", action="store_true", help="compile the RSSM steps and the MLPs (the recipe's compile=true)")
    p.add_argument("--precision", choices=["float32", "bfloat16"], default="float32", help="the recipe's precision")
    p.add_argument("--top", type=int, default=15, help="profiler operators listed")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    import torch

    import update_speed

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    learner, data, params, _ = update_speed.build_learner(args.preset, args.obs, args.batch, args.seq, args.horizon,
                                                          intrinsic=args.intrinsic, precision=args.precision)
    if args.compile:
        from torchrl_dreamerxp.training.agent import compile_networks

        compile_networks(learner.world_model, learner.actor, learner.critic, learner.ensemble, dynamic=False)
    phases: dict[str, float] = {}
    for name, owner, attr in [("world model loss", learner.world_model_loss, "forward"),
                              ("imagination", learner.imagination, "forward"),
                              ("actor loss", learner.actor_loss, "forward"),
                              ("critic loss", learner.critic_loss, "forward"),
                              ("optimizer step", learner.optimizer, "step"),
                              ("slow critic", learner.slow_critic, "step"),
                              *([("ensemble (train)", learner, "update_ensemble")] if args.intrinsic else [])]:
        setattr(owner, attr, update_speed.timed(getattr(owner, attr), phases, name))

    def update():
        learner.update(data)

    for _ in range(args.warmup):
        update()
    rows: dict[str, list[float]] = {}
    totals = []
    for _ in range(args.iters):
        phases.clear()
        t = time.perf_counter()
        update()
        total = time.perf_counter() - t
        totals.append(total)
        for name, sec in phases.items():
            rows.setdefault(name, []).append(sec)
        # what no phase covers: the main backward pass, zero_grad, the finiteness check, Python
        rows.setdefault("backward and the rest", []).append(total - sum(phases.values()))
    median_total = statistics.median(totals)
    table = {name: {"sec": statistics.median(v), "share": statistics.median(v) / median_total} for name, v in rows.items()}

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        update()
    ops = [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1000, "calls": e.count}
           for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[: args.top]]

    print(f"{args.preset} {args.obs}, batch {args.batch}x{args.seq}, horizon {args.horizon}, {args.threads} threads: "
          f"{median_total:.3f} s per update (median of {args.iters})")
    for name, r in sorted(table.items(), key=lambda kv: -kv[1]["sec"]):
        print(f"  {name:20s} {r['sec']:8.3f} s  {100 * r['share']:5.1f}%")
    print("top operators (self CPU): " + ", ".join(f"{o['op']} {o['self_cpu_ms']:.0f} ms/{o['calls']}" for o in ops[:8]))
    suffix = ("_compiled" if args.compile else "") + ("_bf16" if args.precision == "bfloat16" else "")
    out = args.out or ROOT / "benchmarks" / "results" / f"profile_update_{args.preset}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "profile_update", "preset": args.preset, "obs": args.obs, "batch": args.batch, "seq": args.seq,
        "horizon": args.horizon, "threads": args.threads, "intrinsic": args.intrinsic, "compile": args.compile,
        "precision": args.precision, "params": params,
        "sec_per_update_median": median_total, "phases": table, "top_ops": ops, "torch": torch.__version__,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
