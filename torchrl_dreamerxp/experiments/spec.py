"""A named experiment: variants × envs × seeds, each one training run of ``recipes/train.py``."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["METHODS", "RunSpec", "Experiment"]

#: the built-in variants: name -> the recipe overrides that make it (an experiment YAML adds its own)
METHODS = {"dreamerv3": ["xp=none"], "prioritized": ["xp=prioritized"], "intrinsic": ["xp=intrinsic"],
           "full": ["xp=full"]}
ROOT = Path(__file__).resolve().parents[2]
# a checkout runs recipes/train.py; an installed wheel has it as the module torchrl_dreamerxp.recipes.train
TRAIN = ([str(ROOT / "recipes" / "train.py")] if (ROOT / "recipes" / "train.py").exists()
         else ["-m", "torchrl_dreamerxp.recipes.train"])


def env_slug(env: str) -> str:
    """A folder name for an env name: ``gym/CartPole-v1`` -> ``gym_CartPole-v1``."""
    return env.replace("/", "_")


@dataclass
class RunSpec:
    """One training run of an experiment.

    ``overrides`` are the experiment's and the env's, ``variant`` the method's own (they come last and win).

    Examples:
        >>> run = RunSpec("classic", "intrinsic", "gym/Pendulum-v1", 2, Path("/tmp/r"), ["steps=100"], ["xp=intrinsic"])
        >>> run.run_id, run.command(threads=1)[2:5]
        ('intrinsic__gym_Pendulum-v1__seed2', ['steps=100', 'env=gym/Pendulum-v1', 'xp=intrinsic'])
    """

    experiment: str
    method: str
    env: str
    seed: int
    run_dir: Path
    overrides: list[str] = field(default_factory=list)
    variant: list[str] = field(default_factory=list)

    @property
    def train_overrides(self) -> list[str]:
        """The overrides that shape the run (what its identity is computed from)."""
        return [*self.overrides, f"env={self.env}", *self.variant, f"seed={self.seed}"]

    @property
    def run_id(self) -> str:
        return f"{self.method}__{env_slug(self.env)}__seed{self.seed}"

    def command(self, threads: int, logger_mode: str = "offline") -> list[str]:
        """The ``recipes/train.py`` command line; it resumes when an earlier try left a checkpoint (a try that
        stopped before its first checkpoint starts over)."""
        return [
            sys.executable, *TRAIN, *self.train_overrides, f"run_dir={self.run_dir}",
            f"resume={str(any((self.run_dir / 'checkpoints').glob('step_*'))).lower()}", f"threads={threads}", "progress=false",
            f"logger.mode={logger_mode}", f"logger.group={self.experiment}", f"logger.job_type={self.method}",
            f"logger.tags=[{env_slug(self.env)},seed{self.seed}]",
        ]


@dataclass
class Experiment:
    """``configs/experiment/<name>.yaml``: name, description, methods, envs with their budgets, overrides, and
    ``variants`` (name → recipe overrides) that ``methods`` may name beside the built-in ones (:data:`METHODS`).

    Examples:
        >>> exp = Experiment("demo", "two methods", ["dreamerv3", "full"], {"gym/CartPole-v1": ["steps=100"]}, [])
        >>> [r.run_id for r in exp.runs([0, 1], Path("runs"))][:2]
        ['dreamerv3__gym_CartPole-v1__seed0', 'dreamerv3__gym_CartPole-v1__seed1']
        >>> ablation = Experiment("abl", "", ["default", "no_prio"], {"gym/CartPole-v1": []}, [],
        ...                       variants={"default": ["xp=full"], "no_prio": ["xp=intrinsic"]})
        >>> ablation.runs([0], Path("runs"))[1].command(1)[3:4]
        ['xp=intrinsic']
        >>> Experiment("bad", "", ["dreamerv4"], {}, [])
        Traceback (most recent call last):
        ...
        ValueError: experiment 'bad': unknown method(s) ['dreamerv4']; known: dreamerv3, prioritized, intrinsic, full (declare others under variants:)
    """

    name: str
    description: str
    methods: list[str]
    envs: dict[str, list[str]]
    overrides: list[str]
    variants: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        self.variants = {**METHODS, **{str(k): [str(o) for o in (v or [])] for k, v in self.variants.items()}}
        unknown = [m for m in self.methods if m not in self.variants]
        if unknown:
            raise ValueError(f"experiment {self.name!r}: unknown method(s) {unknown}; known: "
                             f"{', '.join(self.variants)} (declare others under variants:)")
        bad = [m for m in self.methods if "/" in m or "__" in m or not m]
        if bad:
            raise ValueError(f"experiment {self.name!r}: method names {bad} cannot name folders (no '/' or '__')")

    @classmethod
    def from_config(cls, cfg) -> "Experiment":
        envs = {str(k): [str(o) for o in (v or [])] for k, v in dict(cfg.envs).items()}
        variants = {str(k): [str(o) for o in (v or [])] for k, v in dict(cfg.get("variants") or {}).items()}
        return cls(str(cfg.name), str(cfg.get("description", "")), [str(m) for m in cfg.methods], envs,
                   [str(o) for o in cfg.get("overrides", [])], variants)

    def runs(self, seeds: list[int], runs_dir: Path) -> list[RunSpec]:
        """Every method × env × seed, in that order."""
        base = Path(runs_dir) / self.name
        return [RunSpec(self.name, m, env, s, (base / m / env_slug(env) / f"seed{s}").resolve(),
                        [*self.overrides, *env_overrides], self.variants[m])
                for m in self.methods for env, env_overrides in self.envs.items() for s in seeds]


def parse_seeds(seeds) -> list[int]:
    """``3`` -> ``[0, 1, 2]``; a list is taken as it is."""
    if isinstance(seeds, int) or (isinstance(seeds, str) and seeds.isdigit()):
        n = int(seeds)
        if n < 1:
            raise ValueError(f"seeds must be a count >= 1 or a list of seeds, got {seeds}")
        return list(range(n))
    return [int(s) for s in seeds]


def parse_parallel(parallel) -> int:
    """``auto``: one run per two CPU cores (at least 1)."""
    if parallel in (None, "auto"):
        return max(1, (os.cpu_count() or 2) // 2)
    if int(parallel) < 1:
        raise ValueError(f"parallel must be >= 1 or auto, got {parallel}")
    return int(parallel)
