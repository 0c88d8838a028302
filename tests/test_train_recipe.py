"""End-to-end smoke runs of recipes/train.py with the tiny preset: files, checkpoints, resume, pixels."""
import csv
import json
import shutil

import pytest

from torchrl_dreamerxp.recipes import train as train_recipe






def read_eval(run_dir):
    return list(csv.DictReader(open(run_dir / "eval.csv")))


def test_vector_run_writes_the_run_directory_and_resumes(tmp_path, run_config):
    cfg = run_config(tmp_path, "env=gym/CartPole-v1", "steps=160", "eval.every=80", "checkpoint_every=80",
                     "eval.episodes=3")
    run_dir = train_recipe.run(cfg)
    for name in ("config.yaml", "eval.csv", "metrics.jsonl", "returns.png", "done"):
        assert (run_dir / name).exists(), name
    rows = read_eval(run_dir)
    assert [int(r["env_step"]) for r in rows] == [80, 160] and all(float(r["eval_return"]) > 0 for r in rows)
    for row in rows:  # every episode's return, their mean and standard deviation
        episodes = [float(x) for x in row["eval_returns"].split(";")]
        mean = sum(episodes) / 3
        assert len(episodes) == 3 and float(row["eval_return"]) == pytest.approx(mean)
        assert float(row["eval_std"]) == pytest.approx((sum((x - mean) ** 2 for x in episodes) / 3) ** 0.5)
    counters = json.loads((run_dir / "done").read_text())
    # (160 - 48) env steps after prefill · 16 / (2·8) replayed per update = 112 updates
    assert counters["env_steps"] == 160 and counters["updates"] == 112
    metrics = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    assert any("train/loss_model_reconstruction" in m for m in metrics) or counters["updates"] > 0
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_000000080", "step_000000160"]

    # a crash after step 160 that lost its last checkpoint: resume redoes 80 -> 240 with a larger budget,
    # keeps the eval history up to the checkpoint and writes no row twice
    (run_dir / "done").unlink()
    shutil.rmtree(run_dir / "checkpoints" / "step_000000160")
    cfg = run_config(tmp_path, "env=gym/CartPole-v1", "steps=240", "eval.every=80", "checkpoint_every=80", "resume=true",
                     "eval.episodes=3")
    train_recipe.run(cfg)
    assert [int(r["env_step"]) for r in read_eval(run_dir)] == [80, 160, 240]
    assert json.loads((run_dir / "done").read_text())["updates"] == (240 - 48) * 16 // 16
    steps = [json.loads(line)["env_step"] for line in open(run_dir / "metrics.jsonl")]
    assert steps == sorted(steps)


def test_parallel_envs_run_and_resume(tmp_path, run_config):
    # two CartPole envs in worker processes, each writing its own replay lane
    overrides = ["env=gym/CartPole-v1", "envs=2", "eval.every=80", "checkpoint_every=80"]
    run_dir = train_recipe.run(run_config(tmp_path, *overrides, "steps=160"))
    counters = json.loads((run_dir / "done").read_text())
    assert counters["env_steps"] == 160 and counters["updates"] == 112 and counters["episodes"] > 0
    (run_dir / "done").unlink()
    train_recipe.run(run_config(tmp_path, *overrides, "steps=240", "resume=true"))
    assert [int(r["env_step"]) for r in read_eval(run_dir)] == [80, 160, 240]
    assert json.loads((run_dir / "done").read_text())["updates"] == (240 - 48) * 16 // 16


def test_resume_without_checkpoint_starts_fresh_only_when_there_is_nothing_to_lose(tmp_path, run_config, capsys):
    from torchrl_dreamerxp.training.checkpointer import ResumeError

    train_recipe.run(run_config(tmp_path / "new", "steps=64", "eval.every=64", "resume=true"))
    assert "holds no checkpoint yet; starting the run from the beginning" in capsys.readouterr().out
    crashed = tmp_path / "crashed"  # logs of a run that died before its first checkpoint
    crashed.mkdir()
    (crashed / "eval.csv").write_text("env_step,env_frames,eval_return\n999,999,1.0\n")
    with pytest.raises(ResumeError, match="no checkpoint .* can be loaded; nothing was changed(.|\n)*eval.csv"):
        train_recipe.run(run_config(crashed, "steps=64", "eval.every=64", "resume=true"))
    assert (crashed / "eval.csv").read_text().endswith("999,999,1.0\n") and not (crashed / "config.yaml").exists()


