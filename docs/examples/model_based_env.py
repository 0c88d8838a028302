"""Imagination through TorchRL's model-based env API, driven by the library's TensorDict modules.

    python docs/examples/model_based_env.py

1. A CartPole rollout from a stock env is filtered through the world model with ``RSSMObserveStep`` (one
   posterior step per env step, in a plain loop over a TensorDict).
2. Those posterior states start a ``DreamerModelEnv`` (a ``ModelBasedEnvBase`` stepping ``WorldModelStep``);
   an ``IntrinsicRewardTransform`` appended to it, reading the latent state and the next one, mixes the reward
   ensemble's disagreement into each imagined reward (``RewardEnsembleModule`` gives the members' predictions).
3. ``env.rollout`` with a TensorDict policy (the DreamerV3 actor over RSSM features) imagines 15 steps.
The networks are untrained: this shows the plumbing, not a result.
"""
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.envs import GymEnv, TransformedEnv

from torchrl_dreamerxp.modules import (Actor, DreamerModelEnv, RewardEnsemble, RewardEnsembleModule, RSSMObserveStep,
                                       WorldModel)
from torchrl_dreamerxp.schedulers import ConstantWeight
from torchrl_dreamerxp.transforms import IntrinsicRewardTransform


def main():
    torch.manual_seed(0)
    real = GymEnv("CartPole-v1")
    real.set_seed(0)
    wm = WorldModel(action_dim=2, obs_dim=4, deter=64, hidden=16, stoch=8, classes=8, units=32, blocks=4)
    rollout = real.rollout(40)

    observe = RSSMObserveStep(wm.rssm)
    state = TensorDict({"deter": torch.zeros(1, 64), "stoch": torch.zeros(1, 8, 8)}, [1])
    prev_action = torch.zeros(1, 2)
    starts = []
    with torch.no_grad():
        for t in range(rollout.shape[0]):
            step = state.update({"prev_action": prev_action, "embed": wm.encoder(observation=rollout["observation"][t:t + 1]),
                                 "is_first": torch.tensor([t == 0])})
            state = observe(step).select("deter", "stoch")
            starts.append(state.clone())
            prev_action = rollout["action"][t:t + 1].float()
    starts = torch.cat(starts[-8:])  # the last 8 posterior states start 8 imagined trajectories
    print(f"posterior states of {rollout.shape[0]} real steps; imagining from {starts.shape[0]} of them")

    ensemble = RewardEnsemble(64, 8, 8, action_dim=2, members=5, units=32, layers=1, mode="reward")
    env = TransformedEnv(DreamerModelEnv(wm, action_dim=2, batch_size=[8]),
                         IntrinsicRewardTransform(ensemble, ConstantWeight(0.5), window=1))
    actor = Actor(wm.rssm.feature_dim(), 2, discrete=True, units=32, layers=1)
    policy = TensorDictModule(lambda d, s: actor(wm.rssm.features(d, s))[0], ["deter", "stoch"], ["action"])
    with torch.no_grad():
        imagined = env.rollout(15, policy, tensordict=env.reset(starts), auto_reset=False)
        spread = RewardEnsembleModule(ensemble)(imagined.clone())["reward_predictions"].std(-1)
    print(f"imagined {tuple(imagined.shape)}: reward {imagined['next', 'reward'].mean():.4f} "
          f"(extrinsic {imagined['next', 'reward_extrinsic'].mean():.4f}, intrinsic {imagined['next', 'reward_intrinsic'].mean():.4f}), "
          f"P(continue) {imagined['next', 'cont'].mean():.3f}, members' spread {spread.mean():.4f}")


if __name__ == "__main__":
    main()
