"""PrioritizedTrajectorySampler: bookkeeping at write time, eviction, scores, TorchRL's priority calls and layouts."""
import math

import pytest
import torch
from scipy.stats import chisquare
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_dreamerxp.replay import LaneWriter, PrioritizedTrajectorySampler, XPScore

RECIPE_KEYS = dict(reward_key="reward", init_key="is_first", done_key=None)


def episodes(lengths, rewards):
    """Steps of consecutive episodes (recipe layout): ``rewards[i]`` on every step of episode ``i``."""
    is_first = torch.cat([torch.arange(n) == 0 for n in lengths])
    reward = torch.cat([torch.full((n,), float(r)) for n, r in zip(lengths, rewards)])
    return TensorDict({"is_first": is_first, "reward": reward, "step": torch.arange(len(reward))}, [len(reward)])


def buffer(capacity=1000, slice_len=1, batch=None, **kw):
    sampler = PrioritizedTrajectorySampler(slice_len, **{**RECIPE_KEYS, **kw})
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(capacity), sampler=sampler, batch_size=batch or slice_len)
    return rb, sampler


def stat(sampler, key):
    return sampler.trajectory_stats()[key].tolist()


def measure(rb, sampler, recon, value):
    """One measurement of ε and δ for every trajectory (all its steps), in one call."""
    traj = sampler.index.slot_traj[: len(rb)]
    order = {int(i): k for k, i in enumerate(sampler.trajectory_stats()["id"])}
    k = torch.tensor([order[int(t)] for t in traj])
    sampler.update_priority(torch.arange(len(rb)), TensorDict(recon_error=torch.tensor(recon)[k],
                                                              value_error=torch.tensor(value)[k], batch_size=[len(rb)]))


def test_trajectories_indexed_at_write_time_including_the_open_one():
    rb, sampler = buffer()
    rb.extend(episodes([3, 2, 4], [1.0, 2.0, 0.5]))
    assert sampler.num_trajectories == 3  # no sample() needed
    assert stat(sampler, "return") == [3.0, 4.0, 2.0] and stat(sampler, "length") == [3, 2, 4]
    rb.extend(TensorDict({"is_first": torch.zeros(2, dtype=torch.bool), "reward": torch.ones(2),
                          "step": torch.arange(2)}, [2]))  # the last episode goes on
    assert stat(sampler, "length") == [3, 2, 6] and stat(sampler, "return")[2] == 4.0


def test_one_call_carries_both_errors_and_a_first_value_is_set_not_blended():
    rb, sampler = buffer()
    rb.extend(episodes([2], [1.0]))
    sampler.update_priority(torch.arange(2), {"recon_error": torch.full((2,), 3.0)})
    sampler.update_priority(torch.arange(2), {"value_error": torch.full((2,), 10.0)})  # a second call: δ's first
    assert stat(sampler, "value_error") == [10.0] and stat(sampler, "recon_error") == [3.0]
    sampler.update_priority(torch.arange(2), TensorDict(recon_error=torch.full((2,), 13.0),
                                                        value_error=torch.zeros(2), batch_size=[2]))
    assert stat(sampler, "recon_error") == [pytest.approx(4.0)] and stat(sampler, "value_error") == [pytest.approx(9.0)]


def test_wrap_between_samples_keeps_each_write_with_its_own_data():
    # episode A: 10 × r=1 fills the storage; B overwrites 4 of A's steps with r=100 before any sample
    rb, sampler = buffer(capacity=10)
    rb.extend(episodes([10], [1.0]))
    rb.extend(episodes([4], [100.0]))
    assert stat(sampler, "return") == [10.0, 400.0]  # the task returns of both episodes
    assert stat(sampler, "stored_return") == [6.0, 400.0] and stat(sampler, "length") == [6, 4]


def test_dead_trajectories_are_retired_and_ids_reused():
    rb, sampler = buffer(capacity=20, slice_len=2, batch=4)
    for i in range(300):  # 300 episodes of 3 steps through 20 slots
        rb.extend(episodes([3], [float(i)]))
    assert sampler.num_trajectories == 7 and sampler.index.capacity == 20
    assert sorted(stat(sampler, "return")) == [3.0 * i for i in range(293, 300)]
    assert sampler.probabilities().sum() == pytest.approx(1.0) and (sampler.probabilities() > 0).sum() == 7
    rb.sample()


