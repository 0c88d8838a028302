"""``PrioritizedTrajectorySampler`` in a plain TorchRL replay buffer of another algorithm.

    python docs/examples/prioritized_sampler_other_algo.py

A random-policy CartPole stream goes into an ordinary ``TensorDictReplayBuffer``; the sampler finds the
episodes itself (``is_first`` written by TorchRL's ``InitTracker``), samples 8 slices of 10 steps, each from an
episode chosen by its XP score, and takes per-step errors from whatever the learner computes (here a stand-in
for a TD error) through ``update_priority``.
"""
import torch
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.envs import GymEnv, InitTracker, TransformedEnv

from torchrl_dreamerxp.replay import PrioritizedTrajectorySampler


def main():
    torch.manual_seed(0)
    env = TransformedEnv(GymEnv("CartPole-v1"), InitTracker(init_key="is_first"))
    sampler = PrioritizedTrajectorySampler(slice_len=10, importance_beta=0.5)
    replay = TensorDictReplayBuffer(storage=LazyTensorStorage(5_000), sampler=sampler, batch_size=8 * 10)
    for batch in Collector(env, None, frames_per_batch=500, total_frames=1_000):
        # the sampler reads "reward" (for R) and "is_first" of each stored step
        replay.extend(batch.set("reward", batch["next", "reward"]))
    for _ in range(20):
        sample, info = replay.sample(return_info=True)
        td_error = (sample["reward"].squeeze(-1) - 0.5).abs() + torch.rand(sample.shape[0])  # your learner's error
        sampler.update_priority(info["index"], {"value_error": td_error, "recon_error": torch.zeros_like(td_error)})
    slices = sample.reshape(8, 10)
    print(f"{sampler.num_trajectories} episodes in the buffer; a batch of {tuple(slices.shape)} slices")
    print("importance weights of the 8 slices:", [round(w, 3) for w in info["priority_weight"][::10].tolist()])
    print({k: round(v, 3) for k, v in sampler.stats().items()})


if __name__ == "__main__":
    main()
