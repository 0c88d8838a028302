"""Shared test fixtures: a tiny world model, a replayed batch in its layout (factories, called with sizes), and
the config of a training run of a few seconds."""
import pytest
import torch
from hydra import compose, initialize_config_dir
from tensordict import TensorDict

from torchrl_dreamerxp.modules import WorldModel
from torchrl_dreamerxp.paths import config_dir

# a run of a few seconds on CartPole: the tiny preset, short slices, few updates, no logger, no progress bar
FAST_RUN = ["env=gym/CartPole-v1", "model=tiny", "batch_size=2", "batch_length=8", "train_ratio=16",
            "frames_per_batch=8", "prefill=48", "logger.mode=disabled", "progress=false", "eval.episodes=1",
            "agent.horizon=3", "threads=1"]


def make_tiny_world_model(obs_dim=3, action_dim=2):
    return WorldModel(action_dim=action_dim, obs_dim=obs_dim, deter=16, hidden=8, stoch=4, classes=4, units=8, blocks=4,
                      enc_layers=1, dec_layers=1)


def make_replay_batch(B=2, T=6, obs_dim=3, action_dim=2, deter=16, stoch=(4, 4)):
    return TensorDict(
        {
            "observation": torch.randn(B, T, obs_dim),
            "prev_action": torch.eye(action_dim)[torch.randint(action_dim, (B, T))],
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


@pytest.fixture
def fast_overrides():
    """The command-line overrides of a training run of a few seconds (``FAST_RUN``; later overrides win)."""
    return list(FAST_RUN)


@pytest.fixture
def run_config():
    """``run_config(run_dir, *overrides)``: ``configs/train.yaml`` composed for a run of a few seconds."""
    def make(run_dir, *overrides):
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose("train", overrides=[*FAST_RUN, f"run_dir={run_dir}", *overrides])
    return make
