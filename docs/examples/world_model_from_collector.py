"""Our RSSM world model trained from TorchRL's own Collector on a custom gymnasium env.

    python docs/examples/world_model_from_collector.py [--steps 400] [--updates 30]

A new gymnasium env (a point that drifts toward a target), wrapped by TorchRL's ``GymWrapper``, collected
with a random policy by ``torchrl.collectors.Collector``, turned into the DreamerV3 step layout, and used to
train ``WorldModel`` with ``WorldModelLoss`` and a plain Adam optimizer.
"""
import argparse

import gymnasium as gym
import numpy as np
import torch
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.envs import GymWrapper, InitTracker, TransformedEnv

from torchrl_dreamerxp.modules import WorldModel
from torchrl_dreamerxp.objectives import WorldModelLoss
from torchrl_dreamerxp.replay import ContiguousSliceSampler
from torchrl_dreamerxp.training import to_dreamer_layout


class DriftToTarget(gym.Env):
    """Position and target in [-1, 1]; the action nudges the position; reward: minus the distance."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.t = 0
        return self.state.copy(), {}

    def step(self, action):
        self.t += 1
        self.state[0] = np.clip(self.state[0] + 0.1 * float(action[0]), -1, 1)
        reward = -abs(float(self.state[0] - self.state[1]))
        return self.state.copy(), reward, False, self.t >= 50, {}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--updates", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)

    env = TransformedEnv(GymWrapper(DriftToTarget()), InitTracker(init_key="is_first"))
    collector = Collector(env, None, frames_per_batch=100, total_frames=args.steps)  # None: random actions
    world_model = WorldModel(action_dim=1, obs_dim=2, deter=64, hidden=32, stoch=8, classes=8, units=64, blocks=8,
                             enc_layers=2, dec_layers=2)
    shapes = {"deter": (64,), "stoch": (8, 8)}
    replay = TensorDictReplayBuffer(storage=LazyTensorStorage(10_000), sampler=ContiguousSliceSampler(17),
                                    batch_size=8 * 17)
    for batch in collector:
        replay.extend(to_dreamer_layout(batch, ["observation"], shapes))
    collector.shutdown()

    loss_fn = WorldModelLoss(world_model)  # replay context of 1 step: slices of 16 trained steps + 1
    optimizer = torch.optim.Adam(world_model.parameters(), lr=1e-3)
    for update in range(args.updates):
        losses = loss_fn(replay.sample().reshape(8, 17))
        loss = sum(v for k, v in losses.items() if k.startswith("loss_"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if update in (0, args.updates - 1):
            print(f"update {update}: loss {loss.item():.3f} "
                  f"(reconstruction {losses['loss_model_reconstruction'].item():.3f}, "
                  f"reward {losses['loss_model_reward'].item():.3f})")


if __name__ == "__main__":
    main()
