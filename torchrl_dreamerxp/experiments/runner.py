"""Run every training run of an experiment, several at once (a local pool or Ray tasks on a cluster), skipping
finished ones and resuming the rest."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from ..training.graceful_stop import STOPPED_EXIT_CODES, stopped_by_signal
from .identity import config_differences, expected_config, run_config
from .spec import Experiment, RunSpec
from .store import ResultsStore, read_run

__all__ = ["run_experiment"]


def _row(run: RunSpec, exp: Experiment, note: str, status: str, error: str = "") -> dict:
    base = {"experiment": exp.name, "description": exp.description, "note": note, "method": run.method,
            "env": run.env, "seed": run.seed, "status": status, "error": error, "run_dir": str(run.run_dir)}
    if (run.run_dir / "config.yaml").exists():
        found = read_run(run.run_dir)
        found.update(method=run.method)  # the experiment's name for it (xp=none is "dreamerv3")
        return {**found, **base}
    return base


def _train(run: RunSpec, threads: int, logger_mode: str) -> tuple[int, str]:
    """One training run in its own process; returns its exit code and the tail of its error output."""
    command = run.command(threads, logger_mode)  # resume=true only for a run directory an earlier try left
    run.run_dir.mkdir(parents=True, exist_ok=True)
    # the variant's name travels with the run (a report over run directories labels it so)
    (run.run_dir / "variant.json").write_text(json.dumps({"experiment": run.experiment, "method": run.method,
                                                          "overrides": run.variant}))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    with open(run.run_dir / "stdout.log", "a") as out, open(run.run_dir / "stderr.log", "a") as err:
        out.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
        out.flush()
        code = subprocess.call(command, stdout=out, stderr=err, env=env, cwd=Path(__file__).resolve().parents[2])
    tail = ""
    if code:
        lines = (run.run_dir / "stderr.log").read_text(errors="replace").strip().splitlines()
        tail = " | ".join(lines[-5:])[-1500:]
    return code, tail


def _train_as_ray_task(run: RunSpec, threads: int, logger_mode: str) -> tuple[int, str]:
    """:func:`_train` inside a Ray task; the run's ``stdout.log`` names the node that ran it."""
    import ray

    run.run_dir.mkdir(parents=True, exist_ok=True)
    with open(run.run_dir / "stdout.log", "a") as out:
        out.write(f"\n# ray task on node {ray.get_runtime_context().get_node_id()} (host {os.uname().nodename})\n")
    return _train(run, threads, logger_mode)


def _local_pool(todo: list[RunSpec], parallel: int, threads: int, logger_mode: str, tick: float = 5.0) -> Iterator:
    """``(run, result getter)`` as each run ends, ``parallel`` at once in this machine; ``(None, None)`` every
    ``tick`` seconds meanwhile (the progress bar then reads the running runs' progress). Once a run has stopped
    on SIGTERM or Ctrl-C, the runs not yet started are not started (and are recorded as stopped)."""
    stopped = threading.Event()  # a run stopped on a signal (a session or job ending): start no further one

    def train_unless_stopped(run: RunSpec) -> tuple[int, str]:
        if stopped.is_set():  # recorded as stopped: the next invocation starts it
            return STOPPED_EXIT_CODES[0], "not started: an earlier run of this invocation was stopped by a signal"
        code, tail = _train(run, threads, logger_mode)
        if stopped_by_signal(code):
            stopped.set()
        return code, tail

    with ThreadPoolExecutor(parallel) as pool:
        pending = {pool.submit(train_unless_stopped, run): run for run in todo}
        while pending:
            done, _ = wait(pending, timeout=tick, return_when=FIRST_COMPLETED)
            if not done:
                yield None, None
            for future in done:
                yield pending.pop(future), future.result


