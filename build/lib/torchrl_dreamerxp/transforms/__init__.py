"""TorchRL transforms of DreamerV3-XP."""
from .intrinsic_reward import IntrinsicRewardTransform

__all__ = ["IntrinsicRewardTransform"]
