"""The training config's schema: hydra structured configs that carry every key's type and allowed range.

``configs/train.yaml`` holds the values (with comments for users); these dataclasses, registered in hydra's
ConfigStore as ``train_schema`` and listed first in its defaults, hold the types, so hydra refuses a wrong type
or an unknown key while composing (``steps=abc``: "could not be converted to Integer, full_key: steps"). Each
field's :class:`Rule` is its allowed range; :func:`schema_problems` checks every rule at once, and
:mod:`~torchrl_dreamerxp.training.config_check` adds the checks that span several keys.
"""
from __future__ import annotations

import numbers
import os
import re
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Callable, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from ..paths import config_dir
from ..replay.trajectory_scores import SCORE_NAMES
from ..schedulers import SCHEDULER_NAMES
from .disk_space import nearest_existing

__all__ = ["ConfigError", "Rule", "TrainConfig", "flat_keys", "schema_problems", "xp_methods", "LOGGER_MODES"]

LOGGER_MODES = ("offline", "online", "disabled", "none")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the allowed values.

    Examples:
        >>> isinstance(ConfigError("steps=0: must be an integer >= 1"), ValueError)
        True
    """


def xp_methods() -> dict[str, tuple[bool, bool]]:
    """The XP methods, declared once by the files in ``configs/xp/``: name → (prioritized, intrinsic).

    Examples:
        >>> xp_methods()["full"], sorted(xp_methods())
        ((True, True), ['full', 'intrinsic', 'none', 'prioritized'])
    """
    methods = {}
    for path in sorted((config_dir() / "xp").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        methods[path.stem] = (bool(cfg.prioritized), bool(cfg.intrinsic))
    return methods


@dataclass(frozen=True)
class Rule:
    """What a key allows: a predicate on its value and the words an error shows ("an integer >= 1").

    Examples:
        >>> Rule.integer(1).check(0), Rule.integer(1).allowed
        (False, 'an integer >= 1')
        >>> Rule.number(0, 1, lo_open=True).allowed, Rule.one_of("a", "b").check("b")
        ('a number in (0, 1]', True)
    """

    check: Callable[[Any], bool]
    allowed: str

    @staticmethod
    def integer(lo: int | None = None, note: str = "", hi: int | None = None) -> Rule:
        def check(v):
            return (isinstance(v, numbers.Integral) and not isinstance(v, bool) and (lo is None or v >= lo)
                    and (hi is None or v <= hi))
        bounds = f" in [{lo}, {hi}]" if hi is not None else f" >= {lo}" if lo is not None else ""
        return Rule(check, "an integer" + bounds + (f" {note}" if note else ""))

    @staticmethod
    def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, note: str = "") -> Rule:
        def check(v):
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or v != v:
                return False
            return (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or v <= hi)
        if hi is not None:
            words = f"a number in {'(' if lo_open else '['}{lo}, {hi}]"
        else:
            words = f"a number {'>' if lo_open else '>='} {lo}"
        return Rule(check, words + (f" {note}" if note else ""))

    @staticmethod
    def one_of(*values: Any, words: str | None = None) -> Rule:
        return Rule(lambda v: v in values, words or ("one of " + ", ".join(map(str, values))))

    @staticmethod
    def flag() -> Rule:
        return Rule(lambda v: isinstance(v, bool), "true or false")

    def or_null(self, null_means: str) -> Rule:
        return Rule(lambda v: v is None or self.check(v), f"null ({null_means}) or {self.allowed}")


def ranged(rule: Rule, default: Any = MISSING, when: str | None = None) -> Any:
    """A dataclass field checked by ``rule``; ``when`` names a sibling flag that must be on for it to count."""
    return field(default=default, metadata={"rule": rule, "when": when})


def extension(flag: str) -> Any:
    """A section (or key) that only an XP extension reads: null unless its ``flag`` is on, then required."""
    return field(default=None, metadata={"when": flag})


POSITIVE = Rule.number(0, lo_open=True)


def _is_device(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"cpu|cuda(:\d+)?", value) is not None


def _writable_dir(value: Any) -> bool:
    """The nearest existing folder on the way to ``value`` can be written (the rest is created)."""
    if not isinstance(value, str) or not value:
        return False
    path = nearest_existing(value)
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


@dataclass
class ModelConfig:
    """A model preset (``configs/model/``); every key null in ``family``, the placeholder its env fills."""

    name: str = MISSING
    deter: Optional[int] = ranged(Rule.integer(1, "divisible by model.blocks"))
    hidden: Optional[int] = ranged(Rule.integer(1))
    stoch: Optional[int] = ranged(Rule.integer(1))
    classes: Optional[int] = ranged(Rule.integer(2))
    blocks: Optional[int] = ranged(Rule.integer(1))
    units: Optional[int] = ranged(Rule.integer(1))
    depth: Optional[int] = ranged(Rule.integer(1))
    enc_layers: Optional[int] = ranged(Rule.integer(0))
    dec_layers: Optional[int] = ranged(Rule.integer(0))
    actor_layers: Optional[int] = ranged(Rule.integer(0))
    critic_layers: Optional[int] = ranged(Rule.integer(0))
    strided_cnn: Optional[bool] = ranged(Rule.flag())
    lr: Optional[float] = ranged(POSITIVE)
    warmup: Optional[int] = ranged(Rule.integer(0, "(updates)"))
    return_norm_debias: Optional[bool] = ranged(Rule.flag())


@dataclass
class ReplayConfig:
    """``xp.replay``: the prioritized trajectory sampler's settings."""

    score: str = ranged(Rule.one_of(*SCORE_NAMES, words=", ".join(SCORE_NAMES)))
    xp: Dict[str, Any] = field(default_factory=dict)  # each score's constructor arguments (checked there)
    curious: Dict[str, Any] = field(default_factory=dict)
    uniform: Dict[str, Any] = field(default_factory=dict)
    uniform_fraction: float = ranged(Rule.number(0, 1))
    alpha: float = ranged(POSITIVE)
    error_rate: float = ranged(Rule.number(0, 1, lo_open=True))
    refresh_every: int = ranged(Rule.integer(1, "(samples)"))


