"""Experiments end to end: the smoke experiment, its results store, the report, re-runs, resumes and failures."""
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from torchrl_dreamerxp.experiments import Experiment, ResultsStore, run_experiment
from torchrl_dreamerxp.experiments import runner as runner_module
from torchrl_dreamerxp.experiments.report import load_rows, write_report

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def experiment_config(name):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("experiments", overrides=[f"experiment={name}"]).experiment


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke experiment, 2 named variants x 2 seeds; seed 1 of ``default`` was interrupted before (a
    checkpoint at step 80 of a shorter budget, no done): the experiment extends it."""
    base = tmp_path_factory.mktemp("smoke")
    exp = Experiment.from_config(experiment_config("smoke"))
    runs_dir, results_dir = base / "runs", base / "results"
    interrupted = next(r for r in exp.runs([1], runs_dir) if r.method == "default")
    from torchrl_dreamerxp.recipes import train
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[*interrupted.train_overrides, f"run_dir={interrupted.run_dir}", "steps=80",
                                          "logger.mode=disabled", "progress=false"])
    train.run(cfg)
    (interrupted.run_dir / "done").unlink()  # as if killed after its step-80 checkpoint
    rows = run_experiment(exp, [0, 1], parallel=2, runs_dir=runs_dir, results_dir=results_dir, note="ci smoke",
                          logger_mode="disabled")
    return exp, runs_dir, results_dir, rows, interrupted


def test_store_has_a_row_per_run(smoke):
    exp, _, results_dir, rows, _ = smoke
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
    df = pd.read_csv(results_dir / "smoke" / "runs.csv")
    assert sorted(df["run_id"]) == sorted(r["run_id"] for r in rows)
    assert set(df["method"]) == {"default", "curious_replay"} and set(df["seed"]) == {0, 1}
    assert df["identity"].str.len().eq(12).all() and df["identity"].nunique() == 4  # 2 variants x 2 seeds
    assert df["config_id"].nunique() == 2  # the seeds of a variant share their config
    assert (df["experiment"] == "smoke").all() and (df["note"] == "ci smoke").all()
    assert (df["config.model.name"] == "tiny").all() and (df["env_steps"] == 160).all()
    assert "metric.train/loss_model_reconstruction" in df.columns and df["wall_time_s"].gt(0).all()
    curve = pd.read_csv(results_dir / "smoke" / "curves" / f"{rows[0]['run_id']}.csv")
    assert list(curve["env_step"]) == [80, 160]
    info = json.loads((results_dir / "smoke" / "experiment.json").read_text())
    assert info["description"] == exp.description and info["notes"][0]["note"] == "ci smoke"


def test_interrupted_run_was_resumed_and_new_runs_started_fresh(smoke):
    exp, runs_dir, _, _, interrupted = smoke
    log = (interrupted.run_dir / "stdout.log").read_text()
    assert "resume=true" in log and "resumed from" in log
    assert json.loads((interrupted.run_dir / "done").read_text())["env_steps"] == 160
    fresh = next(r for r in exp.runs([0], runs_dir) if r.method == "curious_replay")
    log = (fresh.run_dir / "stdout.log").read_text()
    assert "resume=false" in log and "resumed from" not in log


def test_report_tables_match_the_store_and_plots_are_pngs(smoke, tmp_path):
    _, _, results_dir, _, _ = smoke
    rows = load_rows(results_dir, "smoke")
    stopped = {**rows[0], "run_id": "stopped-by-sigterm", "status": "stopped"}  # no final result: left out
    report = write_report([*rows, stopped], tmp_path, reps=200, latex=True)
    assert report["left_out"] == {"stopped-by-sigterm": "stopped"}
    df = pd.read_csv(results_dir / "smoke" / "runs.csv")
    finals = pd.read_csv(tmp_path / "finals.csv")
    for _, f in finals.iterrows():
        stored = df[(df["env"] == f["env"]) & (df["method"] == f["method"])]["final_return"]
        assert f["mean"] == pytest.approx(stored.mean()) and f["n"] == len(stored)
        assert f["std"] == pytest.approx(stored.std(ddof=1))
    assert (tmp_path / "finals.md").read_text().startswith("| env | curious_replay | default |")
    assert (tmp_path / "finals.tex").exists() and (tmp_path / "aggregates.md").exists()
    names = {Path(p).name for p in report["plots"]}
    assert {"returns.png", "aggregate.png", "profile.png", "losses_gym_CartPole-v1.png"} <= names
    assert all(Path(p).read_bytes()[:8] == PNG for p in report["plots"])
    with pytest.raises(ValueError, match="no finished run"):
        write_report(rows, tmp_path / "none", methods=["full"])


def test_report_of_run_directories_outside_an_experiment(smoke, tmp_path):
    _, runs_dir, _, _, _ = smoke
    rows = load_rows(runs=str(runs_dir / "smoke" / "*" / "*" / "seed*"))
    assert len(rows) == 4 and {r["method"] for r in rows} == {"default", "curious_replay"}  # from variant.json
    report = write_report(rows, tmp_path, methods=["curious_replay"], reps=100)
    assert [f["method"] for f in report["finals"]] == ["curious_replay"]


def test_rerun_skips_finished_runs(smoke, monkeypatch):
    exp, runs_dir, results_dir, rows, _ = smoke

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was started again")

    monkeypatch.setattr(runner_module, "_train", must_not_train)
    again = run_experiment(exp, [0, 1], runs_dir=runs_dir, results_dir=results_dir, logger_mode="disabled")
    assert sorted(r["run_id"] for r in again) == sorted(r["run_id"] for r in rows)


def test_a_failing_run_is_recorded_with_its_error(tmp_path):
    exp = Experiment("broken", "a run that cannot start", ["dreamerv3"], {"gym/NoSuchEnv-v0": ["steps=100"]}, [])
    rows = run_experiment(exp, [0], runs_dir=tmp_path / "runs", results_dir=tmp_path / "results", logger_mode="disabled")
    assert rows[0]["status"] == "failed" and "NoSuchEnv-v0" in rows[0]["error"]
    assert pd.read_csv(tmp_path / "results" / "broken" / "runs.csv")["status"].tolist() == ["failed"]


def test_concurrent_records_are_all_kept(tmp_path):
    store = ResultsStore(tmp_path, "many")

    def record(i):
        store.record(f"run{i:02d}", {"method": "m", "env": "e", "seed": i, "status": "done", "final_return": i,
                                     "metrics": {f"train/x{i % 3}": i}, "curve": [(1, float(i))]})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(record, range(40)))
    df = pd.read_csv(tmp_path / "many" / "runs.csv")
    assert sorted(df["seed"]) == list(range(40)) and {"metric.train/x0", "metric.train/x2"} <= set(df.columns)


def test_dry_run_lists_runs_and_unknown_methods_fail(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "recipes" / "experiment.py"), "experiment=classic", "seeds=3",
                          f"runs_dir={tmp_path}", "--dry-run"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    assert "36 runs (classic: 4 methods x 3 envs x 3 seeds)" in out.stdout
    assert "xp=intrinsic" in out.stdout and "logger.group=classic" in out.stdout
    with pytest.raises(ValueError, match="unknown method.*known: dreamerv3, prioritized, intrinsic, full"):
        Experiment("x", "", ["dreamerv3", "curiosity"], {}, [])


def test_wandb_runs_are_grouped_by_experiment_and_method(tmp_path, monkeypatch):
    from omegaconf import OmegaConf
    from torchrl.record.loggers import wandb as wandb_module

    from torchrl_dreamerxp.training.logging import RunLogger

    seen = {}

    class FakeWandb:
        def __init__(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(wandb_module, "WandbLogger", FakeWandb)
    exp = Experiment("grouped", "", ["prioritized"], {"gym/CartPole-v1": []}, [])
    run = exp.runs([4], tmp_path)[0]
    cli = run.command(1)
    overrides = [a for a in cli[2:] if a.startswith(("logger.", "env=", "xp=", "seed="))]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    RunLogger(tmp_path, cfg)
    assert seen["group"] == "grouped" and seen["job_type"] == "prioritized"
    assert {"gym_CartPole-v1", "seed4", "xp=prioritized"} <= set(seen["tags"])
    assert OmegaConf.to_container(cfg.logger)["mode"] == "offline"


def test_self_normalized_scores_and_aggregates_hand_computed():
    from torchrl_dreamerxp.experiments.report import aggregate_table, self_normalized

    rows = [  # env A: random 0, best 10; env B (negative returns): random -1000, best -200
        {"run_id": "a1", "method": "m", "env": "A", "seed": 0, "final_return": 10.0, "random_return": 0.0},
        {"run_id": "a2", "method": "m", "env": "A", "seed": 1, "final_return": 5.0, "random_return": 0.0},
        {"run_id": "b1", "method": "m", "env": "B", "seed": 0, "final_return": -200.0, "random_return": -1000.0},
        {"run_id": "b2", "method": "m", "env": "B", "seed": 1, "final_return": -600.0, "random_return": -1000.0},
    ]
    scores = self_normalized(rows)
    assert scores == {"a1": 1.0, "a2": 0.5, "b1": 1.0, "b2": 0.5}
    table = {r["stat"]: r for r in aggregate_table(rows, scores, stats=("mean", "median"), reps=100)}
    assert table["mean"]["value"] == pytest.approx(0.75) and table["median"]["value"] == pytest.approx(0.75)
    assert table["mean"]["runs"] == 2 and table["mean"]["envs"] == 2
    # a fixed reference keeps the scale of the finals (curves of the aggregate plot)
    early = [{**r, "final_return": r["final_return"] / 2} for r in rows]
    assert self_normalized(early, reference={"A": (0.0, 10.0), "B": (-1000.0, -200.0)})["a1"] == 0.5
    with pytest.warns(UserWarning, match="1 run\\(s\\) left out"):
        aggregate_table(rows[:3], self_normalized(rows[:3]), reps=50)


def test_a_changed_experiment_never_reuses_its_old_runs(tmp_path, capsys):
    base = ["model=tiny", "batch_size=2", "batch_length=8", "train_ratio=16", "frames_per_batch=8", "prefill=48",
            "eval.episodes=1", "agent.horizon=3", "eval.every=64", "checkpoint_every=64"]
    exp = Experiment("changing", "", ["dreamerv3"], {"gym/CartPole-v1": ["steps=64"]}, base)
    dirs = dict(runs_dir=tmp_path / "runs", results_dir=tmp_path / "results", logger_mode="disabled")
    first = run_experiment(exp, [0], **dirs)
    assert first[0]["status"] == "done"
    changed = Experiment("changing", "", ["dreamerv3"], {"gym/CartPole-v1": ["steps=64"]}, [*base, "batch_length=6"])
    run_experiment(changed, [0], runs_dir=tmp_path / "runs", dry_run=True)
    assert "changed dreamerv3__gym_CartPole-v1__seed0" in capsys.readouterr().out
    refused = run_experiment(changed, [0], **dirs)
    assert refused[0]["status"] == "changed" and "batch_length: 8 → 6" in refused[0]["error"]
    assert load_rows(tmp_path / "results", "changing")[0]["status"] == "changed"  # a report leaves it out
    replaced = run_experiment(changed, [0], replace_changed=True, **dirs)
    run_dir = Path(replaced[0]["run_dir"])
    assert replaced[0]["status"] == "done" and "batch_length: 6" in (run_dir / "config.yaml").read_text()
    assert len(list(run_dir.parent.glob("seed0.replaced-*"))) == 1  # the old run, set aside, not deleted
    # a longer budget is not a new config: the run is extended by resuming it
    longer = Experiment("changing", "", ["dreamerv3"], {"gym/CartPole-v1": ["steps=80"]}, [*base, "batch_length=6"])
    run_experiment(longer, [0], runs_dir=tmp_path / "runs", dry_run=True)
    assert "extend  dreamerv3__gym_CartPole-v1__seed0" in capsys.readouterr().out


def test_report_warns_when_it_pools_configs_and_can_split_them(smoke, tmp_path):
    _, _, results_dir, _, _ = smoke
    rows = load_rows(results_dir, "smoke")
    report = write_report(rows, tmp_path / "seeds", reps=50)
    assert report["warnings"] == []  # seeds of one config pool without a word
    for r in rows:  # as if seed 1 had been trained with another config
        r["config_id"] = "aaaaaa000000" if r["seed"] == 0 else "bbbbbb000000"
    with pytest.warns(UserWarning, match="pools runs of 2 configs"):
        report = write_report(rows, tmp_path / "pooled", reps=50)
    assert len(report["warnings"]) == 2
    split = write_report(rows, tmp_path / "split", reps=50, split_configs=True)
    assert {f["method"] for f in split["finals"]} == {"default@aaaaaa", "default@bbbbbb", "curious_replay@aaaaaa",
                                                      "curious_replay@bbbbbb"}


def test_each_run_shows_its_progress(smoke):
    exp, runs_dir, _, _, _ = smoke
    run = exp.runs([0], runs_dir)[0]
    log = (run.run_dir / "stdout.log").read_text()
    assert "evaluating the random policy" in log  # the first line, before anything slow
    assert "step 160/160 (100%)" in log  # the live progress lines of a run without a bar
    status = json.loads((run.run_dir / "progress.json").read_text())
    assert status["env_steps"] == status["total"] == 160
    # the experiment's bar lists the runs still running with their env steps and last return
    status.update(env_steps=80, time=status["time"] + 1)
    (run.run_dir / "progress.json").write_text(json.dumps(status))
    assert runner_module.running_status([run], newer_than=status["time"] - 1).startswith("default/CartPole-v1/s0 80/160")


def test_report_tables_of_any_metric_self_mean_and_fixed_normalization(smoke, tmp_path):
    _, _, results_dir, _, _ = smoke
    rows = load_rows(results_dir, "smoke")
    report = write_report(rows, tmp_path / "all", reps=100, stats=["mean", "self_mean"],
                          tables=["eval_return:auc", "train/loss_actor:last2", "eval_return:best"])
    auc = pd.read_csv(tmp_path / "all" / "table_eval_return_auc.csv")
    for _, t in auc.iterrows():  # the area under each run's curve over its span, averaged over seeds
        mine = [r for r in rows if r["method"] == t["method"]]
        values = [sum((b[1] + a[1]) / 2 * (b[0] - a[0]) for a, b in zip(r["curve"], r["curve"][1:]))
                  / (r["curve"][-1][0] - r["curve"][0][0]) for r in mine]
        assert t["mean"] == pytest.approx(sum(values) / len(values))
    assert (tmp_path / "all" / "table_train_loss_actor_last2.md").exists() and "train/loss_actor, last2" in report["tables_md"]
    aggregates = pd.read_csv(tmp_path / "all" / "aggregates.csv")
    assert set(aggregates["stat"]) == {"mean", "self_mean"}
    # the self-normalized scores do not move when only one method is shown
    alone = write_report(rows, tmp_path / "alone", reps=100, methods=["default"], stats=["mean"])
    shown = pd.read_csv(tmp_path / "alone" / "aggregates.csv")
    both = aggregates[(aggregates["method"] == "default") & (aggregates["stat"] == "mean")]["value"].item()
    assert shown["value"].item() == pytest.approx(both)
    with pytest.raises(ValueError, match="unknown table value"):
        write_report(rows, tmp_path / "bad", tables=["eval_return:sometimes"])
    names = {Path(p).name for p in alone["plots"]}
    assert {"aggregate.png", "profile.png", "returns.png"} <= names


def test_a_report_over_two_experiments_and_the_atari_plot(smoke, tmp_path):
    import shutil

    _, _, results_dir, _, _ = smoke
    shutil.copytree(results_dir / "smoke", tmp_path / "results" / "smoke")
    shutil.copytree(results_dir / "smoke", tmp_path / "results" / "again")
    out = subprocess.run([sys.executable, str(ROOT / "recipes" / "report.py"), "experiments=[smoke,again]",
                          f"results_dir={tmp_path / 'results'}", f"out={tmp_path / 'both'}", "reps=50"],
                         capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert out.returncode == 0, out.stderr[-1500:]
    header = (tmp_path / "both" / "finals.md").read_text().splitlines()[0]
    assert header == "| env | again/curious_replay | again/default | smoke/curious_replay | smoke/default |"
    rows = [{"run_id": f"{m}{s}", "method": m, "env": "atari/Boxing", "seed": s, "status": "done", "random_return": 0.1,
             "final_return": 10.0 * (s + 1) + (m == "b") * 20, "curve": [(50_000, 2.0), (100_000, 10.0 * (s + 1))]}
            for m in "ab" for s in range(3)]
    report = write_report(rows, tmp_path / "atari", reps=50)
    assert "human-normalized final score (Atari)" in report["aggregates_md"]
    assert (tmp_path / "atari" / "aggregate_human.png").read_bytes()[:8] == PNG


def test_precision_auto_expects_the_precision_of_the_run_it_would_resume(monkeypatch):
    # as recipes/train.py: auto picks for a new run; a resumed one keeps what it recorded (float32 if nothing),
    # so a float32 run under an experiment that now says auto is resumed, not reported as changed
    import torchrl_dreamerxp.training.precision as precision
    from torchrl_dreamerxp.experiments.identity import config_differences, expected_config

    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})  # auto picks bfloat16 here
    overrides = ["env=gym/CartPole-v1", "model=tiny", "precision=auto"]
    assert expected_config(overrides)["precision"] == "bfloat16"
    recorded = expected_config(["env=gym/CartPole-v1", "model=tiny", "precision=float32"])
    assert expected_config(overrides, resumed_from=recorded)["precision"] == "float32"
    assert config_differences(expected_config(overrides, resumed_from=recorded), recorded) == []
    before_the_key = {k: v for k, v in recorded.items() if k != "precision"}
    assert expected_config(overrides, resumed_from=before_the_key)["precision"] == "float32"


def test_a_run_stopped_by_a_signal_is_stored_as_stopped_and_no_further_run_starts(tmp_path, monkeypatch):
    # a session or job ending sends SIGTERM: the run checkpoints and exits 143; the queue must not go on
    started = []

    def stopped_run(run, threads, logger_mode):
        started.append(run.seed)
        return 128 + 15, ""

    monkeypatch.setattr(runner_module, "_train", stopped_run)
    exp = Experiment("stops", "a run stopped by SIGTERM", ["dreamerv3"], {"gym/CartPole-v1": ["steps=100"]}, [])
    rows = run_experiment(exp, [0, 1, 2], runs_dir=tmp_path / "runs", results_dir=tmp_path / "results",
                          logger_mode="disabled", parallel=1)
    assert started == [0] and [r["status"] for r in rows] == ["stopped"] * 3
    assert sum("not started" in r["error"] for r in rows) == 2
    # the command line exits as a stopped run does (143), so a retry loop or a job controller runs it again
    from torchrl_dreamerxp.recipes import experiment as experiment_recipe

    monkeypatch.setattr(Experiment, "from_config", staticmethod(lambda config: exp))  # the experiment above
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("experiments", overrides=["seeds=3", f"runs_dir={tmp_path / 'runs'}",
                                                f"results_dir={tmp_path / 'results'}", "logger_mode=disabled"])
    with pytest.raises(SystemExit) as stopped:
        experiment_recipe.run(cfg)
    assert stopped.value.code == 128 + 15
