"""Tables and plots of an experiment (or of any set of run directories).

- ``finals.md`` / ``finals.csv`` (``finals.tex`` optional): per env × method, mean ± std over seeds of the
  final evaluation return.
- ``aggregates.md`` / ``aggregates.csv``: per method, mean / median / IQM of a normalized score over all
  runs × envs with 95% stratified bootstrap confidence intervals (``rliable``): the self-normalized score
  for every suite, and the human-normalized score for Atari games.
- ``returns.png`` (evaluation return over env steps per env: a line per method, the band between the
  lowest and highest seed, each run faint behind), ``aggregate.png`` (the aggregates over the fraction of
  the budget), ``losses_<env>.png`` (training losses, log scale when they span decades),
  ``profile.png`` (performance profiles of the final self-normalized scores).

**Self-normalized score** of a run on an env: ``(R − R_random) / (R_best − R_random)`` with ``R_best``
the best final return of any run on that env and ``R_random`` the random policy's return there (each run
measures it); when the random return is 0 this is ``R / R_best``, "divided by the best run per env",
and it stays meaningful for negative returns (Pendulum). Where no run beats the random policy the
worst run stands in for it: ``(R − R_worst) / (R_best − R_worst)``.
"""
from __future__ import annotations

import glob
import json
import math
import warnings
from pathlib import Path

import numpy as np

from .atari_scores import human_normalized
from .store import ResultsStore, read_run

__all__ = ["load_rows", "finals_table", "metric_table", "run_value", "env_reference", "self_normalized",
           "aggregate_table", "pooled_configs", "write_report"]

#: aggregate statistics (rliable); ``self_mean`` is the seed tools' name for the mean self-normalized score
STATS = {"mean": "aggregate_mean", "median": "aggregate_median", "iqm": "aggregate_iqm", "self_mean": "aggregate_mean"}
#: how a run's series becomes one number in a table (``<metric>:<how>``; ``lastK``: the mean of its last K points)
HOW = ("final", "best", "auc", "last<K>")


def load_rows(results_dir: Path | None = None, experiment: str | None = None, runs: str | None = None) -> list[dict]:
    """Rows of a results store, or of the run directories matched by the glob ``runs`` (with a ``config.yaml``).

    Run-directory rows are grouped by the method, env and seed their saved config names.

    Examples:
        >>> import tempfile
        >>> from torchrl_dreamerxp.experiments.store import ResultsStore
        >>> root = Path(tempfile.mkdtemp())
        >>> ResultsStore(root, "demo").record("run0", {"env": "gym/CartPole-v1", "method": "dreamerv3", "seed": 0,
        ...                                            "final_return": 200.0, "status": "done", "curve": [(10, 200.0)]})
        >>> [(r["run_id"], r["final_return"], r["curve"]) for r in load_rows(root, "demo")]
        [('run0', 200.0, [(10, 200.0)])]
    """
    if runs:
        dirs = sorted(p for p in map(Path, glob.glob(runs)) if (p / "config.yaml").exists())
        if not dirs:
            raise FileNotFoundError(f"no run directories (with a config.yaml) match {runs!r}")
        rows = []
        for d in dirs:
            row = read_run(d)
            row["run_id"] = f"{row['method']}__{row['env'].replace('/', '_')}__seed{row['seed']}__{d.name}"
            rows.append(row)
        return rows
    store = ResultsStore(Path(results_dir), experiment)
    rows = store.rows()
    if not rows:
        raise FileNotFoundError(f"the results store {store.dir} has no runs: run recipes/experiment.py first")
    for row in rows:
        row["curve"] = store.curve(row["run_id"])
    return rows


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def finals_table(rows: list[dict]) -> list[dict]:
    """Per (env, method): n, mean, std (ddof 1; 0 for one seed), min, max of the final return.

    Examples:
        >>> rows = [{"env": "e", "method": "m", "final_return": v} for v in (1.0, 3.0)]
        >>> finals_table(rows)
        [{'env': 'e', 'method': 'm', 'n': 2, 'mean': 2.0, 'std': 1.4142135623730951, 'min': 1.0, 'max': 3.0}]
    """
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r.get("status", "done") == "done" and _finite(r.get("final_return")):
            groups.setdefault((r["env"], r["method"]), []).append(float(r["final_return"]))
    out = []
    for (env, method), values in sorted(groups.items()):
        a = np.asarray(values)
        out.append({"env": env, "method": method, "n": len(a), "mean": float(a.mean()),
                    "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "min": float(a.min()), "max": float(a.max())})
    return out


def run_series(row: dict, metric: str) -> tuple[list[int], list[float]]:
    """A run's ``(env steps, values)`` of ``metric``: ``eval_return`` from its curve, any other logged scalar
    (``train/loss_actor``, ``replay/effective_sample_size``, …) from its ``metrics.jsonl``."""
    if metric == "eval_return":
        curve = row.get("curve") or []
        return [s for s, _ in curve], [float(v) for _, v in curve]
    return _loss_curves(row, [metric]).get(metric, ([], []))


def run_value(steps: list[int], values: list[float], how: str) -> float:
    """One number of a series: ``final``, ``best`` (max), ``auc`` (the area under the curve over the steps it
    spans, divided by that span: its average height) or ``last<K>`` (the mean of the last K points).

    Examples:
        >>> steps, values = [0, 10, 20], [0.0, 10.0, 30.0]
        >>> [run_value(steps, values, h) for h in ("final", "best", "auc", "last2")]
        [30.0, 30.0, 12.5, 20.0]
    """
    if not values:
        return math.nan
    if how == "final":
        return float(values[-1])
    if how == "best":
        return float(max(values))
    if how == "auc":
        if len(values) == 1 or steps[-1] == steps[0]:
            return float(values[-1])
        return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))
    if how.startswith("last") and how[4:].isdigit() and int(how[4:]) >= 1:
        return float(np.mean(values[-int(how[4:]):]))
    raise ValueError(f"unknown table value {how!r}; choose from {', '.join(HOW)}")


