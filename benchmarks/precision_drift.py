"""float32 against bfloat16 on a trained agent: the loss terms and gradients of updates from a run's checkpoint.

    python benchmarks/precision_drift.py --run-dir runs/learning_cartpole_float32/seed2 [--batches 8]

``tests/test_precision.py`` pins bf16 against float32 on freshly initialised networks, whose two-hot heads
output zeros. This loads a trained run instead (networks, return normalizer and replay from its newest
checkpoint), draws the same replayed batches for both precisions and reports, per batch:

- every loss term's relative difference, bf16 against float32 on the same batch and the same random draws;
- each network's gradient cosine similarity, bf16 against float32 (same draws);
- the same cosine between two float32 computations with different draws of imagination: the sampling noise of
  one update, the scale against which bf16's deviation is small or not;
- across batches, the mean pairwise cosine of the bf16 errors (bf16 minus float32 gradient): near 0 when the
  error is noise that averages out over updates, clearly above 0 when it is a bias that accumulates.

Writes a JSON (``--out``); each batch starts from the checkpoint's state (the actor loss moves its return
normalizer).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from torchrl_dreamerxp.envs import make_env  # noqa: E402
from torchrl_dreamerxp.replay import ContiguousSliceSampler  # noqa: E402
from torchrl_dreamerxp.training.agent import build_learner, build_networks, env_shapes  # noqa: E402
from torchrl_dreamerxp.training.checkpoint import latest_checkpoint, read_counters  # noqa: E402
from torchrl_dreamerxp.training.replay_snapshot import load_replay, safe_load  # noqa: E402

NETWORKS = ("world_model", "actor", "critic")


def learner_in(cfg, shapes, precision: str):
    """The run's learner in ``precision`` (eager); :func:`terms_and_grads` loads the checkpoint's state."""
    cfg = copy.deepcopy(cfg)
    cfg.precision, cfg.compile = precision, False
    return build_learner(cfg, *build_networks(cfg.model, shapes))


def terms_and_grads(learner, batch, draw_seed: int, state: dict | None = None):
    """Loss terms and the flattened gradient of their sum per network (from ``state`` when given)."""
    if state is not None:
        learner.load_state_dict(state)  # the actor loss moved the return normalizer on the previous batch
    torch.manual_seed(draw_seed)
    terms, _, _ = learner.losses(batch)
    nets = {name: list(getattr(learner, name).parameters()) for name in NETWORKS}
    flat = [p for ps in nets.values() for p in ps]
    grads = torch.autograd.grad(sum(terms.values()), flat, allow_unused=True)
    out, i = {}, 0
    for name, ps in nets.items():
        g = [torch.zeros_like(p) if x is None else x for p, x in zip(ps, grads[i:i + len(ps)])]
        i += len(ps)
        out[name] = torch.cat([x.flatten() for x in g])
    return {k: float(v.detach()) for k, v in terms.items()}, out


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "precision_drift.json")
    args = p.parse_args(argv)
    if args.batches < 1:
        p.error(f"--batches must be at least 1, got {args.batches}")
    torch.set_num_threads(args.threads)
    cfg = OmegaConf.load(args.run_dir / "config.yaml")
    # what this rebuilds: the DreamerV3 networks and one replay lane, sampled as contiguous slices
    if cfg.xp.intrinsic:
        raise SystemExit(f"{args.run_dir}: an xp.intrinsic run (its reward ensemble is not rebuilt here)")
    if (cfg.get("envs") or 1) > 1 or cfg.collector.backend != "local":
        raise SystemExit(f"{args.run_dir}: a replay of several lanes (envs={cfg.envs}, collector.backend="
                         f"{cfg.collector.backend}); this samples one")
    checkpoint = latest_checkpoint(args.run_dir / "checkpoints")
    if checkpoint is None:
        raise SystemExit(f"{args.run_dir / 'checkpoints'} holds no checkpoint")
    state = safe_load(checkpoint / "state.pt")["learner"]
    shapes = env_shapes(make_env(cfg.env, **cfg.get("env_kwargs", {})))
    slice_len = cfg.batch_length + cfg.replay_context
    replay = TensorDictReplayBuffer(storage=LazyTensorStorage(read_counters(checkpoint)["replay_capacity"]),
                                    sampler=ContiguousSliceSampler(slice_len))
    load_replay(replay, checkpoint / "replay")
    learners = {precision: learner_in(cfg, shapes, precision) for precision in ("float32", "bfloat16")}
    rows, errors = [], {n: [] for n in NETWORKS}
    for k in range(args.batches):
        torch.manual_seed(1000 + k)
        batch = replay.sample(cfg.batch_size * slice_len).reshape(cfg.batch_size, slice_len)
        f32, g32 = terms_and_grads(learners["float32"], batch, k, state)
        f32b, g32b = terms_and_grads(learners["float32"], batch, k + 10_000, state)  # other draws
        bf16, g16 = terms_and_grads(learners["bfloat16"], batch, k, state)
        for n in NETWORKS:
            errors[n].append(g16[n] - g32[n])
        rows.append({
            "terms_float32": f32, "terms_bfloat16": bf16,
            "term_rel_diff": {t: abs(bf16[t] - f32[t]) / max(abs(f32[t]), 1e-8) for t in f32},
            "grad_cosine_bf16_vs_f32": {n: cosine(g16[n], g32[n]) for n in NETWORKS},
            "grad_cosine_f32_other_draws": {n: cosine(g32b[n], g32[n]) for n in NETWORKS},
        })
        print(f"batch {k}: cosine bf16/f32 " + ", ".join(f"{n} {rows[-1]['grad_cosine_bf16_vs_f32'][n]:.4f}"
                                                        for n in NETWORKS)
              + " | f32 other draws " + ", ".join(f"{n} {rows[-1]['grad_cosine_f32_other_draws'][n]:.4f}"
                                                   for n in NETWORKS), flush=True)
    median = {key: {name: statistics.median(r[key][name] for r in rows) for name in rows[0][key]}
              for key in ("term_rel_diff", "grad_cosine_bf16_vs_f32", "grad_cosine_f32_other_draws")}
    median["bf16_error_pairwise_cosine_mean"] = {  # bias (> 0) or noise (about 0) across the batches
        n: statistics.mean(cosine(errors[n][i], errors[n][j]) for i in range(len(rows)) for j in range(i + 1, len(rows)))
        for n in NETWORKS} if len(rows) > 1 else {}
    result = {"benchmark": "precision_drift", "run_dir": str(args.run_dir), "checkpoint": checkpoint.name,
              "env": cfg.env, "model": cfg.model.name, "batches": rows, "median": median,
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "command": "python benchmarks/precision_drift.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(median, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
