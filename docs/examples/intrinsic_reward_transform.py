"""``IntrinsicRewardTransform`` with a λ scheduler on a tensordict of imagined trajectories.

    python docs/examples/intrinsic_reward_transform.py

An imagined batch ``[N, H+1]`` (latent states, actions, extrinsic rewards) is scored by a reward ensemble
(here members with reward outputs of their own; the default ``mode="latent"`` scores predicted latents with
a trained world model's reward head); as training goes on the exponential scheduler moves λ (the extrinsic
weight) from 0.2 toward 1, and the mixed reward moves from mostly intrinsic to extrinsic.
"""
import torch
from tensordict import TensorDict

from torchrl_dreamerxp.modules import RewardEnsemble
from torchrl_dreamerxp.schedulers import ExponentialDecayWeight
from torchrl_dreamerxp.transforms import IntrinsicRewardTransform

DETER, STOCH, CLASSES, ACTIONS, N, H = 32, 4, 4, 2, 64, 15


def main():
    torch.manual_seed(0)
    ensemble = RewardEnsemble(DETER, STOCH, CLASSES, ACTIONS, members=5, units=32, layers=2, mode="reward")
    scheduler = ExponentialDecayWeight(lam_start=0.2, lam_end=1.0, decay_steps=100)
    transform = IntrinsicRewardTransform.for_imagination(ensemble, scheduler, window=5)
    stoch = torch.nn.functional.one_hot(torch.randint(CLASSES, (N, H + 1, STOCH)), CLASSES).float()
    imagined = TensorDict({"deter": torch.randn(N, H + 1, DETER), "stoch": stoch,
                           "action": torch.randn(N, H + 1, ACTIONS).tanh(), "reward": torch.ones(N, H + 1)}, [N, H + 1])
    for update in range(301):
        if update % 100 == 0:
            out = transform(imagined.clone())
            print(f"update {update:3d}: λ = {transform.lam:.3f}  extrinsic {out['reward_extrinsic'][:, 1:].mean():.3f}  "
                  f"intrinsic {out['reward_intrinsic'][:, 1:].mean():.3f}  mixed {out['reward'][:, 1:].mean():.3f}")
        scheduler.step()


if __name__ == "__main__":
    main()
