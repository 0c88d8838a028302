"""Check a training config before any env or network is built: a typo must not cost a run. Types, unknown keys
and each key's range are the schema's (:mod:`.config_schema`); this module adds the checks over several keys."""
from __future__ import annotations

import torch
from omegaconf import DictConfig

from ..replay.trajectory_scores import make_score
from ..schedulers import scheduler_from_config
from .config_schema import ConfigError, schema_problems, xp_methods
from .precision import resolve_precision
from .presets import PLACEHOLDER, apply_family_defaults

__all__ = ["ConfigError", "validate_config"]


def _cross_key_problems(cfg: DictConfig, ok) -> list[str]:
    """Checks over several keys, each only on keys that passed their own rule (``ok(*keys)``)."""
    problems, xp, methods, slice_len = [], cfg.xp, xp_methods(), cfg.batch_length + cfg.replay_context
    if ok("batch_length", "replay_context", "batch_size", "prefill", "frames_per_batch", "steps", "replay_size"):
        for key, least, why in (
                ("prefill", slice_len, "one slice, batch_length + replay_context, before the first update"),
                ("steps", cfg.prefill + 1, "past prefill, or the run makes no update"),
                ("steps", cfg.frames_per_batch, "one round of frames_per_batch"),
                ("replay_size", cfg.batch_size * slice_len, "one batch, batch_size × (batch_length + replay_context)")):
            if cfg[key] < least:
                problems.append(f"{key}={cfg[key]}: must be at least {least}: {why}")
    if xp.name not in methods:
        problems.append(f"xp.name={xp.name!r}: must be one of {', '.join(methods)} (configs/xp/)")
    elif methods[xp.name] != (xp.prioritized, xp.intrinsic):
        problems.append(f"xp.name={xp.name!r}: does not match xp.prioritized={xp.prioritized}, xp.intrinsic="
                        f"{xp.intrinsic} (choose the method with xp=<{'|'.join(methods)}>)")
    if ok("envs", "frames_per_batch") and cfg.frames_per_batch % cfg.envs:
        problems.append(f"frames_per_batch={cfg.frames_per_batch}: must be a multiple of envs={cfg.envs} "
                        f"(each env steps frames_per_batch / envs times per round)")
    if ok("model.deter", "model.blocks") and cfg.model.deter % cfg.model.blocks:
        problems.append(f"model.deter={cfg.model.deter}: must be divisible by model.blocks={cfg.model.blocks}")
    if ok("xp.intrinsic", "xp.scheduler", "xp.scheduler.name") and xp.intrinsic:
        try:
            scheduler_from_config(xp.scheduler)
        except (ValueError, TypeError) as err:
            problems.append(f"xp.scheduler.{xp.scheduler.name}: {err}")
    if ok("xp.prioritized", "xp.replay", "xp.replay.score") and xp.prioritized:
        try:
            make_score(xp.replay.score, **(xp.replay.get(xp.replay.score) or {}))
        except (ValueError, TypeError) as err:
            problems.append(f"xp.replay.{xp.replay.score}: {err}")
    if ok("collector.backend", "collector.workers", "frames_per_batch") and cfg.collector.backend == "ray":
        from .ray_collection import ray_config_problems

        problems += [f"collector.backend=ray: {msg}" for msg in ray_config_problems(cfg)]
    if ok("device") and cfg.device.startswith("cuda") and not torch.cuda.is_available():
        problems.append(f"device={cfg.device!r}: no CUDA device here (use cpu)")
    return problems


def validate_config(cfg: DictConfig, check_env: bool = True) -> None:
    """Fill the keys left to the env family (:func:`~torchrl_dreamerxp.training.presets.apply_family_defaults`),
    then raise one :class:`ConfigError` listing every impossible value of a ``configs/train.yaml`` config;
    a valid ``precision=auto`` becomes the dtype it resolves to
    (:func:`~torchrl_dreamerxp.training.precision.resolve_precision`).

    Examples:
        >>> from hydra import compose, initialize_config_dir
        >>> from torchrl_dreamerxp.paths import config_dir
        >>> with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        ...     cfg = compose("train", overrides=["agent.horizon=0"])
        >>> validate_config(cfg)
        Traceback (most recent call last):
        ...
        torchrl_dreamerxp.training.config_schema.ConfigError: invalid config:
          agent.horizon=0: must be an integer >= 1
    """
    no_family = apply_family_defaults(cfg) is None  # an unknown env: the env line says why, not every null key
    problems, bad = schema_problems(cfg, skip=lambda key, value: no_family and value in (None, PLACEHOLDER))
    if not bad & {"xp", "xp.name", "xp.prioritized", "xp.intrinsic", "model"}:
        problems += _cross_key_problems(cfg, ok=lambda *keys: not bad.intersection(keys))
    if check_env:
        from ..envs import check_env_name

        try:
            check_env_name(cfg.env)
        except (ValueError, ImportError) as err:
            problems.append(f"env={cfg.env!r}: {err}")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    # precision=auto: what this device computes fastest, recorded in config.yaml as the value it resolved to
    cfg.precision = resolve_precision(cfg.precision, cfg.device)
