"""Run identity: a hash of the resolved config keys that change what a run learns or measures."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import OmegaConf

from ..training.checkpointer import RESUME_MAY_CHANGE
from ..training.config_schema import flat_keys
from ..training.precision import UNRECORDED_PRECISION

__all__ = ["NOT_IDENTITY", "identity_config", "identity_hash", "expected_config", "config_differences"]

#: key prefixes that leave the result alone: what a resume may change (where the run lives, how it reports, how
#: fast it runs), except the budget and the evaluation, which change what a run learns or measures
NOT_IDENTITY = tuple(key for key in RESUME_MAY_CHANGE if key not in ("steps", "eval."))


def identity_config(cfg) -> dict:
    """The flat ``{dotted key: value}`` of a resolved config, without :data:`NOT_IDENTITY`.

    Examples:
        >>> identity_config({"seed": 1, "run_dir": "/tmp/x", "logger": {"mode": "offline"}, "model": {"units": 8}})
        {'seed': 1, 'model.units': 8}
    """
    if not isinstance(cfg, dict):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in flat_keys(cfg).items() if not k.startswith(NOT_IDENTITY)}


def identity_hash(cfg, without: tuple[str, ...] = ()) -> str:
    """12 hex digits naming what a run is; equal for runs that differ only in :data:`NOT_IDENTITY` keys (and
    ``without``: ``("seed",)`` names the config a set of seeds shares).

    Examples:
        >>> identity_hash({"seed": 1, "threads": 2}) == identity_hash({"seed": 1, "threads": 8})
        True
        >>> identity_hash({"seed": 1}) == identity_hash({"seed": 2})
        False
        >>> identity_hash({"seed": 1}, without=("seed",)) == identity_hash({"seed": 2}, without=("seed",))
        True
    """
    text = json.dumps({k: v for k, v in identity_config(cfg).items() if k not in without}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def expected_config(overrides: list[str], resumed_from: dict | None = None) -> dict:
    """The config ``recipes/train.py`` would run with these overrides, resolved and with the env family's
    defaults filled (what it writes to ``config.yaml``). ``resumed_from``: the config of the run it would
    resume, whose precision ``precision=auto`` keeps (float32 if it records none), as the recipe does.

    Examples:
        >>> expected_config(["env=gym/CartPole-v1", "model=tiny"])["model"]["name"]
        'tiny'
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ..paths import config_dir
    from ..training.config_check import validate_config

    if GlobalHydra.instance().is_initialized():  # inside a hydra app (recipes/experiment.py): its search path
        cfg = compose("train", overrides=list(overrides))
    else:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=list(overrides))
    if resumed_from is not None and cfg.get("precision") == "auto":
        cfg.precision = resumed_from.get("precision", UNRECORDED_PRECISION)  # as recipes/train.py resumes it
    validate_config(cfg, check_env=False)  # fills the family defaults, as the recipe does before writing
    return OmegaConf.to_container(cfg, resolve=True)


def config_differences(expected, found) -> list[str]:
    """``key: found → expected`` for every identity key on which two configs differ.

    Examples:
        >>> config_differences({"model": {"name": "vector_small"}, "seed": 0}, {"model": {"name": "tiny"}, "seed": 0})
        ['model.name: tiny → vector_small']
    """
    a, b = identity_config(expected), identity_config(found)
    return [f"{k}: {b.get(k, '(absent)')} → {a.get(k, '(absent)')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def run_config(run_dir: Path) -> dict | None:
    """A run directory's resolved ``config.yaml`` (``None`` if it has none)."""
    path = Path(run_dir) / "config.yaml"
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True) if path.exists() else None