def test_resume_with_every_checkpoint_damaged_stops_and_overwrites_nothing(tmp_path, run_config):
    from torchrl_dreamerxp.training.checkpointer import ResumeError

    run_dir = train_recipe.run(run_config(tmp_path, "steps=160", "eval.every=80", "checkpoint_every=80"))
    before = {name: (run_dir / name).read_text() for name in ("eval.csv", "metrics.jsonl", "config.yaml")}
    for checkpoint in (run_dir / "checkpoints").glob("step_*"):
        (checkpoint / "state.pt").write_bytes(b"garbage")
    with pytest.raises(ResumeError) as err:
        train_recipe.run(run_config(tmp_path, "steps=240", "eval.every=80", "checkpoint_every=80", "resume=true"))
    assert "step_000000160: " in str(err.value) and "step_000000080: " in str(err.value)  # each, with its reason
    assert {name: (run_dir / name).read_text() for name in before} == before


def test_resume_refuses_a_changed_env_or_seed_unless_asked(tmp_path, run_config):
    from torchrl_dreamerxp.training.checkpointer import ResumeError

    run_dir = train_recipe.run(run_config(tmp_path, "steps=80", "eval.every=80", "checkpoint_every=80"))
    config = (run_dir / "config.yaml").read_text()
    with pytest.raises(ResumeError, match="seed: 0 -> 1"):
        train_recipe.run(run_config(tmp_path, "steps=96", "eval.every=80", "resume=true", "seed=1"))
    with pytest.raises(ResumeError, match="env: 'gym/CartPole-v1' -> 'gym/Acrobot-v1'"):
        train_recipe.run(run_config(tmp_path, "steps=96", "eval.every=80", "resume=true", "env=gym/Acrobot-v1"))
    assert (run_dir / "config.yaml").read_text() == config
    # steps (to extend the run) and how it reports may change; a key the run's config.yaml lacks (added by a
    # later version of the library) is not a change
    (run_dir / "config.yaml").write_text("".join(line for line in config.splitlines(keepends=True)
                                                 if not line.startswith("max_loss:")))
    train_recipe.run(run_config(tmp_path, "steps=96", "eval.every=96", "resume=true"))
    assert json.loads((run_dir / "done").read_text())["env_steps"] == 96
    # resume_allow_changes=true takes the rest
    train_recipe.run(run_config(tmp_path, "steps=112", "eval.every=96", "resume=true", "seed=1",
                                "resume_allow_changes=true"))
    assert json.loads((run_dir / "done").read_text())["env_steps"] == 112


@pytest.mark.parametrize("overrides", [["xp.replay.score=xp"], ["xp.replay.score=curious", "envs=2"]])
def test_prioritized_replay_run(tmp_path, run_config, overrides):
    cfg = run_config(tmp_path, "env=gym/CartPole-v1", "xp=prioritized", "steps=128", "eval.every=128", "logger.every=64",
                     *overrides)
    run_dir = train_recipe.run(cfg)
    metrics = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    logged = [m for m in metrics if "replay/effective_sample_size" in m]
    assert logged and logged[-1]["replay/trajectories"] > 1 and logged[-1]["replay/nonfinite_errors"] == 0
    assert 0.0 <= logged[-1]["replay/sampled_newest_10pct"] <= 1.0


def test_continuous_vector_run(tmp_path, run_config):
    cfg = run_config(tmp_path, "env=gym/Pendulum-v1", "steps=96", "eval.every=96", "eval.max_steps=50")
    run_dir = train_recipe.run(cfg)
    assert (run_dir / "done").exists()
    assert float(read_eval(run_dir)[-1]["eval_return"]) < 0  # Pendulum returns are negative
    # logger.every (1000) is past the run's end: the training scalars are still logged at its last step
    last = [json.loads(line) for line in open(run_dir / "metrics.jsonl") if "train/loss_model_reward" in line]
    assert [row["env_step"] for row in last] == [96]


