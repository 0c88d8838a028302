"""A SAC loop on Pendulum from TorchRL's own pieces, with the XP sampler and the intrinsic reward transform.

    python docs/examples/sac_pendulum.py [--frames 20000]

A stock ``Collector`` on ``GymEnv("Pendulum-v1")`` + ``InitTracker`` fills a ``TensorDictReplayBuffer`` whose
``PrioritizedTrajectorySampler`` (TorchRL's default keys) draws 32 slices of 4 steps from episodes chosen by their
XP score. ``SACLoss`` writes ``"td_error"``; ``rb.update_tensordict_priority`` feeds it back as δ.
``IntrinsicRewardTransform`` on the buffer mixes the disagreement of a 5-member reward ensemble (reading the
observation) into every sampled ``("next", "reward")`` with a constant λ = 0.9.
"""
import argparse

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.envs import GymEnv, InitTracker, TransformedEnv
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import SACLoss, SoftUpdate

from torchrl_dreamerxp.modules import RewardEnsemble
from torchrl_dreamerxp.replay import PrioritizedTrajectorySampler
from torchrl_dreamerxp.schedulers import ConstantWeight
from torchrl_dreamerxp.transforms import IntrinsicRewardTransform

SLICE, SLICES = 4, 32


def main(frames: int) -> None:
    torch.manual_seed(0)
    env = TransformedEnv(GymEnv("Pendulum-v1"), InitTracker())
    env.set_seed(0)
    net = torch.nn.Sequential(MLP(in_features=3, out_features=2, num_cells=[64, 64]), NormalParamExtractor())
    actor = ProbabilisticActor(TensorDictModule(net, ["observation"], ["loc", "scale"]), in_keys=["loc", "scale"],
                               spec=env.action_spec, distribution_class=TanhNormal,
                               distribution_kwargs={"low": -2.0, "high": 2.0}, return_log_prob=False)
    qvalue = ValueOperator(MLP(in_features=4, out_features=1, num_cells=[64, 64]), in_keys=["observation", "action"])
    loss = SACLoss(actor, qvalue, action_spec=env.action_spec)
    loss.make_value_estimator(gamma=0.99)
    target = SoftUpdate(loss, eps=0.995)
    optim = torch.optim.Adam(loss.parameters(), lr=3e-4)

    sampler = PrioritizedTrajectorySampler(SLICE, importance_beta=0.4)
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(50_000), sampler=sampler, batch_size=SLICE * SLICES)
    ensemble = RewardEnsemble(3, 0, 0, action_dim=1, members=5, units=64, layers=2, mode="reward")
    ens_optim = torch.optim.Adam(ensemble.parameters(), lr=1e-3)
    rb.append_transform(IntrinsicRewardTransform(ensemble, ConstantWeight(0.9), window=2, deter_key="observation",
                                                 next_deter_key=("next", "observation"), stoch_key=None, slice_len=SLICE))

    collector = Collector(env, actor, frames_per_batch=200, total_frames=frames, init_random_frames=1000)
    for i, batch in enumerate(collector):
        rb.extend(batch)
        if len(rb) < 1000:
            continue
        for _ in range(50):
            sample = rb.sample()
            out = loss(sample)
            total = out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]
            optim.zero_grad()
            total.backward()
            optim.step()
            target.step()
            rb.update_tensordict_priority(sample)  # TorchRL's call: td_error → δ of each drawn trajectory
            obs = sample["observation"]
            ens_loss = ensemble.loss(obs, obs.new_zeros(*obs.shape[:-1], 0, 0), sample["action"], None,
                                     sample["next", "reward_extrinsic"].squeeze(-1)).mean()
            ens_optim.zero_grad()
            ens_loss.backward()
            ens_optim.step()
        if i % 10 == 0:
            print(f"frames {(i + 1) * 200:6d}  episode return of the batch "
                  f"{float(batch['next', 'reward'].sum() / max(int(batch['next', 'done'].sum()), 1)):.1f}  "
                  f"intrinsic {float(sample['next', 'reward_intrinsic'].mean()):.3f}")
    collector.shutdown()
    stats = sampler.trajectory_stats()
    print(f"episodes in replay {sampler.num_trajectories}, with δ measured {int((~stats['value_error'].isnan()).sum())}; "
          f"returns {float(stats['return'].min()):.0f} … {float(stats['return'].max()):.0f}")
    eval_env = GymEnv("Pendulum-v1")
    eval_env.set_seed(7)
    with torch.no_grad():
        returns = [float(eval_env.rollout(200, actor)["next", "reward"].sum()) for _ in range(3)]
    print(f"policy return after {frames} frames: {sum(returns) / 3:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=20_000)
    main(parser.parse_args().frames)
