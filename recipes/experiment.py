"""Run a named experiment over seeds: python recipes/experiment.py experiment=classic seeds=3 [--dry-run]

Every method × env × seed of ``configs/experiment/<name>.yaml`` is one ``recipes/train.py`` run under
``runs/experiments/<name>/``; finished runs are skipped, interrupted ones resumed; every run's row goes to
the results store ``results/<name>/`` (``runs.csv``). Then ``python recipes/report.py experiment=<name>``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")

import hydra
from omegaconf import DictConfig

from torchrl_dreamerxp.experiments import Experiment, parse_parallel, parse_seeds, run_experiment
from torchrl_dreamerxp.paths import config_dir
from torchrl_dreamerxp.training.graceful_stop import STOPPED_EXIT_CODES

CONFIG_DIR = str(config_dir())


@hydra.main(config_path=CONFIG_DIR, config_name="experiments", version_base="1.3")
def run(cfg: DictConfig) -> None:
    exp = Experiment.from_config(cfg.experiment)
    seeds = parse_seeds(cfg.seeds)
    parallel = parse_parallel(cfg.parallel)
    print(f"{exp.name}: {exp.description}\n{len(exp.methods)} methods x {len(exp.envs)} envs x {len(seeds)} seeds, "
          + (f"{parallel} run(s) at once" if cfg.launcher == "local" else f"Ray tasks of {cfg.ray_cpus_per_run} CPU(s)"))
    rows = run_experiment(exp, seeds, parallel=parallel, runs_dir=Path(cfg.runs_dir), results_dir=Path(cfg.results_dir),
                          note=str(cfg.note), logger_mode=cfg.logger_mode, dry_run=cfg.dry_run,
                          launcher=cfg.launcher, ray_address=cfg.ray_address, ray_cpus_per_run=cfg.ray_cpus_per_run,
                          replace_changed=cfg.replace_changed)
    if rows:
        by_status = {status: [r["run_id"] for r in rows if r["status"] == status] for status in ("failed", "stopped")}
        print(f"results: {Path(cfg.results_dir) / exp.name / 'runs.csv'} ({len(rows)} runs, "
              f"{len(by_status['failed'])} failed, {len(by_status['stopped'])} stopped)")
        for status, run_ids in by_status.items():
            if run_ids:
                print(f"{status}: " + ", ".join(run_ids))
        if by_status["stopped"]:  # preempted: exit as a stopped run does, so a retry loop or a job controller retries
            print("stopped by a signal, checkpointed: the same command resumes them", flush=True)
            raise SystemExit(STOPPED_EXIT_CODES[0])


def main() -> None:
    """The command line (also ``dreamerxp-experiment``): hydra overrides, and ``--dry-run`` for ``dry_run=true``."""
    if "--dry-run" in sys.argv:  # a flag reads better than dry_run=true
        sys.argv = [a for a in sys.argv if a != "--dry-run"] + ["dry_run=true"]
    run()


if __name__ == "__main__":
    main()