@pytest.mark.parametrize("env", ["atari/Boxing", "dmc/cup_catch"])
def test_pixel_smoke(tmp_path, env, run_config):
    cfg = run_config(tmp_path, f"env={env}", "steps=64", "eval.every=64", "eval.max_steps=20", "checkpoint_every=64")
    run_dir = train_recipe.run(cfg)
    assert (run_dir / "done").exists()
    counters = json.loads((run_dir / "done").read_text())
    assert counters["updates"] == 16
    assert (run_dir / "checkpoints" / "step_000000064" / "state.pt").exists()
    videos = list((run_dir / "videos").glob("open_loop_000000064.*"))  # also with logger.mode=disabled
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
    cfg = run_config(tmp_path, f"env={env}", "steps=72", "eval.every=64", "eval.max_steps=20", "checkpoint_every=64", "resume=true")
    train_recipe.run(cfg)
    assert json.loads((run_dir / "done").read_text())["env_steps"] == 72


def test_intrinsic_run_logs_lambda_and_resumes_the_scheduler(tmp_path, run_config):
    common = ["env=gym/Pendulum-v1", "xp=intrinsic", "xp.scheduler.exponential.decay_steps=50", "eval.every=96",
              "eval.max_steps=50", "checkpoint_every=96", "logger.every=48"]
    run_dir = train_recipe.run(run_config(tmp_path, *common, "steps=96"))
    metrics = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    lams = [m["xp/lambda"] for m in metrics if "xp/lambda" in m]
    updates = json.loads((run_dir / "done").read_text())["updates"]
    assert len(lams) == updates == 48  # λ logged at every update
    assert lams == sorted(lams) and 0.5 < lams[-1] < 1.0  # exponential decay of the intrinsic weight
    trained = [m for m in metrics if "train/loss_ensemble" in m]
    assert trained and all(k in trained[-1] for k in ("train/reward_intrinsic", "train/reward_extrinsic", "train/lambda"))
    # resume: the scheduler continues from the checkpoint instead of restarting at lam_start
    (run_dir / "done").unlink()
    train_recipe.run(run_config(tmp_path, *common, "steps=112", "resume=true"))
    lams2 = [json.loads(line)["xp/lambda"] for line in open(run_dir / "metrics.jsonl") if "xp/lambda" in line]
    assert len(lams2) == 64 and lams2[48] > lams[-1]


def test_full_xp_run(tmp_path, run_config):
    cfg = run_config(tmp_path, "env=gym/CartPole-v1", "xp=full", "xp.scheduler.name=return_average", "steps=128",
                 "eval.every=128", "logger.every=64")
    assert cfg.xp.prioritized and cfg.xp.intrinsic and cfg.xp.replay.xp.lambda_r == 0.1 and cfg.xp.ensemble.members == 5
    run_dir = train_recipe.run(cfg)
    metrics = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    assert any("replay/effective_sample_size" in m for m in metrics)
    assert any("train/loss_ensemble" in m for m in metrics)


@pytest.mark.parametrize("override, match", [
    ("xp.ensemble.members=1", "members"), ("xp.window=0", "window"), ("xp.ensemble.mode=big", "mode"),
    ("xp.scheduler.exponential.lam_start=1.5", "lam_start"), ("xp.scheduler.name=cosine", "scheduler"),
    ("xp.scheduler.constant.lam=-0.2", "lam"),
])
def test_bad_intrinsic_settings_fail_before_anything_is_built(tmp_path, override, match, run_config):
    scheduler = ["xp.scheduler.name=constant"] if "constant" in override else []
    cfg = run_config(tmp_path / "run", "env=gym/CartPole-v1", "xp=intrinsic", *scheduler, override)
    with pytest.raises(ValueError, match=match):
        train_recipe.run(cfg)
    assert not (tmp_path / "run").exists()


def test_run_state_reads_the_counters_of_older_checkpoints():
    from torchrl_dreamerxp.training import RunState

    # the counters dict checkpoints held before RunState (same keys; no nonfinite_in_a_row)
    old = {"env_steps": 80, "updates": 24, "episodes": 3, "replay_capacity": 280, "wall_time_s": 12.5,
           "random_return": 21.0, "ratio": {"updates": 24}, "round": {"returns": [17.0]}, "next_eval": 160,
           "next_log": 88, "unscheduled_returns": [17.0]}
    state = RunState.from_state_dict(old)
    assert (state.env_steps, state.updates, state.round_returns, state.next_eval, state.nonfinite_in_a_row) == \
        (80, 24, [17.0], 160, 0)
    assert {k: v for k, v in state.state_dict().items() if k in old} == old
    assert "round" not in state.summary() and state.summary(world_size=2)["world_size"] == 2
