"""DreamerV3-XP as TorchRL components.

Subpackages: :mod:`functional` (the formulas), :mod:`modules` (networks), :mod:`objectives` (losses),
:mod:`replay`, :mod:`transforms`, :mod:`schedulers`, :mod:`envs`, :mod:`training`, :mod:`experiments`.

Examples:
    >>> import torchrl_dreamerxp
    >>> torchrl_dreamerxp.replay.PrioritizedTrajectorySampler.__name__, (torchrl_dreamerxp.config_dir() / "train.yaml").exists()
    ('PrioritizedTrajectorySampler', True)
"""
from . import envs, experiments, functional, modules, objectives, replay, schedulers, training, transforms
from .paths import config_dir

__version__ = "0.1.0"
__all__ = ["functional", "modules", "objectives", "replay", "transforms", "schedulers", "envs", "training",
           "experiments", "config_dir", "__version__"]
