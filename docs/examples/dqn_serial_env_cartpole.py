"""A DQN on two CartPole envs, built from TorchRL's own pieces, with both XP components plugged in.

    python docs/examples/dqn_serial_env_cartpole.py [--frames 30000]

- ``SerialEnv(2)`` + ``InitTracker`` → a stock ``Collector`` → ``[2, T]`` batches into a 2-D
  ``LazyTensorStorage(ndim=2)``: one stream per env, so the sampler never merges the two envs' episodes.
- ``PrioritizedTrajectorySampler`` with TorchRL's default keys draws slices of 8 steps from episodes chosen by
  their XP score; ``DQNLoss`` writes its ``"td_error"`` into the sample and ``rb.update_tensordict_priority``
  hands it to the sampler as each trajectory's critic error δ; ``"priority_weight"`` weights the loss.
- ``IntrinsicRewardTransform`` on the replay buffer mixes a reward ensemble's disagreement into
  ``("next", "reward")`` of every sample (windows stop at slice ends and episode ends), with λ rising from 0.5
  to 1 by ``ExponentialDecayWeight``. The ensemble reads the observation (a model-free pipeline has no latent).
"""
import argparse

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.envs import GymEnv, InitTracker, SerialEnv, TransformedEnv
from torchrl.modules import MLP, EGreedyModule, QValueActor
from torchrl.objectives import DQNLoss, SoftUpdate

from torchrl_dreamerxp.modules import RewardEnsemble
from torchrl_dreamerxp.replay import PrioritizedTrajectorySampler
from torchrl_dreamerxp.schedulers import ExponentialDecayWeight
from torchrl_dreamerxp.transforms import IntrinsicRewardTransform

SLICE, SLICES = 8, 16


def evaluate(actor, episodes: int = 3) -> float:
    """Mean return of the greedy policy over a few episodes of a fresh env."""
    env = GymEnv("CartPole-v1")
    env.set_seed(123)
    with torch.no_grad():
        returns = [float(env.rollout(500, actor)["next", "reward"].sum()) for _ in range(episodes)]
    env.close()
    return sum(returns) / episodes


def main(frames: int) -> None:
    torch.manual_seed(0)
    env = TransformedEnv(SerialEnv(2, lambda: GymEnv("CartPole-v1")), InitTracker())
    env.set_seed(0)
    actor = QValueActor(MLP(out_features=2, num_cells=[64, 64]), in_keys=["observation"], spec=env.action_spec)
    explore = TensorDictSequential(actor, EGreedyModule(env.action_spec, eps_init=1.0, eps_end=0.05,
                                                        annealing_num_steps=frames // 2))
    loss = DQNLoss(actor, action_space=env.action_spec, delay_value=True)
    target = SoftUpdate(loss, eps=0.99)
    optim = torch.optim.Adam(loss.parameters(), lr=1e-3)

    sampler = PrioritizedTrajectorySampler(SLICE, importance_beta=0.5)  # ("next", "reward"), is_init, ("next", "done")
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(20_000, ndim=2), sampler=sampler, batch_size=SLICE * SLICES)
    ensemble = RewardEnsemble(4, 0, 0, action_dim=2, members=5, units=64, layers=2, mode="reward")
    ens_optim = torch.optim.Adam(ensemble.parameters(), lr=1e-3)
    scheduler = ExponentialDecayWeight(lam_start=0.5, lam_end=1.0, decay_steps=frames // 20)
    intrinsic = IntrinsicRewardTransform(ensemble, scheduler, window=3, deter_key="observation",
                                         next_deter_key=("next", "observation"), stoch_key=None, slice_len=SLICE)
    rb.append_transform(intrinsic)

    collector = Collector(env, explore, frames_per_batch=2 * 50, total_frames=frames, init_random_frames=1000)
    for i, batch in enumerate(collector):
        rb.extend(batch)  # [2, 50]: one stream per env
        explore[1].step(batch.numel())
        if len(rb) < 1000:
            continue
        for _ in range(8):
            sample = rb.sample()  # ("next", "reward") is now λ·r + (1 − λ)·r_intr
            out = loss(sample)  # writes "td_error" into the sample, reads "priority_weight"
            optim.zero_grad()
            out["loss"].backward()
            optim.step()
            target.step()
            rb.update_tensordict_priority(sample)  # TorchRL's call: td_error → each trajectory's δ
            obs = sample["observation"]
            ens_loss = ensemble.loss(obs, obs.new_zeros(*obs.shape[:-1], 0, 0), sample["action"].float(), None,
                                     sample["next", "reward_extrinsic"].squeeze(-1)).mean()
            ens_optim.zero_grad()
            ens_loss.backward()
            ens_optim.step()
            scheduler.step()
        if i % 5 == 4:
            print(f"frames {(i + 1) * 100:6d}  λ = {scheduler.value:.3f}  "
                  f"intrinsic {float(sample['next', 'reward_intrinsic'].mean()):.3f}")
    collector.shutdown()
    stats = sampler.trajectory_stats()
    print(f"episodes in replay {sampler.num_trajectories}, with δ measured "
          f"{int((~stats['value_error'].isnan()).sum())}; mean stored return {float(stats['return'].mean()):.1f}")
    print(f"greedy return after {frames} frames: {evaluate(actor):.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=30_000)
    main(parser.parse_args().frames)
