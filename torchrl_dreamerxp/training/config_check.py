"""Check a training config before any env or network is built: a typo must not cost a run."""
from __future__ import annotations

import numbers
import os

from omegaconf import DictConfig, OmegaConf

from ..paths import config_dir
from ..schedulers import SCHEDULER_NAMES, scheduler_from_config
from .presets import FAMILY_KEYS, PLACEHOLDER, apply_family_defaults

__all__ = ["ConfigError", "validate_config", "XP_METHODS", "LOGGER_MODES"]

XP_METHODS = ("none", "prioritized", "intrinsic", "full")
LOGGER_MODES = ("offline", "online", "disabled", "none")
_CONFIGS = config_dir()


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the allowed values.

    Examples:
        >>> isinstance(ConfigError("steps=0: must be an integer >= 1"), ValueError)
        True
    """


def _int(lo=None):
    def check(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and (lo is None or v >= lo)
    return check


def _num(lo=None, hi=None, lo_open=False):
    def check(v):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or v != v:
            return False
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return hi is None or v <= hi
    return check


def _optional(check):
    return lambda v: v is None or check(v)


def _bool(v):
    return isinstance(v, bool)


def _choice(*values):
    return lambda v: v in values


# key -> (check, what is allowed)
RULES = {
    "seed": (_int(), "an integer"),
    "steps": (_int(1), "an integer >= 1 (env steps)"),
    "train_ratio": (_num(0, lo_open=True), "a number > 0 (replayed steps per env step)"),
    "batch_size": (_int(1), "an integer >= 1"),
    "batch_length": (_int(1), "an integer >= 1"),
    "replay_context": (_int(0), "an integer >= 0"),
    "replay_size": (_int(1), "an integer >= batch_length + replay_context"),
    "replay_memmap_above": (_int(0), "an integer >= 0"),
    "prefill": (_int(0), "an integer >= 0"),
    "frames_per_batch": (_int(1), "an integer >= 1"),
    "envs": (_int(1), "an integer >= 1 (training envs; > 1 steps them in worker processes)"),
    "threads": (_int(0), "an integer >= 0 (0: torch's default)"),
    "checkpoint_every": (_int(1), "an integer >= 1 (env steps)"),
    "checkpoint_keep": (_int(1), "an integer >= 1"),
    "max_nonfinite_updates": (_int(1), "an integer >= 1"),
    "resume": (_bool, "true or false"),
    "compile": (lambda v: _bool(v) or v == "reduce-overhead", "true, false or reduce-overhead (CUDA graphs on a GPU)"),
    "collector.backend": (_choice("local", "ray"), "local or ray"),
    "collector.workers": (_int(1), "an integer >= 1 (Ray workers)"),
    "collector.worker_cpus": (_num(0, lo_open=True), "a number > 0 (CPUs per Ray worker)"),
    "precision": (_choice("float32", "bfloat16"), "float32 or bfloat16"),
    "progress": (_bool, "true or false"),
    "agent.horizon": (_int(1), "an integer >= 1"),
    "agent.lr": (_num(0, lo_open=True), "a number > 0"),
    "agent.actor_lr": (_optional(_num(0, lo_open=True)), "null (agent.lr) or a number > 0"),
    "agent.critic_lr": (_optional(_num(0, lo_open=True)), "null (agent.lr) or a number > 0"),
    "agent.warmup": (_int(0), "an integer >= 0 (updates)"),
    "agent.agc": (_num(0, lo_open=True), "a number > 0"),
    "agent.eps": (_num(0, lo_open=True), "a number > 0"),
    "agent.slow_critic_rate": (_num(0, 1, lo_open=True), "a number in (0, 1]"),
    "agent.lmbda": (_num(0, 1), "a number in [0, 1]"),
    "agent.entropy_coef": (_num(0), "a number >= 0"),
    "agent.free_nats": (_num(0), "a number >= 0"),
    "agent.dyn_scale": (_num(0), "a number >= 0"),
    "agent.rep_scale": (_num(0), "a number >= 0"),
    "agent.replay_value_scale": (_num(0), "a number >= 0"),
    "agent.return_horizon": (_num(1, lo_open=True), "a number > 1 (γ = 1 − 1/return_horizon)"),
    "agent.return_norm_debias": (_bool, "true or false"),
    "eval.every": (_int(1), "an integer >= 1 (env steps)"),
    "eval.episodes": (_int(1), "an integer >= 1"),
    "eval.max_steps": (_int(1), "an integer >= 1"),
    "logger.mode": (_choice(*LOGGER_MODES), f"one of {', '.join(LOGGER_MODES)}"),
    "logger.every": (_int(1), "an integer >= 1 (env steps)"),
    "logger.video": (_bool, "true or false"),
    "model.deter": (_int(1), "an integer >= 1 divisible by model.blocks"),
    "model.hidden": (_int(1), "an integer >= 1"),
    "model.stoch": (_int(1), "an integer >= 1"),
    "model.classes": (_int(2), "an integer >= 2"),
    "model.blocks": (_int(1), "an integer >= 1"),
    "model.units": (_int(1), "an integer >= 1"),
    "model.depth": (_int(1), "an integer >= 1"),
    "xp.name": (_choice(*XP_METHODS), f"one of {', '.join(XP_METHODS)}"),
}
# only checked when the extension is on
PRIORITIZED_RULES = {
    "xp.replay.lambda_r": (_num(0), "a number >= 0"),
    "xp.replay.lambda_delta": (_num(0), "a number >= 0"),
    "xp.replay.lambda_eps": (_num(0), "a number >= 0"),
    "xp.replay.uniform_fraction": (_num(0, 1), "a number in [0, 1]"),
    "xp.replay.alpha": (_num(0, lo_open=True), "a number > 0"),
    "xp.replay.error_rate": (_num(0, 1, lo_open=True), "a number in (0, 1]"),
}
INTRINSIC_RULES = {
    "xp.ensemble.members": (_int(2), "an integer >= 2 (an ensemble of one cannot disagree)"),
    "xp.ensemble.mode": (_choice("latent", "reward"), "latent or reward"),
    "xp.ensemble.units": (_int(1), "an integer >= 1"),
    "xp.ensemble.layers": (_int(0), "an integer >= 0"),
    "xp.ensemble.lr": (_num(0, lo_open=True), "a number > 0"),
    "xp.window": (_int(1), "an integer >= 1"),
    "xp.scheduler.name": (_choice(*SCHEDULER_NAMES), ", ".join(SCHEDULER_NAMES)),
}


def _unknown_keys(cfg: DictConfig, reference: DictConfig, prefix: str = "") -> list[str]:
    unknown = []
    for key in cfg.keys():
        path = f"{prefix}{key}"
        if key not in reference:
            unknown.append(path)
        elif key not in ("env_kwargs", "model", "xp") and OmegaConf.is_dict(cfg[key]) and OmegaConf.is_dict(reference[key]):
            unknown += _unknown_keys(cfg[key], reference[key], f"{path}.")
    return unknown


def validate_config(cfg: DictConfig, check_env: bool = True) -> None:
    """Fill the keys left to the env family (:func:`~torchrl_dreamerxp.training.presets.apply_family_defaults`),
    then raise one :class:`ConfigError` listing every impossible value of a ``configs/train.yaml`` config.

    Unknown keys, wrong types and impossible values (a slice longer than the replay capacity, a horizon
    below 1, a λ outside [0, 1], an ensemble of fewer than 2 members, an env name that does not exist,
    an unknown XP method, ...) each get one line naming the key and what is allowed.

    Examples:
        >>> from hydra import compose, initialize_config_dir
        >>> with initialize_config_dir(config_dir=str(_CONFIGS), version_base="1.3"):
        ...     cfg = compose("train", overrides=["agent.horizon=0"])
        >>> validate_config(cfg)
        Traceback (most recent call last):
        ...
        torchrl_dreamerxp.training.config_check.ConfigError: invalid config:
          agent.horizon=0: must be an integer >= 1
    """
    apply_family_defaults(cfg)  # model, train_ratio and envs left to the env's family
    problems, bad = [], set()
    reference = OmegaConf.load(_CONFIGS / "train.yaml")
    reference.pop("defaults", None)
    reference.model, reference.xp = {}, {}  # config groups, checked by the rules below
    known = ", ".join(sorted(k for k in reference.keys() if k != "hydra"))
    problems += [f"{k}: unknown key (known: {known})" if "." not in k else f"{k}: unknown key"
                 for k in _unknown_keys(cfg, reference)]
    rules = dict(RULES)
    if cfg.get("xp") is not None and cfg.xp.get("prioritized", False):
        rules.update(PRIORITIZED_RULES)
    if cfg.get("xp") is not None and cfg.xp.get("intrinsic", False):
        rules.update(INTRINSIC_RULES)
    no_family = cfg.get("family") is None  # an unknown env: the env line says why, not every key it left null
    for key, (check, allowed) in rules.items():
        value = OmegaConf.select(cfg, key, default="<missing>", throw_on_missing=False)
        if no_family and key.split(".")[0] in FAMILY_KEYS and (value is None or value == PLACEHOLDER):
            bad.add(key)
        elif value == "<missing>":
            problems.append(f"{key}: missing (must be {allowed})")
            bad.add(key)
        elif not check(value):
            problems.append(f"{key}={value!r}: must be {allowed}")
            bad.add(key)

    def ok(*keys):  # cross-key checks only on keys that passed their own
        return not bad.intersection(keys)
    if ok("batch_length", "replay_context", "replay_size"):
        slice_len = cfg.batch_length + cfg.replay_context
        if slice_len > cfg.replay_size:
            problems.append(f"replay_size={cfg.replay_size}: must hold one slice of batch_length + replay_context "
                            f"= {slice_len} steps")
    if ok("prefill", "batch_length", "replay_context") and cfg.prefill < cfg.batch_length + cfg.replay_context:
        problems.append(f"prefill={cfg.prefill}: must be at least one slice, batch_length + replay_context = "
                        f"{cfg.batch_length + cfg.replay_context} env steps, before the first update")
    if ok("xp.name") and cfg.get("xp") is not None:
        flags = {"none": (False, False), "prioritized": (True, False), "intrinsic": (False, True), "full": (True, True)}
        have = (bool(cfg.xp.get("prioritized", False)), bool(cfg.xp.get("intrinsic", False)))
        if flags[cfg.xp.name] != have:
            problems.append(f"xp.name={cfg.xp.name!r}: does not match xp.prioritized={have[0]}, xp.intrinsic={have[1]} "
                            f"(choose the method with xp=<none|prioritized|intrinsic|full>)")
    if ok("envs", "frames_per_batch") and cfg.frames_per_batch % cfg.envs:
        problems.append(f"frames_per_batch={cfg.frames_per_batch}: must be a multiple of envs={cfg.envs} "
                        f"(each env steps frames_per_batch / envs times per round)")
    if ok("envs") and cfg.envs > 1 and cfg.get("xp") is not None and cfg.xp.get("prioritized", False):
        problems.append(f"envs={cfg.envs}: the prioritized trajectory sampler reads one stream of steps; use envs=1 "
                        f"with xp={cfg.xp.name} (parallel envs work with the uniform replay, xp=none|intrinsic)")
    if ok("model.deter", "model.blocks") and cfg.model.deter % cfg.model.blocks:
        problems.append(f"model.deter={cfg.model.deter}: must be divisible by model.blocks={cfg.model.blocks}")
    if cfg.get("xp") is not None and cfg.xp.get("intrinsic", False) and ok("xp.scheduler.name"):
        try:
            scheduler_from_config(cfg.xp.scheduler)
        except (ValueError, TypeError) as err:
            problems.append(f"xp.scheduler.{cfg.xp.scheduler.name}: {err}")
    if cfg.get("collector") is not None and cfg.collector.get("backend") == "ray" and ok("collector.workers"):
        ray_problems = []
        if ok("frames_per_batch") and cfg.frames_per_batch % cfg.collector.workers:
            ray_problems.append(f"frames_per_batch={cfg.frames_per_batch} must be a multiple of "
                                f"collector.workers={cfg.collector.workers}")
        if cfg.get("envs", 1) != 1:
            ray_problems.append("envs must be 1 (each Ray worker steps one env; use collector.workers)")
        if cfg.get("xp") is not None and cfg.xp.get("prioritized", False):
            ray_problems.append(f"xp={cfg.xp.name}: the prioritized trajectory sampler reads one stream of steps")
        if cfg.get("device", "cpu") != "cpu":
            ray_problems.append("device must be cpu (the workers step CPU copies of the policy)")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            ray_problems.append("not under torchrun (one learner process feeds from the Ray workers)")
        try:
            import ray  # noqa: F401
        except ImportError:
            ray_problems.append("Ray is not installed (pip install ray)")
        problems += [f"collector.backend=ray: {msg}" for msg in ray_problems]
    if cfg.get("device", "cpu") != "cpu":
        import torch

        if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
            problems.append(f"device={cfg.device!r}: no CUDA device here (use cpu)")
    if check_env:
        from ..envs import check_env_name

        try:
            check_env_name(cfg.env)
        except (ValueError, ImportError) as err:
            problems.append(f"env={cfg.env!r}: {err}")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
