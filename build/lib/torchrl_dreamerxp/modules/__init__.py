"""Networks of DreamerV3-XP: RSSM, encoder/decoder, heads, actor, imagination, reward ensemble."""
from .actor import Actor
from .decoder import Decoder
from .encoder import Encoder
from .heads import ContinueHead, TwoHotHead
from .imagination import Imagination
from .policy import DreamerPolicy
from .layers import MLP, BlockLinear
from .reward_ensemble import EnsembleMLP, RewardEnsemble
from .rssm import RSSM
from .world_model import WorldModel

__all__ = ["Actor", "BlockLinear", "ContinueHead", "Decoder", "DreamerPolicy", "Encoder", "EnsembleMLP", "Imagination", "MLP", "RSSM", "RewardEnsemble", "TwoHotHead", "WorldModel"]