def test_a_nonfinite_reward_is_counted_and_left_out():
    rb, sampler = buffer()
    rb.extend(episodes([2, 2, 2], [1.0, 2.0, 3.0]))
    rb.extend(TensorDict({"is_first": torch.tensor([True, False]), "reward": torch.tensor([1.0, float("nan")]),
                          "step": torch.arange(2)}, [2]))
    assert sampler.nonfinite_rewards == 1
    assert stat(sampler, "return") == [2.0, 4.0, 6.0, 1.0]
    sampler.refresh()
    p = sampler.probabilities()
    assert torch.isfinite(p).all() and p.sum() == pytest.approx(1.0)


def test_normalization_is_stable_with_few_trajectories():
    rb, sampler = buffer(uniform_fraction=0.0, lambda_delta=0.0, lambda_eps=0.0)
    rb.extend(episodes([1, 1], [5.0, 5.05]))
    measure(rb, sampler, recon=[1.0, 1.0], value=[1.0, 1.0])
    sampler.refresh()
    p = sampler.probabilities()[torch.tensor(stat(sampler, "id"))]
    assert abs(float(p[1] - p[0])) < 0.03  # min-max normalization gave [0, 1]


def test_xp_probabilities_hand_computed():
    rb, sampler = buffer()
    rb.extend(episodes([2, 2, 2], [0.0, 2.5, 5.0]))  # R = [0, 5, 10]
    measure(rb, sampler, recon=[1.0, 3.0, 2.0], value=[0.0, 1.0, 0.5])
    sampler.refresh()
    # R: mean 5, std 4.082 → R̂ = sigmoid(z) = [.2271, .5, .7729]; ε̂ = δ̂ = [.2271, .7729, .5]
    # s = (0.1 + 0.4·δ̂)·R̂ + 0.5·ε̂ = [.1569, .5910, .4819]; P = 0.9·s/Σs + 0.1/3
    ids = torch.tensor(stat(sampler, "id"))
    torch.testing.assert_close(sampler.probabilities()[ids].float(), torch.tensor([0.1482, 0.4659, 0.3860]),
                               atol=1e-4, rtol=0)


def test_new_trajectory_enters_at_the_current_max():
    rb, sampler = buffer(uniform_fraction=0.0)
    rb.extend(episodes([2, 2], [0.0, 10.0]))
    measure(rb, sampler, recon=[0.0, 1.0], value=[0.0, 1.0])
    rb.extend(episodes([2], [0.0]))
    p = sampler.probabilities()[torch.tensor(stat(sampler, "id"))]
    assert p[2] == pytest.approx(float(p[:2].max()))


SCORES = {
    "xp": {},
    "curious": dict(score="curious", score_kwargs=dict(c=1.0, beta=0.9)),
    "uniform": dict(score="uniform"),
    "callable": dict(score=lambda stats: stats["length"].double() ** 2),
}


@pytest.mark.parametrize("name", list(SCORES))
def test_draw_frequencies_match_the_stated_probabilities_chi_square(name):
    torch.manual_seed(0)
    rb, sampler = buffer(slice_len=2, batch=2, refresh_every=10**9, **SCORES[name])
    rb.extend(episodes([3, 1, 5, 2, 8], [1.0, 4.0, -2.0, 0.0, 0.5]))
    measure(rb, sampler, recon=[0.5, 1.0, 2.0, 0.1, 0.3], value=[0.2, 0.0, 1.0, 0.3, 0.1])
    rb.sample()  # the one refresh
    counts, expected = torch.zeros(sampler.index.capacity), torch.zeros(sampler.index.capacity)
    for _ in range(2000):  # P changes with each draw for Curious Replay (counts): compare draw by draw
        expected += sampler.probabilities()
        rb.sample()
        counts[sampler.last_sampled] += 1
    live = expected > 0
    # fixed seed; a correct sampler fails below p = 0.001 one time in a thousand
    assert chisquare(counts[live].numpy(), expected[live].numpy() * counts.sum().item() / expected.sum().item()).pvalue > 1e-3
    assert (counts[live] > 0).all()


