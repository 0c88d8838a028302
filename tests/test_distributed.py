"""Data-parallel learner: two gloo ranks on different batches stay identical (DDP), and a torchrun recipe run."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp
from tensordict import TensorDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torchrl_dreamerxp.modules import Actor, TwoHotHead, WorldModel  # noqa: E402
from torchrl_dreamerxp.training import Learner  # noqa: E402
from torchrl_dreamerxp.training.distributed import init_distributed  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch(seed, B=2, T=6):
    g = torch.Generator().manual_seed(seed)
    return TensorDict({
        "observation": torch.randn(B, T, 3, generator=g), "prev_action": torch.eye(2)[torch.randint(2, (B, T), generator=g)],
        "reward": torch.randn(B, T, generator=g), "is_first": torch.zeros(B, T, dtype=torch.bool),
        "is_terminal": torch.zeros(B, T, dtype=torch.bool), "is_last": torch.zeros(B, T, dtype=torch.bool),
        "deter": torch.zeros(B, T, 16), "stoch": torch.zeros(B, T, 4, 4)}, [B, T])


def rank_main(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    torch.manual_seed(100 + rank)  # different initial weights: DDP must broadcast rank 0's
    wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
    learner = Learner(wm, Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1),
                      TwoHotHead(wm.rssm.feature_dim(), 8, 1), horizon=3, lr=1e-3, warmup=0)
    learner.enable_data_parallel(ctx)
    start = torch.cat([p.detach().flatten() for g in learner.optimizer.param_groups for p in g["params"]]).clone()
    for step in range(3):
        metrics, _ = learner.update(batch(seed=10 * step + rank))  # each rank its own data
        assert metrics["skipped"] == 0.0
    flat = (lambda: torch.cat([p.detach().flatten() for g in learner.optimizer.param_groups for p in g["params"]]).clone())
    params = flat()
    # a non-finite loss on rank 1 only: both ranks skip the step (agreed), nothing changes, and DDP keeps going
    bad = batch(seed=99 + rank)
    if rank == 1:
        bad["observation"][0, 3, 0] = float("nan")  # a trained step (step 0 is the replay context)
    skipped = learner.update(bad)[0]["skipped"]
    unchanged = torch.equal(flat(), params)
    after = learner.update(batch(seed=50 + rank))[0]["skipped"]
    torch.save({"start": start, "params": params, "keys": sorted(learner.state_dict()), "skipped": skipped,
                "unchanged": unchanged, "after": after, "final": flat()}, f"{out_dir}/rank{rank}.pt")
    ctx.close()


def test_ddp_ranks_keep_identical_parameters(tmp_path):
    mp.spawn(rank_main, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert torch.equal(r0["start"], r1["start"])  # rank 0's initial weights reached rank 1
    assert torch.equal(r0["params"], r1["params"])  # same averaged gradients, same steps
    assert not torch.equal(r0["params"], r0["start"])  # and they did train
    assert not any(k.startswith("_ddp") for k in r0["keys"])  # checkpoints keep single-process keys
    assert r0["skipped"] == r1["skipped"] == 1.0 and r0["unchanged"] and r1["unchanged"]
    assert r0["after"] == r1["after"] == 0.0 and torch.equal(r0["final"], r1["final"])


def test_torchrun_recipe_run_and_resume(tmp_path):
    run_dir = tmp_path / "run"
    common = ["env=gym/CartPole-v1", "model=tiny", "batch_size=2", "batch_length=8", "train_ratio=16",
              "frames_per_batch=8", "prefill=48", "logger.mode=disabled", "progress=false", "eval.episodes=1",
              "agent.horizon=3", "eval.every=80", "checkpoint_every=80", f"run_dir={run_dir}", "threads=1"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(free_port()),
                str(ROOT / "recipes" / "train.py")]
    proc = subprocess.run([*torchrun, *common, "steps=160"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = json.loads((run_dir / "done").read_text())
    # 160 env steps over 2 ranks (80 each); (160 - 48)·16 / (2·8) = 112 updates, each on 1 + 1 sequences
    assert done["env_steps"] == 160 and done["updates"] == 112 and done["world_size"] == 2
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_000000080", "step_000000160"]
    (run_dir / "done").unlink()
    proc = subprocess.run([*torchrun, *common, "steps=240", "resume=true"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (run_dir / "eval.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [80, 160, 240]
    assert json.loads((run_dir / "done").read_text())["updates"] == (240 - 48) * 16 // 16
