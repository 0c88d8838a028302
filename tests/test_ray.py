"""Collection on Ray (``collector.backend=ray``): a local Ray cluster, two workers, the tiny preset."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_dreamerxp.modules import DreamerPolicy
from torchrl_dreamerxp.replay import LaneWriter
from torchrl_dreamerxp.training.ray_collection import make_ray_collector
from torchrl_dreamerxp.training.replay_snapshot import load_replay

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_starting_ray_keeps_the_runs_graceful_stop():
    # ray.init installs its own SIGTERM handler; a run on collector.backend=ray would then die on SIGTERM
    # without its checkpoint. A fresh process: the module's cluster is already up, where init_ray does nothing
    script = (
        "import os, signal\n"
        "from torchrl_dreamerxp.training.graceful_stop import GracefulStop\n"
        "from torchrl_dreamerxp.training.ray_collection import init_ray\n"
        "with GracefulStop() as stop:\n"
        "    ours = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}\n"
        "    init_ray()\n"
        "    assert {s: signal.getsignal(s) for s in ours} == ours, signal.getsignal(signal.SIGTERM)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    assert stop.requested\n"
        "import ray; ray.shutdown()\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "SIGTERM: stopping after the next round's checkpoint" in out.stdout


@pytest.mark.parametrize("env_name", ["gym/CartPole-v1", "atari/Boxing"])
def test_every_worker_collects_with_the_learners_current_weights(local_ray, env_name):
    # Boxing: a pixel world model, whose channels-last conv weights TorchRL's gloo-based default refuses
    from omegaconf import OmegaConf

    from torchrl_dreamerxp.envs import make_env
    from torchrl_dreamerxp.training.agent import build_networks, env_shapes

    torch.manual_seed(0)
    wm, actor, _ = build_networks(OmegaConf.load(ROOT / "configs" / "model" / "tiny.yaml"),
                                  env_shapes(make_env(env_name, seed=0)))
    policy = DreamerPolicy(wm, actor)
    collector = make_ray_collector(policy, env_name, workers=2, seed=0, frames_per_batch=32, total_frames=96)
    obs_key = wm.obs_keys[0]
    rounds = 0
    for batch in collector:
        assert batch.shape == (2, 16)  # [workers, steps]: one stream per worker
        assert not torch.equal(batch[obs_key][0], batch[obs_key][1])  # two envs, two seeds
        local = policy.state_dict()
        for remote in collector.remote_collectors:  # the weights this round was collected with
            remote_weights = ray.get(remote.state_dict.remote())["policy_state_dict"]
            assert all(torch.equal(remote_weights[k], v) for k, v in local.items())
        with torch.no_grad():  # "an update": the next round must see it on every worker
            for p in policy.parameters():
                p.add_(1.0)
        rounds += 1
    assert rounds == 3


def test_recipe_with_ray_workers_fills_one_replay_lane_per_worker_and_resumes(local_ray, tmp_path, run_config):
    from torchrl_dreamerxp.recipes import train as recipe

    overrides = ["eval.every=80", "checkpoint_every=80", "collector.backend=ray", "collector.workers=2"]
    run_dir = recipe.run(run_config(tmp_path, *overrides, "steps=160"))
    counters = json.loads((run_dir / "done").read_text())
    assert counters["env_steps"] == 160 and counters["updates"] == 112  # as the local collector
    replay = TensorDictReplayBuffer(storage=LazyTensorStorage(counters["replay_capacity"]),
                                    writer=LaneWriter(2, "lane"))
    load_replay(replay, run_dir / "checkpoints" / "step_000000160" / "replay")
    # every worker's 80 steps reached its own lane (plus one reset row per episode start)
    written = replay._writer.state_dict()["written"]
    assert len(written) == 2 and all(rows >= 80 for rows in written), written
    half = counters["replay_capacity"] // 2
    # each lane starts with its worker's first reset, and the two workers' envs differ (own seeds)
    assert bool(replay[0]["is_first"]) and bool(replay[half]["is_first"])
    assert not torch.equal(replay[0]["observation"], replay[half]["observation"])

    (run_dir / "done").unlink()
    recipe.run(run_config(tmp_path, *overrides, "steps=240", "resume=true"))
    assert json.loads((run_dir / "done").read_text())["updates"] == (240 - 48) * 16 // 16


def test_experiment_runs_its_seeds_as_ray_tasks(local_ray, tmp_path):
    from torchrl_dreamerxp.experiments import Experiment, run_experiment

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        exp = Experiment.from_config(compose("experiments", overrides=["experiment=smoke"]).experiment)
    exp.methods = ["dreamerv3"]
    rows = run_experiment(exp, [0, 1], runs_dir=tmp_path / "runs", results_dir=tmp_path / "results",
                          logger_mode="disabled", launcher="ray")
    assert sorted((r["seed"], r["status"]) for r in rows) == [(0, "done"), (1, "done")]
    for run in exp.runs([0, 1], tmp_path / "runs"):
        assert "# ray task on node" in (run.run_dir / "stdout.log").read_text()
        assert json.loads((run.run_dir / "done").read_text())["env_steps"] == 160