def test_slices_start_inside_the_drawn_trajectory():
    torch.manual_seed(0)
    rb, sampler = buffer(slice_len=4, batch=400)
    rb.extend(episodes([2, 2, 9, 2, 3], [1.0] * 5))
    for _ in range(5):
        index = rb.sample(return_info=True)[1]["index"].reshape(100, 4)
        chosen = sampler.last_sampled
        first = sampler.index.slot_traj[index[:, 0]]
        tail = index[:, 0] == len(rb) - 4  # moved back from the newest step: starts before it
        assert ((first == chosen) | tail).all()
        assert ((index[:, 1:] - index[:, :-1]) == 1).all()


def test_importance_weights_like_torchrl():
    rb, sampler = buffer(slice_len=2, batch=8, importance_beta=0.5)
    rb.extend(episodes([3, 3, 3], [0.0, 1.0, 5.0]))
    measure(rb, sampler, recon=[0.0, 0.0, 0.0], value=[0.0, 0.0, 0.0])
    sample = rb.sample()
    p = sampler.probabilities()
    live = p[p > 0]
    expected = (3 * p[sampler.last_sampled]) ** -0.5 / (3 * live.min()) ** -0.5
    torch.testing.assert_close(sample["priority_weight"].reshape(4, 2), expected.float()[:, None].expand(4, 2))


def test_torchrl_priority_calls():
    rb, sampler = buffer(slice_len=2, batch=4)
    rb.extend(episodes([4, 4], [1.0, 2.0]))
    sample = rb.sample()
    sample["td_error"] = torch.full((4,), 2.0)
    rb.update_tensordict_priority(sample)  # TorchRL's call: the priority_key as δ
    drawn = set(sampler.index.slot_traj[sample["index"]].tolist())
    got = dict(zip(stat(sampler, "id"), stat(sampler, "value_error")))
    assert all(got[i] == 2.0 for i in drawn)
    rb.update_priority(torch.arange(8), torch.full((8,), 4.0))  # a tensor: δ
    rb.update_priority(torch.arange(8), torch.tensor(float("nan")))  # NaN: nothing measured
    assert all(v in (4.0, pytest.approx(2.2)) for v in stat(sampler, "value_error"))
    rb.add(TensorDict({"is_first": torch.tensor(False), "reward": torch.tensor(0.0), "step": torch.tensor(8)}, []))
    assert stat(sampler, "length") == [4, 5]  # add() hands over TorchRL's default priority: no measurement
    with pytest.raises(ValueError, match="values for"):
        sampler.update_priority(torch.arange(2), torch.ones(3))
    with pytest.raises(ValueError, match="carries none"):
        sampler.update_priority(torch.arange(2), {"loss": torch.ones(2)})
    with pytest.warns(UserWarning, match="infinite"):
        sampler.update_priority(torch.arange(2), torch.tensor([math.inf, 1.0]))
    assert sampler.nonfinite_errors == 1


def collector_batch(envs=2, steps=40, seed=0):
    """A [envs, steps] batch of a stock TorchRL collector on SerialEnv(CartPole) with InitTracker."""
    from torchrl.collectors import Collector
    from torchrl.envs import GymEnv, InitTracker, SerialEnv, TransformedEnv

    env = TransformedEnv(SerialEnv(envs, lambda: GymEnv("CartPole-v1")), InitTracker())
    env.set_seed(seed)
    collector = Collector(env, None, frames_per_batch=envs * steps, total_frames=envs * steps * 3)
    batches = list(collector)
    collector.shutdown()
    return batches


def true_returns(batches):
    """Per-episode returns (env, traj id) read straight from the collected data."""
    out = {}
    for batch in batches:
        for e in range(batch.shape[0]):
            ids, rewards = batch["collector", "traj_ids"][e], batch["next", "reward"][e].squeeze(-1)
            for i in ids.unique().tolist():
                out[i] = out.get(i, 0.0) + float(rewards[ids == i].sum())
    return out