@dataclass
class EnsembleConfig:
    """``xp.ensemble``: the reward ensemble of latent reward disagreement."""

    members: int = ranged(Rule.integer(2, "(an ensemble of one cannot disagree)"))
    mode: str = ranged(Rule.one_of("latent", "reward", words="latent or reward"))
    units: int = ranged(Rule.integer(1))
    layers: int = ranged(Rule.integer(0))
    lr: float = ranged(POSITIVE)


@dataclass
class SchedulerConfig:
    """``xp.scheduler``: the λ scheduler's name and, under each name, its constructor's arguments (which the
    constructor checks)."""

    name: str = ranged(Rule.one_of(*SCHEDULER_NAMES, words=", ".join(SCHEDULER_NAMES)))
    exponential: Dict[str, Any] = field(default_factory=dict)
    constant: Dict[str, Any] = field(default_factory=dict)
    return_average: Dict[str, Any] = field(default_factory=dict)


@dataclass
class XPConfig:
    """An XP method (``configs/xp/``): its switches and the settings of the extensions it turns on."""

    name: str = MISSING  # checked against configs/xp/ by config_check
    prioritized: bool = ranged(Rule.flag())
    intrinsic: bool = ranged(Rule.flag())
    replay: Optional[ReplayConfig] = extension("prioritized")
    ensemble: Optional[EnsembleConfig] = extension("intrinsic")
    window: Optional[int] = ranged(Rule.integer(1), default=None, when="intrinsic")
    scheduler: Optional[SchedulerConfig] = extension("intrinsic")