def running_status(runs: list[RunSpec], newer_than: float) -> str:
    """``method/env/seed step/total ret R`` of each run whose ``progress.json`` was written since ``newer_than``.

    Examples:
        >>> running_status([], 0.0)
        ''
    """
    parts = []
    for run in runs:
        path = run.run_dir / "progress.json"
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if status.get("time", 0) >= newer_than and status["env_steps"] < status["total"]:
            parts.append(f"{run.method}/{run.env.split('/')[-1]}/s{run.seed} {status['env_steps']}/{status['total']} "
                         f"ret {status['last_return']:.1f}")
    return "; ".join(parts)


def _ray_tasks(todo: list[RunSpec], threads: int, logger_mode: str, address: str | None) -> Iterator:
    """``(run, result getter)`` as each run ends; every run is a Ray task reserving ``threads`` CPUs, so Ray
    places as many at once as the cluster's CPUs allow, on any node."""
    import ray

    from ..training.ray_collection import init_ray

    init_ray(address)
    task = ray.remote(num_cpus=threads)(_train_as_ray_task)
    pending = {task.remote(run, threads, logger_mode): run for run in todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
        if not ready:
            yield None, None
            continue
        yield pending.pop(ready[0]), lambda ref=ready[0]: ray.get(ref)


def changed_config(run: RunSpec) -> tuple[list[str], bool]:
    """How the config a run directory was trained with differs from what the experiment asks now, key by key
    (``[]``: the same, or nothing trained yet), and whether its budget is only shorter (``steps``): such a run
    is extended by resuming it, as ``recipes/train.py`` allows."""
    found = run_config(run.run_dir)
    if found is None:
        return [], False
    expected = expected_config(run.train_overrides, resumed_from=found)
    shorter = int(found.get("steps", 0)) < int(expected["steps"])
    if shorter:
        found = {**found, "steps": expected["steps"]}
    return config_differences(expected, found), shorter


def _set_aside(run_dir: Path) -> Path:
    aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(run_dir), str(aside))
    return aside


