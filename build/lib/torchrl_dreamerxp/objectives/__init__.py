"""TorchRL ``LossModule``s of DreamerV3-XP (distinct from TorchRL's own ``DreamerV3*Loss``)."""
from .actor import ActorLoss
from .critic import CriticLoss
from .ensemble import RewardEnsembleLoss
from .world_model import WorldModelLoss

__all__ = ["ActorLoss", "CriticLoss", "RewardEnsembleLoss", "WorldModelLoss"]
