"""Tables and plots of an experiment: python recipes/report.py experiment=classic [--wandb]

Or of several: ``experiments=[classic,smoke]`` (methods named ``<experiment>/<method>``), or of any run
directories: ``python recipes/report.py runs='runs/*/seed*'``. Filters: ``methods=[a,b]``, ``envs=[...]``;
``tables=[eval_return:final,train/loss_actor:last5]`` (any metric: final, best, auc, last<K>),
``metrics=[train/loss_actor]`` (curves), ``stats=[mean,self_mean,iqm]``; ``log_scale=auto|true|false``;
``split_configs=true``; ``latex=true`` adds ``finals.tex``. Writes into ``results/<experiment>/report/``
(``out=`` to change).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")

import hydra
from omegaconf import DictConfig

from torchrl_dreamerxp.experiments.report import load_rows, write_report
from torchrl_dreamerxp.paths import config_dir

CONFIG_DIR = str(config_dir())


def log_to_wandb(report: dict, out: Path, experiment: str | None) -> None:
    """The tables and plots as one run of the experiment's wandb group (job type ``report``)."""
    import wandb

    run = wandb.init(project="torchrl_dreamerxp", group=experiment or "runs", job_type="report",
                     name=f"report-{experiment or 'runs'}", dir=str(out), mode=os.environ.get("WANDB_MODE", "offline"))
    finals = report["finals"]
    run.log({"finals": wandb.Table(columns=list(finals[0]), data=[list(f.values()) for f in finals]),
             **{Path(p).stem: wandb.Image(p) for p in report["plots"]}})
    run.finish()


@hydra.main(config_path=CONFIG_DIR, config_name="report", version_base="1.3")
def run(cfg: DictConfig) -> None:
    experiment = cfg.experiment.name if cfg.get("experiment") else None
    names = [str(e) for e in cfg.experiments] or ([experiment] if experiment else [])
    if not names and not cfg.runs:
        raise SystemExit("give experiment=<name> or experiments=[a,b] (results stores), or runs='<glob of run directories>'")
    if cfg.runs:
        rows = load_rows(runs=cfg.runs)
    else:
        rows = []
        for name in names:
            for row in load_rows(Path(cfg.results_dir), name):
                rows.append({**row, "method": f"{name}/{row['method']}"} if len(names) > 1 else row)
    out = Path(cfg.out) if cfg.out else (Path(cfg.results_dir) / "+".join(names) / "report" if not cfg.runs
                                        else Path("report"))
    log_scale = cfg.log_scale if cfg.log_scale == "auto" else bool(cfg.log_scale)
    report = write_report(rows, out, methods=list(cfg.methods), envs=list(cfg.envs), metrics=list(cfg.metrics),
                          stats=list(cfg.stats), log_scale=log_scale, latex=cfg.latex, reps=cfg.reps,
                          split_configs=cfg.split_configs, tables=list(cfg.tables))
    for message in report["warnings"]:
        print(f"warning: {message}")
    print(report["finals_md"])
    print(report["tables_md"])
    print(report["aggregates_md"])
    if report["left_out"]:
        print("left out (not finished): " + ", ".join(f"{run} ({status})" for run, status in report["left_out"].items()))
    print(f"wrote {out}: " + ", ".join(Path(p).name for p in report["plots"]))
    if cfg.wandb:
        log_to_wandb(report, out, "+".join(names) or None)


def main() -> None:
    """The command line (also ``dreamerxp-report``): hydra overrides, and ``--wandb`` for ``wandb=true``."""
    if "--wandb" in sys.argv:
        sys.argv = [a for a in sys.argv if a != "--wandb"] + ["wandb=true"]
    run()


if __name__ == "__main__":
    main()
