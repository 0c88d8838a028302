"""Where the hydra configs are: inside an installed wheel, or the checkout's top-level ``configs/``."""
from __future__ import annotations

from pathlib import Path

__all__ = ["config_dir"]


def config_dir() -> Path:
    """``torchrl_dreamerxp/configs`` of an installed wheel (package data), else the checkout's ``configs/``.

    Examples:
        >>> (config_dir() / "train.yaml").exists()
        True
    """
    packaged = Path(__file__).resolve().parent / "configs"
    return packaged if (packaged / "train.yaml").exists() else Path(__file__).resolve().parents[1] / "configs"