def run_experiment(exp: Experiment, seeds: list[int], *, parallel: int = 1, runs_dir: Path = Path("runs/experiments"),
                   results_dir: Path = Path("results"), note: str = "", logger_mode: str = "offline",
                   dry_run: bool = False, launcher: str = "local", ray_address: str | None = None,
                   ray_cpus_per_run: int = 1, replace_changed: bool = False) -> list[dict]:
    """Run (or list, with ``dry_run``) every method × env × seed of ``exp``; returns the rows stored.

    A run whose directory holds ``done`` is skipped (its row is stored if missing); a run directory
    without ``done`` is resumed from its last checkpoint. Either only if the directory's ``config.yaml`` is the
    config the experiment asks for now (:mod:`~torchrl_dreamerxp.experiments.identity`: every key that changes
    the result): a run trained with another config is never counted as done nor resumed; it is refused (row
    ``status=changed``, the differing keys in ``error``) or, with ``replace_changed``, moved aside to
    ``<dir>.replaced-<time>`` and trained anew. ``launcher="local"``: ``parallel`` runs share this
    machine's CPU cores (``cores // parallel`` torch threads each). ``launcher="ray"``: every run is a Ray task
    with ``ray_cpus_per_run`` CPUs (and as many torch threads) on the cluster at ``ray_address`` (a local
    one if ``None``); every node needs this repository at the same path and ``runs_dir`` on a filesystem
    all nodes share (this process reads each finished run's directory). A run that fails is stored with
    ``status=failed`` and the end of its error output; the other runs go on. A run stopped by SIGTERM or
    Ctrl-C checkpoints first and is stored as ``status=stopped``; the next invocation resumes it. With the
    local launcher, the runs not yet started are then not started (stored as ``stopped``).

    Examples:
        >>> from torchrl_dreamerxp.experiments.spec import Experiment
        >>> exp = Experiment("demo", "", ["dreamerv3", "prioritized"], {"gym/CartPole-v1": ["steps=100"]}, [])
        >>> run_experiment(exp, [0], runs_dir=Path("/tmp/demo_runs"), dry_run=True)  # doctest: +ELLIPSIS
        new     dreamerv3__gym_CartPole-v1__seed0 ...
        new     prioritized__gym_CartPole-v1__seed0 ...
        2 runs (demo: 2 methods x 1 envs x 1 seeds)
        []
    """
    if launcher not in ("local", "ray"):
        raise ValueError(f"launcher must be 'local' or 'ray', got {launcher!r}")
    # absolute: a Ray task's working directory is not this one
    runs = exp.runs(seeds, Path(runs_dir).resolve())
    checked = {run.run_id: changed_config(run) for run in runs}
    changes = {k: v[0] for k, v in checked.items()}
    complete = {run.run_id: (run.run_dir / "done").exists() and not checked[run.run_id][1] for run in runs}
    if dry_run:
        for run in runs:
            state = ("changed" if changes[run.run_id] else "done" if complete[run.run_id]
                     else "extend" if checked[run.run_id][1] else "resume" if run.run_dir.exists() else "new")
            detail = "; ".join(changes[run.run_id][:3]) if changes[run.run_id] else " ".join(run.command(1)[2:])
            print(f"{state:7s} {run.run_id:60s} {detail}")
        print(f"{len(runs)} runs ({exp.name}: {len(exp.methods)} methods x {len(exp.envs)} envs x {len(seeds)} seeds)")
        return []
    store = ResultsStore(results_dir, exp.name)
    store.describe({"name": exp.name, "description": exp.description, "methods": exp.methods, "envs": exp.envs,
                    "overrides": exp.overrides, "seeds": seeds}, note)
    stored = {r["run_id"]: r.get("status") for r in store.rows()}
    todo = []
    for run in runs:
        if changes[run.run_id] and replace_changed:
            print(f"{run.run_id}: trained with another config ({'; '.join(changes[run.run_id][:3])}): moved to "
                  f"{_set_aside(run.run_dir)}")
            complete[run.run_id] = False
        elif changes[run.run_id]:
            message = (f"{run.run_dir} was trained with another config: {'; '.join(changes[run.run_id])}. Not reused: "
                       f"run with replace_changed=true to set it aside and train anew, or use another experiment name")
            print(f"changed {run.run_id}: {message}")
            store.record(run.run_id, _row(run, exp, note, "changed", message))
            continue
        if complete[run.run_id]:
            if stored.get(run.run_id) != "done":  # missing, or failed before and finished since
                store.record(run.run_id, _row(run, exp, note, "done"))
        else:
            todo.append(run)
    if launcher == "ray":
        finished = _ray_tasks(todo, ray_cpus_per_run, logger_mode, ray_address)
    else:
        finished = _local_pool(todo, parallel, max(1, (os.cpu_count() or 2) // parallel), logger_mode)
    counts: dict[str, int] = {}
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", desc=exp.name, dynamic_ncols=True)
    started = time.time()
    for run, result in finished:
        if run is None:  # a tick: show how far the running runs are
            bar.set_postfix_str(running_status(todo, started)[:200], refresh=True)
            continue
        try:
            code, error = result()
        except Exception as err:  # the runner itself failed for this run: record it, go on
            code, error = -1, f"{type(err).__name__}: {err}"
        ok = code == 0 and (run.run_dir / "done").exists()
        # a run stopped by SIGTERM/Ctrl-C checkpointed first: the next invocation resumes it
        status = "done" if ok else "stopped" if stopped_by_signal(code) else "failed"
        counts[status] = counts.get(status, 0) + 1
        store.record(run.run_id, _row(run, exp, note, status, "" if ok else (error or f"exit code {code}")))
        bar.update(1)
        bar.set_postfix(**{k: v for k, v in counts.items() if k != "done"}, last=run.run_id[:40])
    bar.close()
    return store.rows()