def metric_table(rows: list[dict], metric: str = "eval_return", how: str = "final") -> list[dict]:
    """Per (env, method): n, mean, std (ddof 1; 0 for one seed), min, max over seeds of ``run_value``.

    Examples:
        >>> rows = [{"env": "e", "method": "m", "curve": [(10, 1.0), (20, v)]} for v in (3.0, 5.0)]
        >>> [(t["mean"], t["n"]) for t in metric_table(rows, "eval_return", "auc")]
        [(2.5, 2)]
    """
    values = []
    for r in rows:
        if r.get("status", "done") == "done":
            value = run_value(*run_series(r, metric), how)
            values.append({**r, "final_return": value})
    return finals_table(values)


def env_reference(rows: list[dict], key: str = "final_return") -> dict[str, tuple[float, float]]:
    """env -> ``(R_random, R_best)`` of the self-normalized score (see the module docstring).

    Examples:
        >>> env_reference([{"env": "e", "final_return": 10.0, "random_return": 2.0},
        ...                {"env": "e", "final_return": 4.0, "random_return": 4.0}])
        {'e': (3.0, 10.0)}
    """
    by_env: dict[str, list[dict]] = {}
    for r in rows:
        if _finite(r.get(key)):
            by_env.setdefault(r["env"], []).append(r)
    out = {}
    for env, env_rows in by_env.items():
        best = max(float(r[key]) for r in env_rows)
        randoms = [float(r["random_return"]) for r in env_rows if _finite(r.get("random_return"))]
        base = float(np.mean(randoms)) if randoms else 0.0
        if best <= base:  # nothing beats the random policy: scale between the worst and the best run
            base = min(float(r[key]) for r in env_rows)
        out[env] = (base, best)
    return out


def self_normalized(rows: list[dict], key: str = "final_return",
                    reference: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """run_id -> ``(R − R_random) / (R_best − R_random)`` of ``key``; ``reference`` (default: from these
    rows' ``key``) fixes ``R_random`` and ``R_best`` per env, so curves share the scale of the final scores.

    Examples:
        >>> rows = [{"run_id": "a", "env": "e", "final_return": 10.0, "random_return": 0.0},
        ...         {"run_id": "b", "env": "e", "final_return": 5.0, "random_return": 0.0}]
        >>> self_normalized(rows)
        {'a': 1.0, 'b': 0.5}
    """
    reference = reference if reference is not None else env_reference(rows, key)
    out = {}
    for r in rows:
        if _finite(r.get(key)) and r["env"] in reference:
            base, best = reference[r["env"]]
            out[r["run_id"]] = (float(r[key]) - base) / (best - base) if best != base else math.nan
    return out


def _score_matrix(rows, scores: dict[str, float], methods, envs) -> dict[str, np.ndarray]:
    """method -> ``[runs, envs]`` scores (rliable's layout); the k-th seed of each env forms run k."""
    out = {}
    for m in methods:
        columns = []
        for env in envs:
            values = [scores[r["run_id"]] for r in sorted(rows, key=lambda r: r["seed"])
                      if r["method"] == m and r["env"] == env and _finite(scores.get(r["run_id"]))]
            columns.append(values)
        n = min((len(c) for c in columns), default=0)
        if n:
            out[m] = np.array([c[:n] for c in columns]).T
        left_out = sum(len(c) for c in columns) - n * len(columns)
        if left_out or not n:  # rliable needs as many runs on every env
            warnings.warn(f"aggregates of {m!r}: " + (f"{left_out} run(s) left out to keep {n} seed(s) on every env"
                          if n else "left out, some env has no finished run"), stacklevel=2)
    return out


def _quiet_rliable():
    import logging
    import warnings

    logging.getLogger("absl").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module="arch")


