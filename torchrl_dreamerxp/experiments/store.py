"""The results store of an experiment: one row per run, safe when several runs finish at once.

Layout of ``results/<experiment>/``:

- ``runs/<run_id>.json``: the row of one run, written atomically (temporary file, then rename), so
  concurrent runs never write the same file and a crash never leaves half a row;
- ``runs.csv``: every row, rebuilt from ``runs/`` under an exclusive file lock after each write (rows
  may have different metric columns: the CSV has their union);
- ``curves/<run_id>.csv``: the run's evaluation curve (``env_step,eval_return``);
- ``experiment.json``: name, description, methods, envs and budgets, and the notes of every invocation.
"""
from __future__ import annotations

import csv
import fcntl
import json
import math
import os
import shutil
import time
from pathlib import Path

from omegaconf import OmegaConf

from ..training.config_schema import flat_keys
from .identity import identity_hash

__all__ = ["ResultsStore", "read_run"]


def _flatten(d: dict) -> dict:
    """Dotted keys, lists as JSON (one table cell each)."""
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in flat_keys(d).items()}


def read_run(run_dir: Path) -> dict:
    """What a run directory says about its run: config, evaluation curve, last training metrics, counters.

    Works on any run of ``recipes/train.py`` (inside an experiment or not). ``status`` is ``done`` when the
    run wrote ``done``, else ``incomplete``. ``method`` is the experiment variant's name when the runner left
    ``variant.json``, else the XP method; ``identity`` the hash of its result-shaping config keys, ``config_id``
    the same without the seed (what the runs pooled over seeds share).

    Examples:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = (run / "config.yaml").write_text("env: gym/CartPole-v1\\nseed: 1\\nxp: {name: prioritized}\\n")
        >>> _ = (run / "eval.csv").write_text("env_step,eval_return\\n1000,20.0\\n2000,60.0\\n")
        >>> r = read_run(run)
        >>> r["method"], r["seed"], r["status"], r["final_return"], r["best_return"]
        ('prioritized', 1, 'incomplete', 60.0, 60.0)
    """
    run_dir = Path(run_dir)
    cfg = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=True)
    curve = []
    if (run_dir / "eval.csv").exists():
        curve = [(int(r["env_step"]), float(r["eval_return"])) for r in csv.DictReader(open(run_dir / "eval.csv"))]
    last_metrics: dict[str, float] = {}
    if (run_dir / "metrics.jsonl").exists():
        for line in open(run_dir / "metrics.jsonl"):
            row = json.loads(line)
            last_metrics.update({k: v for k, v in row.items() if k != "env_step"})
    done = json.loads((run_dir / "done").read_text()) if (run_dir / "done").exists() else {}
    xp = cfg.get("xp", {}).get("name", "none")
    variant = json.loads((run_dir / "variant.json").read_text()) if (run_dir / "variant.json").exists() else {}
    return {
        "env": cfg["env"], "seed": cfg["seed"], "method": variant.get("method", "dreamerv3" if xp == "none" else xp),
        "identity": identity_hash(cfg), "config_id": identity_hash(cfg, without=("seed",)),
        "model": cfg.get("model", {}).get("name"),
        "status": "done" if done else "incomplete",
        "final_return": curve[-1][1] if curve else math.nan,
        "best_return": max(r for _, r in curve) if curve else math.nan,
        "random_return": done.get("random_return", last_metrics.get("eval/random_return", math.nan)),
        "env_steps": done.get("env_steps", curve[-1][0] if curve else 0),
        "updates": done.get("updates"), "wall_time_s": done.get("wall_time_s"),
        "run_dir": str(run_dir),
        "curve": curve,
        "metrics": last_metrics,
        "config": _flatten(cfg),
    }


class ResultsStore:
    """``results/<experiment>/``: rows of runs, their curves, and the experiment's description.

    Examples:
        >>> import tempfile
        >>> store = ResultsStore(Path(tempfile.mkdtemp()), "demo")
        >>> store.record("run0", {"env": "gym/CartPole-v1", "method": "dreamerv3", "seed": 0, "final_return": 9.0,
        ...                       "status": "done", "curve": [(100, 9.0)]})
        >>> [(r["run_id"], r["final_return"]) for r in store.rows()], store.csv.exists()
        ([('run0', 9.0)], True)
    """

    def __init__(self, root: Path, experiment: str):
        self.dir = Path(root) / experiment
        (self.dir / "runs").mkdir(parents=True, exist_ok=True)
        (self.dir / "curves").mkdir(exist_ok=True)
        self.csv = self.dir / "runs.csv"

    def describe(self, info: dict, note: str = "") -> None:
        """Write ``experiment.json``; a non-empty ``note`` is appended to the notes of earlier invocations."""
        path = self.dir / "experiment.json"
        with self._lock():
            old = json.loads(path.read_text()) if path.exists() else {}
            notes = old.get("notes", [])
            if note:
                notes.append({"note": note, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
            _atomic_write(path, json.dumps({**info, "notes": notes}, indent=1))

    def record(self, run_id: str, row: dict) -> None:
        """Store one run's row (replacing an earlier row of the same run) and rebuild ``runs.csv``."""
        row = dict(row)
        curve = row.pop("curve", [])
        metrics = row.pop("metrics", {})
        config = row.pop("config", {})
        flat = {"run_id": run_id, **row, **{f"metric.{k}": v for k, v in metrics.items()},
                **{f"config.{k}": v for k, v in config.items()}}
        _atomic_write(self.dir / "runs" / f"{run_id}.json", json.dumps(flat, default=str))
        lines = "env_step,eval_return\n" + "".join(f"{s},{r}\n" for s, r in curve)
        _atomic_write(self.dir / "curves" / f"{run_id}.csv", lines)
        self.rebuild_csv()

    def rows(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.dir / "runs").glob("*.json"))]

    def rebuild_csv(self) -> None:
        with self._lock():
            rows = self.rows()
            first = ["run_id", "experiment", "description", "note", "method", "env", "seed", "model", "identity", "config_id", "status",
                     "error", "final_return", "best_return", "random_return", "env_steps", "updates", "wall_time_s"]
            columns = [c for c in first if any(c in r for r in rows)]
            columns += sorted({k for r in rows for k in r} - set(columns))
            tmp = self.csv.with_suffix(".csv.tmp")
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
            os.replace(tmp, self.csv)

    def curve(self, run_id: str) -> list[tuple[int, float]]:
        path = self.dir / "curves" / f"{run_id}.csv"
        return [(int(r["env_step"]), float(r["eval_return"])) for r in csv.DictReader(open(path))] if path.exists() else []

    def _lock(self):
        return _FileLock(self.dir / ".lock")

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class _FileLock:
    """An exclusive ``flock`` on a file: processes that finish at once take turns."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.file = open(self.path, "a")
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
