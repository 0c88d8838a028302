"""TorchRL ``LossModule``s of DreamerV3-XP (distinct from TorchRL's own ``DreamerV3*Loss``)."""
from .actor import ActorLoss
from .critic import CriticLoss
from .dreamer import DreamerV3Loss
from .ensemble import RewardEnsembleLoss
from .world_model import WorldModelLoss

__all__ = ["ActorLoss", "CriticLoss", "DreamerV3Loss", "RewardEnsembleLoss", "WorldModelLoss"]
