"""benchmarks/learning.py aggregation and --compare on finished run directories (no training)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def fake_run(run_dir: Path, returns):
    run_dir.mkdir(parents=True)
    rows = "".join(f"{2000 * (i + 1)},{r}\n" for i, r in enumerate(returns))
    (run_dir / "eval.csv").write_text("env_step,eval_return\n" + rows)
    (run_dir / "done").write_text(json.dumps({"updates": 10, "random_return": 20.0}))
    (run_dir / "config.yaml").write_text("env: gym/CartPole-v1\nseed: 0\nxp: {name: none}\nmodel: {name: vector_small}\n")


def test_compare_reads_finished_runs(tmp_path):
    fake_run(tmp_path / "learning_cartpole" / "seed0", [10, 300])
    fake_run(tmp_path / "learning_cartpole" / "seed1", [20, 500])
    fake_run(tmp_path / "learning_cartpole_prioritized" / "seed0", [30, 400])
    fake_run(tmp_path / "learning_cartpole_prioritized" / "seed1", [40, 480])
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "learning.py"), "--task", "cartpole", "--seeds", "0", "1",
                    "--runs", str(tmp_path), "--compare", "uniform,prioritized", "--out-json", str(out),
                    "--out-png", str(png)], check=True, cwd=ROOT, capture_output=True)
    result = json.loads(out.read_text())
    assert result["variants"]["uniform"]["final_returns"] == [300.0, 500.0]
    assert result["variants"]["uniform"]["mean_final_return"] == 400.0 and not result["variants"]["uniform"]["bar_met"]
    assert result["variants"]["prioritized"]["mean_final_return"] == 440.0
    # how fast, not only where it ends: the first evaluation at the bar (450) and the mean over the evaluations
    assert result["variants"]["uniform"]["first_step_at_bar"] == {"0": None, "1": 4000}
    assert result["variants"]["uniform"]["mean_eval_return"] == {"0": 155.0, "1": 260.0}
    assert png.stat().st_size > 1000


def test_compare_reports_per_seed_whether_the_goal_was_reached(tmp_path):
    # mountaincar's bar is the goal (return > 80): seed 0 of "intrinsic" got there in training only
    fake_run(tmp_path / "learning_mountaincar" / "seed0", [-5.0, -1.0])
    fake_run(tmp_path / "learning_mountaincar_intrinsic" / "seed0", [-3.0, 10.0])
    (tmp_path / "learning_mountaincar_intrinsic" / "seed0" / "metrics.jsonl").write_text(
        json.dumps({"env_step": 5, "train/episode_return": -20.0}) + "\n"
        + json.dumps({"env_step": 9, "train/episode_return": 93.5}) + "\n")
    out = tmp_path / "out.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "learning.py"), "--task", "mountaincar", "--seeds", "0",
                    "--runs", str(tmp_path), "--compare", "dreamerv3,intrinsic", "--out-json", str(out),
                    "--out-png", str(tmp_path / "out.png")], check=True, cwd=ROOT, capture_output=True)
    result = json.loads(out.read_text())
    assert result["variants"]["dreamerv3"]["bar_passed_per_seed"] == {"0": {"eval": False, "train": False}}
    assert result["variants"]["intrinsic"]["bar_passed_per_seed"] == {"0": {"eval": False, "train": True}}
    assert result["variants"]["intrinsic"]["seeds"]["0"]["max_train_return"] == 93.5


def test_official_curves_sets_our_runs_on_the_official_axis(tmp_path):
    # eval.csv counts agent steps (an eval lands at the end of a 16-step round: 5008); the official axis is env
    # frames (x 2 for DMC's action repeat), and ours at 10016 frames stands for the official point 10k
    run = tmp_path / "walker_stand" / "seed0"
    run.mkdir(parents=True)
    (run / "eval.csv").write_text("env_step,eval_return\n5008,100.0\n10000,200.0\n25008,450.0\n")
    (run / "done").write_text(json.dumps({"updates": 12000, "env_steps": 25000, "wall_time_s": 9000.0}))
    # the training terms beside each evaluation: the last logged row at or before its frame
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"env_step": 4000, "env_frames": 8000, "train/updates": 1500, "train/loss_model_reward": 0.5},
        {"env_step": 5008, "env_frames": 10016, "eval/return": 100.0},
        {"env_step": 9000, "env_frames": 18000, "train/updates": 4000, "train/loss_model_reward": 0.25},
        {"env_step": 11000, "env_frames": 22000, "train/updates": 5000, "train/loss_model_reward": 0.125}]))
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "official_curves.py"), "--report-only",
                           "--tasks", "walker_stand", "--seeds", "0", "--runs", str(tmp_path), "--out-json", str(out),
                           "--img-dir", str(tmp_path), "--markdown"], check=True, cwd=ROOT, capture_output=True,
                          text=True)
    # the docs' table row: per seed, mean, the official mean (min–max), and both goals
    assert "| walker_stand | 50k | 450.0 (s0) | 450.0 | 399.8 (254.8–523.2) | yes | yes |" in done.stdout
    assert "| walker_stand | 10k | 100.0 (s0) | 100.0 | 132.4 (123.0–146.7) | no | no |" in done.stdout
    result = json.loads(out.read_text())["tasks"]["walker_stand"]
    assert result["ours"]["0"]["env_frames"] == [10016, 20000, 50016] and result["ours"]["0"]["updates"] == 12000
    terms = result["ours"]["0"]["terms"]
    assert [t["updates"] for t in terms] == [1500, 4000, 5000] and terms[1]["loss_model_reward"] == 0.25
    rows = {r["env_frames"]: r for r in result["comparison"]}
    assert sorted(rows) == [10000, 20000, 50000]
    # the official walker_stand 5-seed mean at 50k frames is 399.8 (min 254.8): 450 is above both
    assert rows[50000]["official_mean"] == pytest.approx(399.8, abs=0.1)
    assert rows[50000]["mean_at_least_official_mean"] and rows[50000]["every_seed_at_least_official_min"]
    assert (tmp_path / "official_walker_stand.png").stat().st_size > 1000


def test_official_curves_keeps_recorded_runs_whose_directories_are_gone(tmp_path):
    # run directories are not kept with the repository; a report from a fresh checkout must not wipe the JSON's
    # results: seed 0 has no directory (kept from the record), seed 1's directory got further than its record
    run = tmp_path / "runs" / "walker_stand" / "seed1"
    run.mkdir(parents=True)
    (run / "eval.csv").write_text("env_frames,env_step,eval_return\n10016,5008,100.0\n20000,10000,300.0\n")
    recorded = {"env_frames": [10016, 20000, 30016], "eval_return": [150.0, 320.0, 410.0], "done": False,
                "agent_steps": 15008, "updates": 7000}
    stale = {"env_frames": [10016], "eval_return": [90.0], "done": False, "agent_steps": 6000}
    out = tmp_path / "out.json"
    out.write_text(json.dumps({"overrides": [], "tasks": {"walker_stand": {"ours": {"0": recorded, "1": stale}}}}))
    where = ["--runs", str(tmp_path / "runs"), "--out-json", str(out), "--img-dir", str(tmp_path)]
    cmd = [sys.executable, str(ROOT / "benchmarks" / "official_curves.py"), "--report-only", *where]
    subprocess.run([*cmd, "--tasks", "walker_stand", "--seeds", "0", "1"], check=True, cwd=ROOT, capture_output=True)
    ours = json.loads(out.read_text())["tasks"]["walker_stand"]["ours"]
    assert ours["0"]["eval_return"] == [150.0, 320.0, 410.0] and ours["0"]["from_record"]
    assert ours["1"]["eval_return"] == [100.0, 300.0] and "from_record" not in ours["1"]
    # seed 1's record (90 at 10k) is not the start of its directory's run (100 at 10k): another run of that seed,
    # kept beside it; a record that is the start of the run (seed 0 below, once its directory got further) is not
    assert ours["1"]["earlier_runs"][0]["eval_return"] == [90.0]
    rows = {r["env_frames"]: r["ours"] for r in json.loads(out.read_text())["tasks"]["walker_stand"]["comparison"]}
    assert rows[30000] == {"0": 410.0} and rows[20000] == {"0": 320.0, "1": 300.0}
    run0 = tmp_path / "runs" / "walker_stand" / "seed0"
    run0.mkdir(parents=True)
    (run0 / "eval.csv").write_text("env_frames,env_step,eval_return\n10016,5008,150.0\n20000,10000,320.0\n"
                                   "30016,15008,410.0\n40000,20000,500.0\n")
    subprocess.run([*cmd, "--tasks", "walker_stand", "--seeds", "0", "1"], check=True, cwd=ROOT, capture_output=True)
    ours = json.loads(out.read_text())["tasks"]["walker_stand"]["ours"]
    assert ours["0"]["eval_return"][-1] == 500.0 and "earlier_runs" not in ours["0"] and "from_record" not in ours["0"]
    assert ours["1"]["earlier_runs"][0]["eval_return"] == [90.0]  # carried over from report to report
    # a report on a subset (--tasks, --seeds) keeps what the record holds beyond it
    out.write_text(json.dumps({"overrides": [], "tasks": {"walker_stand": {"ours": {"0": recorded, "1": stale}},
                                                          "finger_spin": {"ours": {"0": recorded}}}}))
    subprocess.run([*cmd, "--tasks", "finger_spin", "--seeds", "1"], check=True, cwd=ROOT, capture_output=True)
    kept = json.loads(out.read_text())["tasks"]
    assert sorted(kept) == ["finger_spin", "walker_stand"] and sorted(kept["walker_stand"]["ours"]) == ["0", "1"]
    assert kept["finger_spin"]["ours"]["0"]["from_record"] and kept["finger_spin"]["ours"]["1"]["eval_return"] == []
    # a variant's report (other overrides) never takes over the defaults' record
    out.write_text(json.dumps({"overrides": [], "tasks": {"walker_stand": {"ours": {"0": recorded}}}}))
    subprocess.run([*cmd, "--tasks", "walker_stand", "--runs", str(tmp_path / "variant_runs"), "--tag", "tr128",
                    "train_ratio=128"], check=True, cwd=ROOT, capture_output=True)
    variant = json.loads(out.read_text())
    assert variant["overrides"] == ["train_ratio=128"] and variant["tasks"]["walker_stand"]["ours"]["0"]["eval_return"] == []
    assert (tmp_path / "official_walker_stand_tr128.png").exists()


def test_official_curves_refuses_overrides_without_a_tag(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "official_curves.py"), "--report-only",
                           "--out-json", str(tmp_path / "out.json"), "train_ratio=128"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 2 and "--tag" in done.stderr and not (tmp_path / "out.json").exists()
