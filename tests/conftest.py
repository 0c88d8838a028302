"""Shared test fixtures: a tiny world model and a replayed batch in its layout (factories, called with sizes)."""
import pytest
import torch
from tensordict import TensorDict

from torchrl_dreamerxp.modules import WorldModel


def make_tiny_world_model(obs_dim=3, action_dim=2):
    return WorldModel(action_dim=action_dim, obs_dim=obs_dim, deter=16, hidden=8, stoch=4, classes=4, units=8, blocks=4,
                      enc_layers=1, dec_layers=1)


def make_replay_batch(B=2, T=6, obs_dim=3, action_dim=2, deter=16, stoch=(4, 4)):
    return TensorDict(
        {
            "observation": torch.randn(B, T, obs_dim),
            "action": torch.eye(action_dim)[torch.randint(action_dim, (B, T))],
            "reward": torch.randn(B, T),
            "is_first": torch.zeros(B, T, dtype=torch.bool),
            "is_terminal": torch.zeros(B, T, dtype=torch.bool),
            "is_last": torch.zeros(B, T, dtype=torch.bool),
            "deter": torch.zeros(B, T, deter),
            "stoch": torch.zeros(B, T, *stoch),
        },
        [B, T],
    )


@pytest.fixture
def tiny_world_model():
    """``tiny_world_model(obs_dim=3, action_dim=2)``: a world model of a few hundred parameters."""
    return make_tiny_world_model


@pytest.fixture
def replay_batch():
    """``replay_batch(B=2, T=6, ...)``: a random replayed slice ``[B, T]`` in the DreamerV3 step layout."""
    return make_replay_batch