def aggregate_table(rows: list[dict], scores: dict[str, float], stats=("mean", "median", "iqm"), reps: int = 2000,
                    seed: int = 0) -> list[dict]:
    """Per method and statistic: the point estimate and its 95% stratified bootstrap interval (rliable).

    Examples:
        >>> rows = [{"run_id": f"{m}{s}", "method": m, "env": "e", "seed": s} for m in "ab" for s in range(3)]
        >>> scores = {"a0": 0.2, "a1": 0.4, "a2": 0.6, "b0": 1.0, "b1": 1.0, "b2": 1.0}
        >>> table = aggregate_table(rows, scores, stats=("mean",), reps=200)
        >>> [(r["method"], r["stat"], round(r["value"], 3)) for r in table]
        [('a', 'mean', 0.4), ('b', 'mean', 1.0)]
    """
    from rliable import library as rly
    from rliable import metrics

    _quiet_rliable()

    methods = sorted({r["method"] for r in rows})
    envs = sorted({r["env"] for r in rows})
    matrix = _score_matrix(rows, scores, methods, envs)
    if not matrix:
        return []
    funcs = [getattr(metrics, STATS[s]) for s in stats]
    point, interval = rly.get_interval_estimates(matrix, lambda x: np.array([f(x) for f in funcs]), reps=reps,
                                                 random_state=np.random.RandomState(seed))
    return [{"method": m, "stat": s, "value": float(point[m][i]), "ci_low": float(interval[m][0, i]),
             "ci_high": float(interval[m][1, i]), "runs": int(matrix[m].shape[0]), "envs": int(matrix[m].shape[1])}
            for m in matrix for i, s in enumerate(stats)]


