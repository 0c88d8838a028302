"""Kill and resume: a resumed run restores exactly what its checkpoint saved and redoes the same updates."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torchrl_dreamerxp.training import Learner
from torchrl_dreamerxp.training import checkpointer
from torchrl_dreamerxp.training.checkpoint import fingerprint

from torchrl_dreamerxp.recipes import train as train_recipe

ROOT = Path(__file__).resolve().parents[1]





def test_resume_restores_every_part_and_redoes_the_same_updates(tmp_path, monkeypatch, run_config):
    """xp=full: prioritized sampler state and the λ scheduler ride along with model, optimizers, replay, RNG."""
    updates, saved, loaded = [], {}, {}
    update, save, load = Learner.update, checkpointer.save_checkpoint, checkpointer.load_checkpoint

    def recording_update(self, batch):
        out = update(self, batch)
        updates.append(out[0])  # the metrics
        return out

    def recording_save(directory, learner, replay, counters, keep=3, collection=None):
        saved[counters["env_steps"]] = fingerprint(learner, replay)
        return save(directory, learner, replay, counters, keep=keep, collection=collection)

    def recording_load(path, learner, replay, extras=None):
        counters = load(path, learner, replay, extras)
        loaded[counters["env_steps"]] = fingerprint(learner, replay)
        return counters

    monkeypatch.setattr(Learner, "update", recording_update)
    monkeypatch.setattr(checkpointer, "save_checkpoint", recording_save)
    monkeypatch.setattr(checkpointer, "load_checkpoint", recording_load)
    common = ["xp=full", "xp.scheduler.exponential.decay_steps=20", "steps=160", "checkpoint_every=80",
              "eval.every=80", "logger.every=8"]
    uninterrupted = tmp_path / "a"
    train_recipe.run(run_config(uninterrupted, *common))
    reference = list(updates)
    assert len(reference) == (160 - 48) * 16 // 16

    # the same run "killed" right after its step-80 checkpoint, then resumed
    crashed = tmp_path / "b"
    shutil.copytree(uninterrupted, crashed)
    shutil.rmtree(crashed / "checkpoints" / "step_000000160")
    (crashed / "done").unlink()
    updates.clear()
    train_recipe.run(run_config(crashed, *common, "resume=true"))

    # every part is what it was when the checkpoint was written (no second copy of the replay either)
    assert loaded[80] == saved[80]
    # the checkpoint came before round 80's updates: (72 − 48)·16/16 = 24 were done, the round has 8 more
    assert updates[:8] == reference[24:32]
    evals = [line.split(",")[0] for line in (crashed / "eval.csv").read_text().splitlines()[1:]]
    assert evals == ["80", "160"]
    steps = [json.loads(line)["env_step"] for line in open(crashed / "metrics.jsonl")]
    assert steps == sorted(steps)
    assert json.loads((crashed / "done").read_text())["updates"] == len(reference)


def test_interrupted_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch, run_config):
    from torchrl_dreamerxp.training import checkpoint

    common = ["steps=160", "checkpoint_every=80", "eval.every=80"]
    save_replay = checkpoint.save_replay

    def dying_save_replay(replay, path):  # the process dies halfway through writing the step-160 checkpoint
        if "step_000000160" in str(path):
            Path(path).mkdir(parents=True)
            (Path(path) / "partial").write_bytes(b"\0" * 10)
            raise KeyboardInterrupt
        return save_replay(replay, path)

    monkeypatch.setattr(checkpoint, "save_replay", dying_save_replay)
    with pytest.raises(KeyboardInterrupt):
        train_recipe.run(run_config(tmp_path, *common))
    assert (tmp_path / "checkpoints" / ".tmp_step_000000160").exists()
    monkeypatch.setattr(checkpoint, "save_replay", save_replay)
    train_recipe.run(run_config(tmp_path, *common, "resume=true"))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000000080", "step_000000160"]
    assert json.loads((tmp_path / "done").read_text())["env_steps"] == 160


def test_sigkill_at_a_random_moment_then_resume(tmp_path, fast_overrides):
    run_dir = tmp_path / "run"
    args = [sys.executable, str(ROOT / "recipes" / "train.py"), *fast_overrides, f"run_dir={run_dir}", "steps=240",
            "checkpoint_every=80", "eval.every=80"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list((run_dir / "checkpoints").glob("step_*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 2.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "done").exists(), "the run ended before it was killed: make it longer"
    resumed = subprocess.run([*args, "resume=true"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    counters = json.loads((run_dir / "done").read_text())
    assert counters["env_steps"] == 240 and counters["updates"] == (240 - 48) * 16 // 16
    evals = [int(line.split(",")[0]) for line in (run_dir / "eval.csv").read_text().splitlines()[1:]]
    assert evals == [80, 160, 240]  # each evaluation exactly once
    steps = [json.loads(line)["env_step"] for line in open(run_dir / "metrics.jsonl")]
    assert steps == sorted(steps)
    assert not list((run_dir / "checkpoints").glob(".tmp_*"))


def test_sigterm_checkpoints_the_next_round_and_a_resume_continues_from_it(tmp_path, fast_overrides):
    # no scheduled checkpoint before the end: the only one a resume can use is the one SIGTERM asked for
    run_dir = tmp_path / "run"
    args = [sys.executable, str(ROOT / "recipes" / "train.py"), *fast_overrides, f"run_dir={run_dir}", "steps=240",
            "checkpoint_every=100000", "eval.every=80"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    status, deadline = run_dir / "progress.json", time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (
            status.exists() and json.loads(status.read_text())["env_steps"] >= 96):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:]
    assert not (run_dir / "done").exists(), "the run ended before the signal: make it longer"
    stopped_at = int(out.split("stopped by SIGTERM at env step ")[1].split()[0])
    assert 96 <= stopped_at < 240
    assert [p.name for p in (run_dir / "checkpoints").glob("step_*")] == [f"step_{stopped_at:09d}"]
    resumed = subprocess.run([*args, "resume=true"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {run_dir / 'checkpoints' / f'step_{stopped_at:09d}'}" in resumed.stdout
    counters = json.loads((run_dir / "done").read_text())
    assert counters["env_steps"] == 240 and counters["updates"] == (240 - 48) * 16 // 16  # no update lost or redone
    evals = [int(line.split(",")[0]) for line in (run_dir / "eval.csv").read_text().splitlines()[1:]]
    assert evals == [80, 160, 240]


def test_a_signal_while_the_run_builds_stops_it_at_its_first_round_checkpointed(tmp_path, monkeypatch, run_config):
    # SIGTERM before the loop (building, compiling, the random-policy evaluation): handled, not fatal
    from torchrl_dreamerxp.training.graceful_stop import RunStopped

    build_agent = train_recipe.build_agent

    def build_then_signal(*args, **kwargs):
        built = build_agent(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return built

    monkeypatch.setattr(train_recipe, "build_agent", build_then_signal)
    run_dir, before = tmp_path / "run", signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunStopped) as stopped:
        train_recipe.run(run_config(run_dir, "steps=160", "frames_per_batch=16"))
    assert stopped.value.code == 128 + signal.SIGTERM and stopped.value.env_steps == 16
    assert [p.name for p in (run_dir / "checkpoints").glob("step_*")] == ["step_000000016"]
    assert signal.getsignal(signal.SIGTERM) is before and not (run_dir / "done").exists()  # handler given back


def test_resume_keeps_every_evaluation_when_intervals_do_not_align_with_rounds(tmp_path, run_config):
    # rounds of 16 env steps, evaluations and checkpoints every 40: the uninterrupted run evaluates at
    # 48, 80, 128, 160; a resume from the step-48 checkpoint must evaluate at 48 again, not jump to 80
    common = ["frames_per_batch=16", "steps=160", "eval.every=40", "checkpoint_every=40", "logger.every=40",
              "checkpoint_keep=10"]
    uninterrupted = tmp_path / "a"
    train_recipe.run(run_config(uninterrupted, *common))
    crashed = tmp_path / "b"
    shutil.copytree(uninterrupted, crashed)
    for later in ("step_000000080", "step_000000128", "step_000000160"):
        shutil.rmtree(crashed / "checkpoints" / later, ignore_errors=True)
    assert sorted(p.name for p in (crashed / "checkpoints").iterdir()) == ["step_000000048"]
    (crashed / "done").unlink()
    train_recipe.run(run_config(crashed, *common, "resume=true"))

    def eval_steps(run_dir):
        return [line.split(",")[0] for line in (run_dir / "eval.csv").read_text().splitlines()[1:]]

    def logged_steps(run_dir):
        return [json.loads(line)["env_step"] for line in open(run_dir / "metrics.jsonl") if "perf/" in line]

    assert eval_steps(uninterrupted) == eval_steps(crashed) == ["48", "80", "128", "160"]
    assert logged_steps(uninterrupted) == logged_steps(crashed)


def test_an_interrupted_run_resumes_update_for_update(tmp_path, monkeypatch, run_config):
    """One CartPole env: stopped right after a checkpoint mid-episode, resumed, the run gives the same losses
    and evaluation returns as the run that was never stopped (the env is replayed to where it was)."""
    common = ["steps=192", "checkpoint_every=80", "eval.every=64", "eval.episodes=2", "logger.every=32"]
    losses = []
    update = Learner.update

    def recording_update(self, batch):
        out = update(self, batch)
        losses.append(sum(float(v) for k, v in out[0].items() if k.startswith("loss_")))
        return out

    monkeypatch.setattr(Learner, "update", recording_update)
    train_recipe.run(run_config(tmp_path / "whole", *common))
    whole, losses[:] = list(losses), []

    save = checkpointer.Checkpointer.save

    def save_then_stop(self, *args, **kwargs):
        size = save(self, *args, **kwargs)
        raise KeyboardInterrupt  # stopped after the checkpoint, before its round's updates
    monkeypatch.setattr(checkpointer.Checkpointer, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_recipe.run(run_config(tmp_path / "stopped", *common))
    monkeypatch.setattr(checkpointer.Checkpointer, "save", save)
    before = len(losses)
    train_recipe.run(run_config(tmp_path / "stopped", *common, "resume=true"))
    assert before > 0 and len(losses) == len(whole)
    assert losses == whole  # update for update, to the last bit
    evals = [(tmp_path / name / "eval.csv").read_text() for name in ("whole", "stopped")]
    assert evals[0] == evals[1] and evals[0].count("\n") >= 4


def test_precision_auto_resumes_a_run_in_the_precision_it_started_with(tmp_path, monkeypatch, run_config, capsys):
    import torchrl_dreamerxp.training.precision as precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})  # auto picks bfloat16 here
    run_dir = tmp_path / "run"
    train_recipe.run(run_config(run_dir, "steps=64", "checkpoint_every=32", "precision=float32"))
    (run_dir / "done").unlink()
    capsys.readouterr()
    train_recipe.run(run_config(run_dir, "steps=96", "checkpoint_every=32", "resume=true", "precision=auto"))
    assert "keeps its recorded precision=float32" in capsys.readouterr().out
    assert "precision: float32" in (run_dir / "config.yaml").read_text()
    (run_dir / "done").unlink()
    with pytest.raises(checkpointer.ResumeError, match="precision: 'float32' -> 'bfloat16'"):  # asked for: refused
        train_recipe.run(run_config(run_dir, "steps=128", "resume=true", "precision=bfloat16"))
    # a run recorded before the precision key existed computed in float32, and goes on in it
    saved = run_dir / "config.yaml"
    saved.write_text("".join(line for line in saved.read_text().splitlines(True) if not line.startswith("precision:")))
    capsys.readouterr()
    train_recipe.run(run_config(run_dir, "steps=128", "resume=true", "precision=auto"))
    assert "keeps its recorded precision=float32" in capsys.readouterr().out
    assert "precision: float32" in saved.read_text()
