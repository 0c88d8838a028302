"""Replay samplers: uniform contiguous slices (DreamerV3) and prioritized trajectories (XP), with their scores."""
from .lane_writer import LaneWriter
from .prioritized_trajectory import PrioritizedTrajectorySampler
from .slice_sampler import ContiguousSliceSampler
from .trajectory_index import TrajectoryIndex
from .trajectory_scores import SCORE_NAMES, CallableScore, CuriousScore, TrajectoryScore, UniformScore, XPScore, make_score

__all__ = ["CallableScore", "ContiguousSliceSampler", "CuriousScore", "LaneWriter", "PrioritizedTrajectorySampler",
           "SCORE_NAMES", "TrajectoryIndex", "TrajectoryScore", "UniformScore", "XPScore", "make_score"]