# -- writing -----------------------------------------------------------------------------------------
def _markdown(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def _write_finals(finals, out: Path, latex: bool) -> str:
    import pandas as pd

    df = pd.DataFrame(finals)
    df.to_csv(out / "finals.csv", index=False)
    methods = sorted(df["method"].unique())
    envs = sorted(df["env"].unique())
    cell = {(f["env"], f["method"]): f"{f['mean']:.1f} ± {f['std']:.1f} (n={f['n']})" for f in finals}
    md = _markdown(["env", *methods], [[e, *[cell.get((e, m), "–") for m in methods]] for e in envs])
    (out / "finals.md").write_text(md)
    if latex:
        wide = pd.DataFrame([[cell.get((e, m), "--") for m in methods] for e in envs], index=envs, columns=methods)
        (out / "finals.tex").write_text(wide.to_latex())
    return md


def _write_aggregates(tables: dict[str, list[dict]], out: Path) -> str:
    import pandas as pd

    all_rows = [{"score": name, **r} for name, rows in tables.items() for r in rows]
    pd.DataFrame(all_rows).to_csv(out / "aggregates.csv", index=False)
    md = ""
    for name, rows in tables.items():
        if not rows:
            continue
        stats = list(dict.fromkeys(r["stat"] for r in rows))
        methods = list(dict.fromkeys(r["method"] for r in rows))
        cell = {(r["method"], r["stat"]): f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" for r in rows}
        md += f"**{name}** (95% stratified bootstrap CIs)\n\n"
        md += _markdown(["method", *stats], [[m, *[cell[(m, s)] for s in stats]] for m in methods]) + "\n"
    (out / "aggregates.md").write_text(md)
    return md


def _write_metric_tables(rows, specs, out: Path) -> str:
    import pandas as pd

    md = ""
    for metric, how in specs:
        table = metric_table(rows, metric, how)
        if not table:
            continue
        slug = f"{metric}_{how}".replace("/", "_")
        pd.DataFrame(table).to_csv(out / f"table_{slug}.csv", index=False)
        methods = sorted({t["method"] for t in table})
        envs = sorted({t["env"] for t in table})
        cell = {(t["env"], t["method"]): f"{t['mean']:.4g} ± {t['std']:.3g} (n={t['n']})" for t in table}
        text = _markdown(["env", *methods], [[e, *[cell.get((e, m), "–") for m in methods]] for e in envs])
        (out / f"table_{slug}.md").write_text(text)
        md += f"**{metric}, {how}** (mean ± std over seeds)\n\n{text}\n"
    return md


def _save(fig, path: Path, dpi: int = 100) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _plot_returns(rows, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({r["env"] for r in rows})
    methods = sorted({r["method"] for r in rows})
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for i, m in enumerate(methods):
            curves = [r["curve"] for r in rows if r["env"] == env and r["method"] == m and r.get("curve")]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            steps = [s for s, _ in curves[0][:n]]
            values = np.array([[v for _, v in c[:n]] for c in curves])
            for c in curves:
                ax.plot([s for s, _ in c], [v for _, v in c], color=f"C{i}", alpha=0.2, linewidth=0.8)
            ax.plot(steps, values.mean(0), color=f"C{i}", linewidth=2, label=f"{m} (n={len(curves)})")
            ax.fill_between(steps, values.min(0), values.max(0), color=f"C{i}", alpha=0.15)
        randoms = [r["random_return"] for r in rows if r["env"] == env and _finite(r.get("random_return"))]
        if randoms:
            ax.axhline(float(np.mean(randoms)), color="gray", linestyle="--", linewidth=1, label="random policy")
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out / "returns.png")


def _plot_aggregate(rows, stats, out: Path, points: int = 10, reference=None, reps: int = 2000,
                    human: bool = False) -> Path:
    """Aggregate normalized score (self-normalized, or human-normalized for Atari) against the fraction of each
    env's budget, with 95% stratified bootstrap bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import metrics

    _quiet_rliable()
    fractions = np.linspace(1.0 / points, 1.0, points)
    reference = reference if reference is not None else env_reference(rows)  # the scale of the final scores
    budget = {env: max((s for r in rows if r["env"] == env for s, _ in r.get("curve", [])), default=0)
              for env in {r["env"] for r in rows}}
    per_fraction = []
    for f in fractions:
        snapshot = []
        for r in rows:
            curve = r.get("curve") or []
            if not curve or not budget[r["env"]]:
                continue
            steps, values = zip(*curve)
            snapshot.append({**r, "at": float(np.interp(f * budget[r["env"]], steps, values))})
        per_fraction.append(snapshot)
    methods = sorted({r["method"] for r in rows})
    envs = sorted({r["env"] for r in rows})
    funcs = [getattr(metrics, STATS[stat]) for stat in stats]
    estimates = []  # per fraction: (point, interval) by method
    for snapshot in per_fraction:
        scores = ({r["run_id"]: human_normalized(r["env"], r["at"]) for r in snapshot} if human
                  else self_normalized(snapshot, key="at", reference=reference))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the final-score tables already warned about left-out runs
            matrix = _score_matrix(snapshot, scores, methods, envs)
        estimates.append(rly.get_interval_estimates(matrix, lambda x: np.array([f(x) for f in funcs]),
                                                    reps=max(50, reps // 10), random_state=np.random.RandomState(0))
                         if matrix else ({}, {}))
    name = "human-normalized" if human else "self-normalized"
    fig, axes = plt.subplots(1, len(stats), figsize=(4.2 * len(stats), 3.5), squeeze=False)
    for j, (ax, stat) in enumerate(zip(axes[0], stats)):
        for i, m in enumerate(methods):
            ys = [float(p[m][j]) if m in p else math.nan for p, _ in estimates]
            low = [float(c[m][0, j]) if m in c else math.nan for _, c in estimates]
            high = [float(c[m][1, j]) if m in c else math.nan for _, c in estimates]
            ax.plot(fractions, ys, color=f"C{i}", marker="o", markersize=3, label=m)
            ax.fill_between(fractions, low, high, color=f"C{i}", alpha=0.2)
        ax.set_title(f"{stat} {name} score (95% CI)", fontsize=9)
        ax.set_xlabel("fraction of the env-step budget")
        ax.set_ylabel(f"{name} score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out / ("aggregate_human.png" if human else "aggregate.png"))


def _loss_curves(row: dict, metrics: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    path = Path(row.get("run_dir", "")) / "metrics.jsonl"
    curves: dict[str, tuple[list[int], list[float]]] = {}
    if not path.exists():
        return curves
    for line in open(path):
        entry = json.loads(line)
        for key, value in entry.items():
            if (key in metrics if metrics else key.startswith("train/loss_")) and _finite(value):
                steps, values = curves.setdefault(key, ([], []))
                steps.append(entry["env_step"])
                values.append(value)
    return curves


def _plot_losses(rows, metrics, log_scale, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for env in sorted({r["env"] for r in rows}):
        env_rows = [r for r in rows if r["env"] == env]
        curves = {r["run_id"]: _loss_curves(r, metrics) for r in env_rows}
        keys = sorted({k for c in curves.values() for k in c})
        if not keys:
            continue
        cols = min(4, len(keys))
        nrows = -(-len(keys) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.8 * nrows), squeeze=False)
        methods = sorted({r["method"] for r in env_rows})
        for ax, key in zip(axes.flat, keys):
            values_all = []
            for i, m in enumerate(methods):
                runs = [curves[r["run_id"]][key] for r in env_rows if r["method"] == m and key in curves[r["run_id"]]]
                if not runs:
                    continue
                for run_steps, run_values in runs:  # every run faint behind the mean
                    ax.plot(run_steps, run_values, color=f"C{i}", alpha=0.2, linewidth=0.6)
                n = min(len(s) for s, _ in runs)
                steps = runs[0][0][:n]
                stacked = np.array([v[:n] for _, v in runs])
                mean = stacked.mean(0)
                values_all += [float(x) for x in stacked.flatten()]
                ax.plot(steps, mean, color=f"C{i}", label=f"{m} (n={len(runs)})", linewidth=1.4)
                ax.fill_between(steps, stacked.min(0), stacked.max(0), color=f"C{i}", alpha=0.15)
            positive = values_all and min(values_all) > 0
            spread = positive and max(values_all) / min(values_all) > 50
            if log_scale is True or (log_scale == "auto" and spread):
                ax.set_yscale("log")
            ax.set_title(key.replace("train/", ""), fontsize=9)
            ax.set_xlabel("env steps", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(f"{env}: training metrics (mean over seeds, band: lowest to highest seed, runs faint)")
        paths.append(_save(fig, out / f"losses_{env.replace('/', '_')}.png", dpi=90))
    return paths


def _plot_profile(rows, scores, out: Path, reps: int) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import plot_utils

    methods = sorted({r["method"] for r in rows})
    matrix = _score_matrix(rows, scores, methods, sorted({r["env"] for r in rows}))
    if not matrix:
        return None
    taus = np.linspace(-0.25, 1.25, 61)
    profiles, cis = rly.create_performance_profile(matrix, taus, reps=reps)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=cis, ax=ax,
                                         colors={m: f"C{i}" for i, m in enumerate(methods)},
                                         xlabel="self-normalized score τ")
    from matplotlib.lines import Line2D

    colors = {m: f"C{i}" for i, m in enumerate(methods)}  # one handle per method: the bands are artists too
    ax.legend([Line2D([], [], color=colors[m]) for m in matrix], list(matrix), fontsize=8)
    ax.set_ylabel("fraction of runs with score > τ")
    return _save(fig, out / "profile.png")


def pooled_configs(rows: list[dict], split: bool = False) -> list[str]:
    """Warnings for every method × env whose runs were trained with different configs (``config_id``, the
    identity without the seed); with ``split`` each such run's method is renamed ``<method>@<config_id>`` so
    the tables show them apart.

    Examples:
        >>> rows = [{"method": "a", "env": "e", "config_id": i} for i in ("111111aaaaaa", "222222bbbbbb")]
        >>> pooled_configs(rows)[0].startswith("method a on e pools runs of 2 configs")
        True
        >>> _ = pooled_configs(rows, split=True); sorted(r["method"] for r in rows)
        ['a@111111', 'a@222222']
    """
    groups: dict[tuple, set] = {}
    for r in rows:
        groups.setdefault((r["method"], r["env"]), set()).add(r.get("config_id"))
    warnings_, mixed = [], {k for k, ids in groups.items() if len(ids - {None}) > 1}
    for (method, env) in sorted(mixed):
        ids = sorted(i for i in groups[(method, env)] if i)
        warnings_.append(f"method {method} on {env} pools runs of {len(ids)} configs (config ids {', '.join(ids)})"
                         + ("" if split else ": split_configs=true shows them apart"))
    if split:
        for r in rows:
            if (r["method"], r["env"]) in mixed and r.get("config_id"):
                r["method"] = f"{r['method']}@{r['config_id'][:6]}"
    return warnings_


def write_report(rows: list[dict], out: Path, *, methods=(), envs=(), metrics=(), stats=("mean", "median", "iqm"),
                 log_scale="auto", latex=False, reps=2000, split_configs: bool = False,
                 tables=("eval_return:final", "eval_return:auc")) -> dict:
    """Write every table and plot for ``rows`` (filtered by ``methods`` and ``envs``) into ``out``.

    ``tables``: ``<metric>:<how>`` tables over seeds (``table_<metric>_<how>.md/.csv``) of any logged metric
    (``eval_return``, ``train/loss_actor``, …) reduced per run by ``final``, ``best``, ``auc`` or ``last<K>``.
    The self-normalized scores use references per env (the random policy's return, the best final return)
    from every finished run in ``rows``, before the filters: a score does not change with what is shown.

    Runs of one method and env trained with different configs are pooled with a warning (``"warnings"`` of
    the result), or shown apart with ``split_configs``.

    Examples:
        >>> import tempfile
        >>> rows = [{"run_id": f"{m}{s}", "method": m, "env": "gym/CartPole-v1", "seed": s, "status": "done",
        ...          "final_return": 100.0 * (s + 1) + (m == "b") * 50, "best_return": 400.0, "random_return": 20.0,
        ...          "curve": [(1000, 50.0), (2000, 100.0 * (s + 1))], "metrics": {"train/loss": 1.0}}
        ...         for m in "ab" for s in range(2)]
        >>> out = Path(tempfile.mkdtemp())
        >>> _ = write_report(rows, out, reps=100)
        >>> (out / "finals.md").exists()
        True
    """
    unknown = [s for s in stats if s not in STATS]
    if unknown:
        raise ValueError(f"unknown statistics {unknown}; choose from {list(STATS)}")
    specs = [t.rsplit(":", 1) if ":" in t else (t, "final") for t in tables]
    for _, how in specs:
        run_value([0], [0.0], how)  # an unknown way to reduce a series fails before anything is written
    all_done = [r for r in rows if r.get("status", "done") == "done"]
    # normalization references per env from every finished run, whatever the filters show: fixed scores
    reference = env_reference(all_done)
    rows = [dict(r) for r in rows if (not methods or r["method"] in methods) and (not envs or r["env"] in envs)]
    done = [r for r in rows if r.get("status", "done") == "done"]
    if not done:
        raise ValueError("no finished run left after the filters")
    pooled = pooled_configs(done, split_configs)
    for message in pooled:
        warnings.warn(message, stacklevel=2)
    for env, (base, best) in sorted(reference.items()):
        if best == base and any(r["env"] == env for r in done):
            warnings.warn(f"{env}: every finished run scores {best} (as the random policy): its self-normalized score "
                          f"is undefined and it is left out of the aggregates", stacklevel=2)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    finals = finals_table(done)
    scores = self_normalized(done, reference=reference)
    tables_out = {"self-normalized final score": aggregate_table(done, scores, stats, reps)}
    human = {r["run_id"]: human_normalized(r["env"], float(r["final_return"])) for r in done}
    atari = [r for r in done if human[r["run_id"]] is not None]
    plain_stats = [s for s in stats if not s.startswith("self_")] or ["mean"]
    if atari:
        tables_out["human-normalized final score (Atari)"] = aggregate_table(atari, human, plain_stats, reps)
    files = {"finals_md": _write_finals(finals, out, latex), "aggregates_md": _write_aggregates(tables_out, out)}
    files["tables_md"] = _write_metric_tables(done, specs, out)
    plots = [_plot_returns(done, out), _plot_aggregate(done, list(stats), out, reference=reference, reps=reps),
             *_plot_losses(done, list(metrics), log_scale, out), _plot_profile(done, scores, out, reps)]
    if atari:
        plots.append(_plot_aggregate(atari, plain_stats, out, reps=reps, human=True))
    files["plots"] = [str(p) for p in plots if p is not None]
    files["finals"] = finals
    # runs without a final result (failed, stopped by a signal, trained with a changed config), by status
    files["left_out"] = {r["run_id"]: r["status"] for r in rows if r.get("status", "done") != "done"}
    files["warnings"] = pooled
    return files
