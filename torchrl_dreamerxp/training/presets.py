"""Per-family defaults: the model preset, train ratio and env count picked from the env name.

The official DreamerV3 ``configs.yaml`` has one block per domain (``atari100k``, ``dmc_proprio``,
``dmc_vision``); ``configs/family/<family>.yaml`` are ours, one per ``make_env`` family. A run's config leaves
``model``, ``train_ratio`` and ``envs`` to its family unless the command line sets them.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from ..paths import config_dir

__all__ = ["FAMILY_PRESETS", "FAMILY_KEYS", "family_of", "apply_family_defaults"]

CONFIGS = config_dir()
#: make_env family -> configs/family/<name>.yaml
FAMILY_PRESETS = {"gym": "gym", "dmc_proprio": "dmc_proprio", "dmc": "dmc_vision", "atari": "atari100k"}
#: the keys a family sets when a config leaves them null (``model``: when it is the ``family`` placeholder)
FAMILY_KEYS = ("model", "train_ratio", "envs")
PLACEHOLDER = "family"  # configs/model/family.yaml: every key null unless set on the command line


def family_of(env: str) -> str | None:
    """The family preset of an env name, or ``None`` for a name that is not ``<family>/<task>``.

    Examples:
        >>> family_of("dmc/cup_catch"), family_of("gym/CartPole-v1"), family_of("nope")
        ('dmc_vision', 'gym', None)
    """
    family, sep, _ = str(env).partition("/")
    return FAMILY_PRESETS.get(family) if sep else None


def apply_family_defaults(cfg: DictConfig, configs: Path = CONFIGS) -> str | None:
    """Fills ``train_ratio`` and ``envs`` where ``cfg`` leaves them null, and ``model`` where it is the
    ``family`` placeholder (its non-null keys, set on the command line, applied on top of the family's
    preset), from the env's family preset; records ``family`` and returns it (``None``: an env name the
    config check will refuse, nothing filled).

    Examples:
        >>> cfg = OmegaConf.create({"env": "dmc_proprio/walker_walk", "train_ratio": None, "envs": 2,
        ...                         "model": {"name": "family", "units": 64, "deter": None}})
        >>> apply_family_defaults(cfg), cfg.model.name, cfg.model.units, cfg.model.deter, cfg.train_ratio, cfg.envs
        ('dmc_proprio', 'vector_small', 64, 256, 512, 2)
    """
    family = family_of(cfg.get("env"))
    if family is None:
        return None
    preset = OmegaConf.load(configs / "family" / f"{family}.yaml")
    with open_dict(cfg):
        model = cfg.get("model")
        if model is None or model.get("name") == PLACEHOLDER:
            if model is None:
                cfg.model = model = {}
            for key, value in OmegaConf.load(configs / "model" / f"{preset.model}.yaml").items():
                if key == "name" or model.get(key) is None:  # a key set on the command line stays
                    model[key] = value
        for key in FAMILY_KEYS:
            if key != "model" and cfg.get(key) is None:
                cfg[key] = preset[key]
        cfg.family = family
    return family