@dataclass
class CollectorConfig:
    backend: str = ranged(Rule.one_of("local", "ray", words="local or ray"))
    workers: int = ranged(Rule.integer(1, "(Ray workers)"))
    worker_cpus: float = ranged(Rule.number(0, lo_open=True, note="(CPUs per Ray worker)"))
    ray_address: Optional[str] = None


@dataclass
class AgentConfig:
    horizon: int = ranged(Rule.integer(1))
    lr: Optional[float] = ranged(POSITIVE)  # ${model.lr}: null until the env's family fills the model
    actor_lr: Optional[float] = ranged(POSITIVE.or_null("agent.lr"))
    critic_lr: Optional[float] = ranged(POSITIVE.or_null("agent.lr"))
    warmup: Optional[int] = ranged(Rule.integer(0, "(updates)"))
    agc: float = ranged(POSITIVE)
    eps: float = ranged(POSITIVE)
    slow_critic_rate: float = ranged(Rule.number(0, 1, lo_open=True))
    lmbda: float = ranged(Rule.number(0, 1))
    entropy_coef: float = ranged(Rule.number(0))
    free_nats: float = ranged(Rule.number(0))
    dyn_scale: float = ranged(Rule.number(0))
    rep_scale: float = ranged(Rule.number(0))
    replay_value_scale: float = ranged(Rule.number(0))
    return_horizon: float = ranged(Rule.number(1, lo_open=True, note="(γ = 1 − 1/return_horizon)"))
    return_norm_debias: Optional[bool] = ranged(Rule.flag())


@dataclass
class EvalConfig:
    every: int = ranged(Rule.integer(1, "(env steps)"))
    episodes: int = ranged(Rule.integer(1))
    max_steps: int = ranged(Rule.integer(1))


@dataclass
class LoggerConfig:
    mode: str = ranged(Rule.one_of(*LOGGER_MODES))
    project: str = MISSING
    every: int = ranged(Rule.integer(1, "(env steps)"))
    video: bool = ranged(Rule.flag())
    group: Optional[str] = None
    job_type: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """``configs/train.yaml``: one training run (the values and their meaning are in that file).

    Examples:
        >>> cfg = OmegaConf.structured(TrainConfig)  # the schema alone: types, no values
        >>> OmegaConf.get_type(cfg.agent).__name__, OmegaConf.is_missing(cfg, "steps")
        ('AgentConfig', True)
        >>> cfg.steps = "abc"
        Traceback (most recent call last):
        ...
        omegaconf.errors.ValidationError: Value 'abc' of type 'str' could not be converted to Integer
            full_key: steps
            object_type=TrainConfig
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    xp: XPConfig = field(default_factory=XPConfig)
    env: str = MISSING  # checked by make_env's name check
    env_kwargs: Dict[str, Any] = field(default_factory=dict)
    family: Optional[str] = None
    seed: int = ranged(Rule.integer(0, hi=2**31 - 1))  # offset per rank and env, then seeds numpy (< 2^32)
    steps: int = ranged(Rule.integer(1, "(env steps)"))
    train_ratio: Optional[float] = ranged(Rule.number(0, lo_open=True, note="(replayed steps per env step)"))
    batch_size: int = ranged(Rule.integer(1))
    batch_length: int = ranged(Rule.integer(1))
    replay_context: int = ranged(Rule.integer(0))
    replay_size: int = ranged(Rule.integer(1, "(and at least batch_length + replay_context)"))
    replay_memmap_above: int = ranged(Rule.integer(0))
    prefill: int = ranged(Rule.integer(0))
    frames_per_batch: int = ranged(Rule.integer(1))
    envs: Optional[int] = ranged(Rule.integer(1, "(training envs; > 1 steps them in worker processes)"))
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    device: str = ranged(Rule(_is_device, "cpu, cuda or cuda:<index>"))
    threads: int = ranged(Rule.integer(0, "(0: torch's default)"))
    precision: str = ranged(Rule.one_of("float32", "bfloat16", "auto", words="float32, bfloat16 or auto"))
    compile: Any = ranged(Rule(lambda v: isinstance(v, bool) or v == "reduce-overhead",
                               "true, false or reduce-overhead (CUDA graphs on a GPU)"))
    run_dir: str = ranged(Rule(_writable_dir, "a folder that can be created and written"))
    resume: bool = ranged(Rule.flag())
    resume_allow_changes: bool = ranged(Rule.flag())
    exact_resume: bool = ranged(Rule.flag())
    checkpoint_every: int = ranged(Rule.integer(1, "(env steps)"))
    checkpoint_keep: int = ranged(Rule.integer(1))
    max_nonfinite_updates: int = ranged(Rule.integer(1))
    max_loss: float = ranged(Rule.number(0, lo_open=True, note="(an update whose loss is above it is skipped)"))
    progress: bool = ranged(Rule.flag())
    agent: AgentConfig = field(default_factory=AgentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def flat_keys(tree: dict, prefix: str = "") -> dict:
    """A nested config as ``{"dotted.key": value}`` (leaves only; an empty section has no key).

    Examples:
        >>> flat_keys({"agent": {"lr": 1e-4, "tags": [1]}, "env_kwargs": {}, "seed": 0})
        {'agent.lr': 0.0001, 'agent.tags': [1], 'seed': 0}
    """
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _schema_of(hint: Any) -> type | None:
    """The dataclass behind a field's type (``Optional[X]`` included), or None."""
    for candidate in (hint, *typing.get_args(hint)):
        if is_dataclass(candidate):
            return candidate
    return None


