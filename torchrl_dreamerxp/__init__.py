"""DreamerV3-XP as TorchRL components.

Subpackages: :mod:`functional` (the formulas), :mod:`modules` (networks), :mod:`objectives` (losses),
:mod:`replay`, :mod:`transforms`, :mod:`envs`, :mod:`training`.
"""
from . import functional

__version__ = "0.1.0"
__all__ = ["functional", "__version__"]