def test_serial_env_batches_in_a_2d_storage_keep_envs_apart():
    batches = collector_batch()
    sampler = PrioritizedTrajectorySampler(8)  # TorchRL's default keys
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(2 * 200, ndim=2), sampler=sampler, batch_size=16)
    for batch in batches:
        rb.extend(batch)
    truth = true_returns(batches)
    assert sampler.num_trajectories == len(truth)
    assert sorted(stat(sampler, "return")) == sorted(truth.values())
    sample = rb.sample()
    ids = sample["collector", "traj_ids"].reshape(2, 8)
    env = sample["index"][..., 1].reshape(2, 8)
    assert (env == env[:, :1]).all()  # a slice stays in one env's stream
    # inside a slice the trajectory id only changes where an episode starts
    change = ids[:, 1:] != ids[:, :-1]
    assert (sample["is_init"].reshape(2, 8)[:, 1:][change]).all()
    rb.update_tensordict_priority(sample.set("td_error", torch.ones(16)))


def test_serial_env_batches_wrapping_a_2d_storage_keep_true_returns():
    batches = collector_batch(steps=30)
    sampler = PrioritizedTrajectorySampler(4)
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(2 * 50, ndim=2), sampler=sampler, batch_size=8)
    for batch in batches:
        rb.extend(batch)
    stored = rb.storage[:]
    live = stored["collector", "traj_ids"].unique().tolist()
    truth = true_returns(batches)
    got = sorted(stat(sampler, "return"))
    assert got == sorted(truth[i] for i in live)
    # stored returns: what is still in the storage of each live trajectory
    ids, rewards = stored["collector", "traj_ids"].reshape(-1), stored["next", "reward"].reshape(-1)
    assert sorted(stat(sampler, "stored_return")) == sorted(float(rewards[ids == i].sum()) for i in live)


def test_layouts_it_cannot_read_are_refused():
    batches = collector_batch(steps=20)
    for flat in (PrioritizedTrajectorySampler(4), PrioritizedTrajectorySampler(4, traj_key=("collector", "traj_ids"))):
        rb = TensorDictReplayBuffer(storage=LazyTensorStorage(400), sampler=flat, batch_size=8)
        rb.extend(batches[0].reshape(-1))
        with pytest.raises(ValueError, match="not consecutive"):  # env 0's episode goes on after env 1's steps
            rb.extend(batches[1].reshape(-1))
    rows = TensorDictReplayBuffer(storage=LazyTensorStorage(10), sampler=PrioritizedTrajectorySampler(4), batch_size=8)
    with pytest.raises(ValueError, match="one step per item"):
        rows.extend(batches[0])  # a 1-D storage of [T] rollouts
    with pytest.raises(RuntimeError, match="mark_update"):
        PrioritizedTrajectorySampler(4).extend(torch.arange(3))  # a writer that never says what it wrote
    with pytest.raises(ValueError, match="uniform_fraction"):
        PrioritizedTrajectorySampler(4, uniform_fraction=1.5)
    with pytest.raises(ValueError, match="weights"):
        PrioritizedTrajectorySampler(4, lambda_eps=-1.0)
    with pytest.raises(ValueError, match="unknown trajectory score"):
        PrioritizedTrajectorySampler(4, score="best")