def schema_problems(cfg: DictConfig, schema: type = TrainConfig, prefix: str = "",
                    skip: Callable[[str, Any], bool] = lambda key, value: False) -> tuple[list[str], set[str]]:
    """Every key of ``cfg`` outside ``schema`` and every value outside its field's :class:`Rule`, one line each,
    and the set of keys that failed (the cross-key checks skip them). ``skip(key, value)`` leaves a key unchecked.

    Hydra already refused unknown keys and wrong types while composing; this also covers a config built or
    edited in code, and checks the ranges no type can say.

    Examples:
        >>> cfg = OmegaConf.create({"horizon": 0, "lr": 1e-4, "typo": 1})
        >>> problems, bad = schema_problems(cfg, AgentConfig, "agent.")
        >>> problems[:2], "agent.lmbda" in bad
        (['agent.typo: unknown key', 'agent.horizon=0: must be an integer >= 1'], True)
    """
    problems, bad = [], set()
    hints = typing.get_type_hints(schema)
    names = {f.name for f in fields(schema)}
    known = f" (known: {', '.join(sorted(names))})" if not prefix else ""
    problems += [f"{prefix}{key}: unknown key{known}" for key in cfg.keys() if key not in names]
    for f in fields(schema):
        key, meta = f"{prefix}{f.name}", f.metadata
        if meta.get("when") and not cfg.get(meta["when"], False):
            continue  # an extension's settings, with the extension off
        if f.name not in cfg or OmegaConf.is_missing(cfg, f.name) or (meta.get("when") and cfg[f.name] is None):
            if meta.get("when") or f.default == MISSING:
                problems.append(f"{key}: missing" + (f" (must be {meta['rule'].allowed})" if "rule" in meta else ""))
                bad.add(key)
            continue
        value = cfg[f.name]
        nested = _schema_of(hints[f.name])
        if skip(key, value):
            bad.add(key)
        elif nested is not None and isinstance(value, DictConfig):
            sub_problems, sub_bad = schema_problems(value, nested, f"{key}.", skip)
            problems, bad = problems + sub_problems, bad | sub_bad
        elif "rule" in meta and not meta["rule"].check(value):
            problems.append(f"{key}={value!r}: must be {meta['rule'].allowed}")
            bad.add(key)
    return problems, bad
