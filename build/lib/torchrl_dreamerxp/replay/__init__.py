"""Replay samplers: uniform contiguous slices (DreamerV3) and prioritized trajectories (XP)."""
from .prioritized_trajectory import PrioritizedTrajectorySampler
from .lane_writer import LaneWriter
from .slice_sampler import ContiguousSliceSampler

__all__ = ["ContiguousSliceSampler", "LaneWriter", "PrioritizedTrajectorySampler"]
