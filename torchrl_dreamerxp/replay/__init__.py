"""Replay samplers: uniform contiguous slices (DreamerV3) and prioritized trajectories (XP)."""
from .slice_sampler import ContiguousSliceSampler

__all__ = ["ContiguousSliceSampler"]
