"""Reliability: divergence is skipped and stops a run cleanly, checkpoints are verified, logging cannot kill a run."""
import copy
import errno
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from torchrl_dreamerxp.training import Learner
from torchrl_dreamerxp.training import checkpoint as ckpt


from torchrl_dreamerxp.recipes import train as train_recipe






@pytest.fixture
def tiny_learner(tiny_world_model):
    """``tiny_learner()``: a seeded learner on the tiny world model."""
    from torchrl_dreamerxp.modules import Actor, TwoHotHead

    def make():
        torch.manual_seed(0)
        wm = tiny_world_model()
        return Learner(wm, Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1),
                       TwoHotHead(wm.rssm.feature_dim(), 8, 1), horizon=3, warmup=0)
    return make


def snapshot(learner):
    return {k: v.clone() for k, v in learner.state_dict().items()}


# -- divergence -------------------------------------------------------------------------------------
def test_nan_loss_skips_the_update_and_changes_nothing(replay_batch, tiny_learner):
    learner = tiny_learner()
    learner.update(replay_batch())  # one good update: optimizer state and the return EMA exist
    before = snapshot(learner)
    opt_before = copy.deepcopy(learner.optimizer.state_dict())  # state_dict holds live tensors: copy them
    bad = replay_batch()
    bad["observation"][0, 3] = float("nan")
    out, feedback = learner.update(bad)
    assert out["skipped"] == 1.0 and feedback is None
    after = learner.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # parameters, slow critic, return EMA
    opt_after = learner.optimizer.state_dict()
    for key, state in opt_before["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_after["state"][key][name])), name
    assert learner.update(replay_batch())[0]["skipped"] == 0.0  # and training goes on


def test_a_finite_loss_explosion_is_skipped_like_a_nonfinite_one(replay_batch, tiny_learner):
    learner = tiny_learner()
    learner.max_loss = 1e6  # the recipe's default (max_loss)
    before = snapshot(learner)

    def explode(module, inputs, out):
        out.set("loss_model_reward", out["loss_model_reward"] * 1e10)
    handle = learner.loss.register_forward_hook(explode)
    out, feedback = learner.update(replay_batch())
    handle.remove()
    assert out["skipped"] == 1.0 and 1e6 < out["loss"] < float("inf") and feedback is None
    assert all(torch.equal(before[k], v) for k, v in learner.state_dict().items())
    assert learner.update(replay_batch())[0]["skipped"] == 0.0


def test_nan_gradient_with_a_finite_loss_is_skipped_too(replay_batch, tiny_learner):
    learner = tiny_learner()
    before = snapshot(learner)
    param = next(learner.actor.parameters())
    handle = param.register_hook(lambda g: g * float("nan"))
    out, _ = learner.update(replay_batch())
    handle.remove()
    assert out["skipped"] == 1.0 and torch.isfinite(torch.tensor(out["loss"]))
    assert all(torch.equal(before[k], v) for k, v in learner.state_dict().items())


def test_run_stops_after_max_nonfinite_updates_and_keeps_its_last_good_checkpoint(tmp_path, monkeypatch, run_config):
    calls = {"n": 0}
    losses = Learner.losses

    def diverging(self, batch):  # fine for 40 updates, then NaN forever
        calls["n"] += 1
        terms, metrics, feedback = losses(self, batch)
        if calls["n"] > 40:
            terms = {k: v * float("nan") for k, v in terms.items()}
        return terms, metrics, feedback

    monkeypatch.setattr(Learner, "losses", diverging)
    cfg = run_config(tmp_path, "steps=240", "eval.every=1000", "checkpoint_every=80", "max_nonfinite_updates=3")
    with pytest.raises(FloatingPointError, match="3 updates in a row.*step_000000080"):
        train_recipe.run(cfg)
    assert not (tmp_path / "done").exists()
    good = ckpt.latest_checkpoint(tmp_path / "checkpoints")
    # written before its round's updates: (72 − 48)·16 / 16 = 24 updates done
    assert good.name == "step_000000080" and ckpt.read_counters(good)["updates"] == 24
    skipped = [json.loads(line) for line in open(tmp_path / "metrics.jsonl") if "nonfinite" in line]
    assert [m["train/nonfinite_updates"] for m in skipped] == [1, 2, 3]
    # fixed, it resumes from the good checkpoint and finishes
    monkeypatch.setattr(Learner, "losses", losses)
    train_recipe.run(run_config(tmp_path, "steps=240", "eval.every=1000", "checkpoint_every=80", "resume=true"))
    assert json.loads((tmp_path / "done").read_text())["env_steps"] == 240


# -- checkpoints ------------------------------------------------------------------------------------
def small_replay(fill=4):
    from tensordict import TensorDict
    from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

    replay = TensorDictReplayBuffer(storage=LazyTensorStorage(100))
    if fill:
        replay.extend(TensorDict({"x": torch.arange(float(fill))}, [fill]))
    return replay


def save(directory, learner, step, keep=3):
    return ckpt.save_checkpoint(directory, learner, small_replay(), {"env_steps": step}, keep=keep)


def test_only_the_newest_k_checkpoints_are_kept(tmp_path, tiny_learner):
    learner = tiny_learner()
    for step in (10, 20, 30, 40, 50):
        save(tmp_path, learner, step, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000000040", "step_000000050"]


def test_damaged_or_foreign_step_entries_do_not_use_up_checkpoint_keep(tmp_path, tiny_learner):
    learner = tiny_learner()
    save(tmp_path, learner, 10)
    (tmp_path / "step_999999999").mkdir()  # a damaged newest checkpoint: no manifest
    (tmp_path / "step_notes").mkdir()  # a foreign entry
    for step in (20, 30):
        save(tmp_path, learner, step, keep=2)
    # the two newest real checkpoints are kept; the others are left alone and count for nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000000020", "step_000000030", "step_999999999",
                                                          "step_notes"]
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        assert ckpt.latest_checkpoint(tmp_path).name == "step_000000030"


@pytest.mark.parametrize("damage", ["truncate_state", "corrupt_replay", "no_manifest", "missing_file"])
def test_a_damaged_checkpoint_is_reported_and_the_previous_one_used(tmp_path, damage, tiny_learner):
    learner = tiny_learner()
    save(tmp_path, learner, 10)
    newest = save(tmp_path, learner, 20)
    if damage == "truncate_state":
        data = (newest / "state.pt").read_bytes()
        (newest / "state.pt").write_bytes(data[: len(data) // 2])
    elif damage == "corrupt_replay":
        file = newest / "replay" / "storage" / "x.bin"
        file.write_bytes(b"y" * file.stat().st_size)  # same size, other bytes
    elif damage == "no_manifest":  # as if the write stopped before its last file
        (newest / "manifest.json").unlink()
    else:
        (newest / "replay" / "storage" / "x.bin").unlink()
    with pytest.warns(UserWarning, match="skipping checkpoint.*step_000000020"):
        found = ckpt.latest_checkpoint(tmp_path)
    assert found.name == "step_000000010"
    replay = small_replay(fill=0)
    assert ckpt.load_checkpoint(found, tiny_learner(), replay)["env_steps"] == 10
    assert replay[:4]["x"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_full_disk_gives_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, tiny_learner):
    learner = tiny_learner()
    good = save(tmp_path, learner, 10)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", no_space)
    with pytest.raises(OSError, match="No space left on device.*previous checkpoint is intact.*step_000000010"):
        save(tmp_path, learner, 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000000010"]  # no temporary left behind
    ckpt.verify_checkpoint(good)


# -- logging -----------------------------------------------------------------------------------------
def test_a_failing_logger_is_reported_once_and_training_goes_on(tmp_path, monkeypatch, run_config):
    from torchrl.record.loggers.wandb import WandbLogger

    def broken(self, *args, **kwargs):
        raise ConnectionError("wandb backend gone")

    monkeypatch.setattr(WandbLogger, "log_scalar", broken)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dir = train_recipe.run(run_config(tmp_path, "logger.mode=offline", "steps=96", "eval.every=48",
                                          "logger.every=48"))
    failures = [w for w in caught if "a wandb call failed" in str(w.message)]
    assert len(failures) == 1 and "wandb backend gone" in str(failures[0].message)
    assert (run_dir / "done").exists()
    assert len((run_dir / "eval.csv").read_text().splitlines()) == 3  # header + 2 evaluations, nothing lost


def test_logger_none_writes_files_only(tmp_path, run_config):
    run_dir = train_recipe.run(run_config(tmp_path, "logger.mode=none", "steps=64", "eval.every=64"))
    assert (run_dir / "done").exists() and not (run_dir / "wandb").exists()


def test_big_replays_live_on_disk_memory_mapped_and_resume(tmp_path, run_config):
    common = ["eval.every=80", "checkpoint_every=80", "replay_memmap_above=100"]
    run_dir = train_recipe.run(run_config(tmp_path, "steps=80", *common))
    scratch = list((run_dir / "replay_scratch").rglob("*.memmap"))
    assert scratch and sum(p.stat().st_size for p in scratch) > 0  # the storage is files on disk, not RAM
    (run_dir / "done").unlink()
    train_recipe.run(run_config(tmp_path, "steps=160", "resume=true", *common))
    assert json.loads((run_dir / "done").read_text())["env_steps"] == 160


@pytest.mark.parametrize("memmap", [False, True])
def test_an_old_pickled_checkpoint_is_refused_then_upgraded_and_loaded(tmp_path, tiny_learner, memmap):
    import random

    import numpy as np
    from tensordict import TensorDict
    from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictReplayBuffer

    from torchrl_dreamerxp.training.checkpoint_upgrade import upgrade_checkpoint

    def storage(name):
        return LazyMemmapStorage(10, scratch_dir=tmp_path / name) if memmap else LazyTensorStorage(10)
    # the earlier format: a pickled state.pt with the counters and numpy's RNG tuple, TorchRL's replay dumps,
    # and the previous action stored as "action"
    path, learner = tmp_path / "step_000000004", tiny_learner()
    path.mkdir()
    torch.save({"learner": learner.state_dict(), "training": learner.training_state_dict(),
                "counters": {"env_steps": 4, "replay_capacity": 10},
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}},
               path / "state.pt")
    old = TensorDictReplayBuffer(storage=storage("old"))
    old.extend(TensorDict({"action": torch.arange(4.0), "reward": torch.ones(4)}, [4]))
    old.dumps(path / "replay")
    with pytest.raises(ckpt.LegacyCheckpoint, match="checkpoint_upgrade"):
        ckpt.read_counters(path)
    upgrade_checkpoint(path)
    ckpt.verify_checkpoint(path)
    replay = TensorDictReplayBuffer(storage=storage("new"))
    assert ckpt.load_checkpoint(path, tiny_learner(), replay) == {"env_steps": 4, "replay_capacity": 10}
    assert "prev_action" in replay[:4].keys() and "action" not in replay[:4].keys()
    replay.extend(TensorDict({"prev_action": torch.full((2,), 9.0), "reward": torch.ones(2)}, [2]))  # new rows fit
    assert replay[:6]["prev_action"].tolist() == [0.0, 1.0, 2.0, 3.0, 9.0, 9.0]


def test_a_learner_saved_before_the_objective_was_one_loss_module_loads(tiny_learner):
    learner = tiny_learner()
    # the old state dict named the objective's parts at the top level: world_model_loss.*, actor_loss.*, ...
    old = {k.removeprefix("loss."): v for k, v in learner.state_dict().items()}
    assert any(k.startswith("actor_loss.") for k in old) and not any(k.startswith("loss.") for k in old)
    restored = tiny_learner()
    with torch.no_grad():
        for p in restored.parameters():
            p.add_(1.0)
    restored.load_state_dict(old)  # strict: every key found
    assert all(torch.equal(a, b) for a, b in zip(learner.state_dict().values(), restored.state_dict().values()))


def test_a_planted_pickle_in_any_file_of_a_checkpoint_is_refused_and_never_run(tmp_path, tiny_learner):
    import os
    import pickle

    marker = tmp_path / "pwned"

    class Payload:  # unpickling it would create the marker file
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    good = save(tmp_path / "checkpoints", tiny_learner(), 10)
    files = sorted(p.relative_to(good) for p in good.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert {"state.pt", "counters.json", "replay/sampler.pt", "replay/storage.json", "replay/writer.json",
            "replay/storage/x.bin"} <= {str(f) for f in files}
    for name in files:
        planted = tmp_path / f"planted_{str(name).replace('/', '_')}"
        shutil.copytree(good, planted)
        (planted / name).write_bytes(pickle.dumps(Payload()))
        # whoever plants the file can rewrite the manifest too: it passes verification
        manifest = json.loads((planted / "manifest.json").read_text())
        manifest[str(name)] = {"bytes": (planted / name).stat().st_size, "sha1": ckpt._digest(planted / name)}
        (planted / "manifest.json").write_text(json.dumps(manifest))
        ckpt.verify_checkpoint(planted)
        with pytest.raises((ckpt.UnsafeCheckpoint, ckpt.CorruptCheckpoint)) as err:
            ckpt.load_checkpoint(planted, tiny_learner(), small_replay(fill=0))
        assert str(planted) in str(err.value), err.value
        if name.suffix == ".pt":
            assert isinstance(err.value, ckpt.UnsafeCheckpoint) and "could run code" in str(err.value)
        assert not marker.exists(), f"loading a planted {name} ran its code"


def test_resume_truncates_the_run_logs_crash_safely_and_skips_a_torn_row(tmp_path, run_config, monkeypatch):
    from torchrl_dreamerxp.training import logging as run_logging

    run_dir = train_recipe.run(run_config(tmp_path, "steps=160", "eval.every=40", "checkpoint_every=80"))
    (run_dir / "done").unlink()
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"env_step": 170, "train/lo')  # a kill in the middle of a row
    eval_rows = (run_dir / "eval.csv").read_text()
    # a kill while the resume rewrites the logs: the old files stay whole
    real_replace = run_logging.os.replace

    def killed_before_rename(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_logging.os, "replace", killed_before_rename)
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning, match="torn by a crash"):
        train_recipe.run(run_config(tmp_path, "steps=160", "eval.every=40", "checkpoint_every=80", "resume=true"))
    assert (run_dir / "eval.csv").read_text() == eval_rows
    monkeypatch.setattr(run_logging.os, "replace", real_replace)
    with pytest.warns(UserWarning, match="skipped 1 unreadable row"):
        train_recipe.run(run_config(tmp_path, "steps=160", "eval.every=40", "checkpoint_every=80", "resume=true"))
    steps = [json.loads(line)["env_step"] for line in open(run_dir / "metrics.jsonl")]  # every row reads
    assert steps == sorted(steps) and max(steps) <= 160
    assert [r.split(",")[0] for r in (run_dir / "eval.csv").read_text().splitlines()[1:]] == ["40", "80", "120", "160"]


@pytest.fixture
def small_disk(tmp_path):
    """A real 5 MB file system (tmpfs), mounted for the test; skipped where mounting is not allowed."""
    import os
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root (and a container that allows mount)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_real_disk_while_checkpointing_is_a_clear_error(small_disk, tiny_learner, monkeypatch):
    learner = tiny_learner()
    directory = small_disk / "checkpoints"
    good = save(directory, learner, 10)
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 64 * 1024))  # 64 kB left
    with pytest.raises(OSError, match=r"needs .* MB at .*, 0\.\d MB are free.*previous checkpoint is intact"):
        save(directory, learner, 20)  # refused before writing: the size is known
    # the check passed (or wrong), the write itself runs out of space: the same clear error, nothing left behind
    monkeypatch.setattr(ckpt, "require_free_space", lambda *args, **kwargs: None)
    with pytest.raises(OSError, match="could not write the checkpoint of env step 20.*previous checkpoint is intact"):
        save(directory, learner, 20)
    assert sorted(p.name for p in directory.iterdir()) == ["step_000000010"]  # no .tmp_ folder on the full disk
    ckpt.verify_checkpoint(good)


def test_a_memory_mapped_replay_too_big_for_the_disk_is_a_clear_error_not_sigbus(small_disk):
    import subprocess
    import sys

    script = f"""
import torch
from tensordict import TensorDict
from torchrl.data import LazyMemmapStorage, TensorDictReplayBuffer
from torchrl_dreamerxp.modules import WorldModel
from torchrl_dreamerxp.training import RunState, extend_replay
wm = WorldModel(action_dim=2, obs_dim=64, deter=256, hidden=8, classes=4, stoch=4, units=8, blocks=4)
replay = TensorDictReplayBuffer(storage=LazyMemmapStorage(20000, scratch_dir="{small_disk}/replay"))
batch = TensorDict({{"observation": torch.zeros(3, 64), "action": torch.zeros(3, 2),
    "is_first": torch.tensor([[True], [False], [False]]),
    "next": {{"observation": torch.ones(3, 64), "reward": torch.ones(3, 1),
             "terminated": torch.zeros(3, 1, dtype=torch.bool), "done": torch.zeros(3, 1, dtype=torch.bool),
             "episode_reward": torch.zeros(3, 1)}}}}, [3])
for _ in range(10000):  # 20000 rows of ~1.4 kB: 28 MB, on a 5 MB disk
    extend_replay(replay, batch, RunState(), wm)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])  # an exception, not a signal (SIGBUS: -7)
    assert "DiskSpaceError" in out.stderr and "the memory-mapped replay (20000 steps) needs" in out.stderr


def test_an_older_eval_csv_gets_the_new_columns_at_a_resume(tmp_path):
    from torchrl_dreamerxp.training.logging import EVAL_HEADER, _truncate_after

    path = tmp_path / "eval.csv"
    path.write_text("env_step,eval_return\n100,5.0\n200,7.0\n300,9.0\n")
    _truncate_after(path, 300, header=True, action_repeat=4)
    assert path.read_text() == EVAL_HEADER + "100,400,5.0,,\n200,800,7.0,,\n"