def test_lane_writer_lanes_are_streams():
    sampler = PrioritizedTrajectorySampler(2, lanes=2, **RECIPE_KEYS)
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(8), sampler=sampler, writer=LaneWriter(2), batch_size=4)
    rb.extend(TensorDict({"is_first": torch.tensor([True, True, False, False]), "reward": torch.tensor([1., 10., 2., 20.]),
                          "lane": torch.tensor([0, 1, 0, 1])}, [4]))
    assert sorted(stat(sampler, "return")) == [3.0, 30.0]
    index = rb.sample(return_info=True)[1]["index"].reshape(2, 2)
    assert ((index // 4)[:, 0] == (index // 4)[:, 1]).all()


def test_state_dict_round_trip():
    rb, sampler = buffer(slice_len=2, batch=6, capacity=8)
    rb.extend(episodes([4, 3, 5], [1.0, -1.0, 2.0]))
    measure(rb, sampler, recon=[2.0, 3.0], value=[0.1, 0.2])
    rb.sample()
    clone = PrioritizedTrajectorySampler(2, **RECIPE_KEYS)
    clone.load_state_dict(sampler.state_dict())
    torch.testing.assert_close(clone.probabilities(), sampler.probabilities())
    torch.manual_seed(3)
    a = sampler.sample(rb.storage, 6)[0]
    torch.manual_seed(3)
    b = clone.sample(rb.storage, 6)[0]
    assert a.tolist() == b.tolist()


def test_xp_score_is_the_default():
    assert isinstance(PrioritizedTrajectorySampler(4).score, XPScore)


def test_one_trajectory_and_one_live_id():
    rb, sampler = buffer(capacity=8, slice_len=2, batch=4, importance_beta=0.5)
    rb.extend(episodes([8], [1.0]))
    sample = rb.sample()
    assert sampler.probabilities()[sampler.last_sampled].tolist() == [1.0, 1.0]
    assert sample["priority_weight"].tolist() == [1.0] * 4 and sampler.stats()["replay/trajectories"] == 1.0


def test_a_full_storage_of_one_step_episodes_keeps_indexing():
    rb, sampler = buffer(capacity=4)
    for _ in range(5):  # each write overwrites two whole trajectories: their ids are free again before new ones
        rb.extend(TensorDict({"is_first": torch.ones(2, dtype=torch.bool), "reward": torch.ones(2),
                              "step": torch.arange(2)}, [2]))
    assert sampler.num_trajectories == 4 and stat(sampler, "length") == [1, 1, 1, 1]


def test_a_write_longer_than_one_lane_leaves_the_other_lanes_episodes_whole():
    for traj_key in (None, "traj"):
        sampler = PrioritizedTrajectorySampler(1, lanes=2, traj_key=traj_key, **RECIPE_KEYS)
        rb = TensorDictReplayBuffer(storage=LazyTensorStorage(8), sampler=sampler, writer=LaneWriter(2), batch_size=1)
        rb.extend(TensorDict({"is_first": torch.tensor([True, True]), "reward": torch.ones(2), "lane": torch.tensor([0, 1]),
                              "traj": torch.tensor([0, 1])}, [2]))
        rb.extend(TensorDict({"is_first": torch.zeros(6, dtype=torch.bool), "reward": torch.ones(6),
                              "lane": torch.tensor([0, 0, 0, 0, 0, 1]), "traj": torch.tensor([0, 0, 0, 0, 0, 1])}, [6]))
        lane1 = [len_ for len_, s in zip(stat(sampler, "length"), sampler.index.stream[sampler.trajectory_stats()["id"]])
                 if s == 1]
        assert lane1 == [2], traj_key  # lane 1's episode goes on; only lane 0 lost steps


def test_ids_interleaved_within_one_write_are_refused():
    sampler = PrioritizedTrajectorySampler(1, traj_key="traj", reward_key="reward", init_key=None, done_key=None)
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(20), sampler=sampler, batch_size=1)
    with pytest.raises(ValueError, match="not consecutive"):
        rb.extend(TensorDict({"traj": torch.tensor([0, 1, 0, 1]), "reward": torch.ones(4)}, [4]))


def test_a_restored_sampler_draws_with_the_same_probabilities():
    rb, sampler = buffer(capacity=20)
    rb.extend(episodes([2, 2], [1.0, 5.0]))
    sampler.update_priority(torch.tensor([0, 1]), {"recon_error": torch.tensor([1.0, 1.0])})
    rb.extend(episodes([2], [0.0]))  # fresh: enters at the maximum of now
    sampler.update_priority(torch.tensor([2, 3]), {"recon_error": torch.tensor([9.0, 9.0])})  # the maximum grows
    clone = PrioritizedTrajectorySampler(1, **RECIPE_KEYS)
    clone.load_state_dict(sampler.state_dict())
    torch.testing.assert_close(clone.probabilities(), sampler.probabilities())


def test_weights_without_a_uniform_fraction_and_score_settings_only_with_a_name():
    rb, sampler = buffer(slice_len=1, batch=4, uniform_fraction=0.0, importance_beta=1.0, score=lambda st: st["return"])
    rb.extend(episodes([1, 1, 1], [0.0, 1.0, 3.0]))  # the first never drawn (score 0)
    w = rb.sample()["priority_weight"]
    assert (w > 0).all() and w.max() <= 1.0
    with pytest.raises(ValueError, match="go with a score name"):
        PrioritizedTrajectorySampler(1, score=lambda st: st["return"], lambda_r=0.2)
