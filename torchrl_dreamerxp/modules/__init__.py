"""Networks of DreamerV3-XP: RSSM, encoder/decoder, heads, actor, imagination, reward ensemble, and their TensorDict faces."""
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
from .tensordict_modules import DreamerModelEnv, RewardEnsembleModule, RSSMImagineStep, RSSMObserveStep, WorldModelStep

__all__ = ["Actor", "BlockLinear", "ContinueHead", "Decoder", "DreamerPolicy", "Encoder", "EnsembleMLP", "Imagination", "MLP", "RSSM", "RSSMImagineStep", "RSSMObserveStep",
           "RewardEnsemble", "RewardEnsembleModule", "TwoHotHead", "WorldModel", "WorldModelStep", "DreamerModelEnv"]
