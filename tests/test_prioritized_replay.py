"""PrioritizedTrajectorySampler: documented probabilities, bad inputs, eviction, persistence."""
import pytest
import torch
from scipy.stats import chisquare
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_dreamerxp.replay import PrioritizedTrajectorySampler


def episodes(lengths, rewards):
    """Steps of consecutive episodes: ``rewards[i]`` on every step of episode ``i``."""
    is_first = torch.cat([torch.arange(n) == 0 for n in lengths])
    reward = torch.cat([torch.full((n,), float(r)) for n, r in zip(lengths, rewards)])
    step = torch.arange(len(reward))
    return TensorDict({"is_first": is_first, "reward": reward, "step": step}, [len(reward)])


def buffer(capacity=1000, slice_len=1, batch=None, **kw):
    sampler = PrioritizedTrajectorySampler(slice_len, **kw)
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(capacity), sampler=sampler, batch_size=batch or slice_len)
    return rb, sampler


def measure(rb, sampler, recon, value):
    """Give every trajectory one measurement of ε and δ (all its steps)."""
    rb.sample()  # index what was written
    traj = sampler.step_traj[: len(rb)]
    idx = torch.arange(len(rb))
    sampler.update_priority(idx, {"recon_error": torch.tensor(recon, dtype=torch.float)[traj],
                                  "value_error": torch.tensor(value, dtype=torch.float)[traj]})


def test_trajectories_are_read_from_is_first_including_the_one_being_written():
    rb, sampler = buffer()
    rb.extend(episodes([3, 2, 4], [1.0, 2.0, 0.5]))
    rb.sample()
    assert sampler.num_trajectories == 3
    torch.testing.assert_close(sampler.ret, torch.tensor([3.0, 4.0, 2.0]))
    assert sampler.length.tolist() == [3, 2, 4] and sampler.start.tolist() == [0, 3, 5]
    # the last episode is still being written: more steps without is_first extend it
    rb.extend(TensorDict({"is_first": torch.zeros(2, dtype=torch.bool), "reward": torch.ones(2), "step": torch.arange(2)}, [2]))
    rb.sample()
    assert sampler.length.tolist() == [3, 2, 6] and float(sampler.ret[2]) == 4.0


def test_documented_probabilities_hand_computed():
    rb, sampler = buffer()
    rb.extend(episodes([2, 2, 2], [0.0, 2.5, 5.0]))  # R = [0, 5, 10]
    measure(rb, sampler, recon=[1.0, 3.0, 2.0], value=[0.0, 1.0, 0.5])
    # R̂ = [0, .5, 1], ε̂ = [0, 1, .5], δ̂ = [0, 1, .5]
    # s = (0.1 + 0.4·δ̂)·R̂ + 0.5·ε̂ = [0, 0.25 + 0.5, 0.3 + 0.25] = [0, 0.75, 0.55]
    s = torch.tensor([0.0, 0.75, 0.55])
    torch.testing.assert_close(sampler.scores(), s)
    expected = 0.9 * s / s.sum() + 0.1 / 3
    torch.testing.assert_close(sampler.probabilities(), expected)


def test_worked_example_of_the_docs():
    rb, sampler = buffer()
    rb.extend(episodes([2, 2, 2], [5.0, 0.0, 2.5]))  # R = (10, 0, 5), docs/xp_extensions.md
    measure(rb, sampler, recon=[1.0, 3.0, 2.0], value=[0.0, 0.0, 2.0])
    torch.testing.assert_close(sampler.scores(), torch.tensor([0.1, 0.5, 0.5]))
    torch.testing.assert_close(sampler.probabilities(), torch.tensor([0.1152, 0.4424, 0.4424]), atol=1e-4, rtol=0)


def test_sampling_frequencies_match_probabilities_chi_square():
    torch.manual_seed(0)
    rb, sampler = buffer(batch=1000)
    rb.extend(episodes([3, 1, 5, 2], [1.0, 4.0, -2.0, 0.0]))
    measure(rb, sampler, recon=[0.5, 1.0, 2.0, 0.1], value=[0.2, 0.0, 1.0, 0.3])
    probs = sampler.probabilities()
    counts = torch.zeros(4)
    for _ in range(40):
        index = rb.sample(return_info=True)[1]["index"]
        counts += torch.bincount(sampler.step_traj[index], minlength=4)
    expected = probs * counts.sum()
    # fixed seed; reject only below p = 0.001 (a correct sampler fails this 1 time in 1000 seeds)
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3
    assert (counts > 0).all()


@pytest.mark.parametrize(
    "rewards,recon,value",
    [
        ([-10.0, -5.0, -1.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]),  # negative returns
        ([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [0.5, 0.5, 0.5]),  # all-equal scores
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),  # all zero
    ],
)
def test_probabilities_never_negative_or_nan(rewards, recon, value):
    rb, sampler = buffer()
    rb.extend(episodes([2, 2, 2], rewards))
    measure(rb, sampler, recon, value)
    p = sampler.probabilities()
    assert torch.isfinite(p).all() and (p >= 0).all() and p.sum() == pytest.approx(1.0)
    assert (p > 0).all()  # the uniform fraction keeps everyone reachable
    if len(set(rewards)) == 1:
        torch.testing.assert_close(p, torch.full((3,), 1 / 3))


def test_single_trajectory():
    rb, sampler = buffer(slice_len=4, batch=8)
    rb.extend(episodes([10], [1.0]))
    index = rb.sample(return_info=True)[1]["index"]
    assert sampler.probabilities().tolist() == [1.0] and index.max() < 10


def test_nonfinite_errors_are_ignored_and_counted():
    rb, sampler = buffer()
    rb.extend(episodes([2, 2], [1.0, 2.0]))
    measure(rb, sampler, recon=[1.0, 2.0], value=[1.0, 1.0])
    before = sampler.recon.clone()
    with pytest.warns(UserWarning, match="non-finite"):
        sampler.update_priority(torch.tensor([0, 1, 2]), {"recon_error": torch.tensor([float("nan"), float("inf"), 5.0])})
    assert sampler.nonfinite_errors == 2
    assert sampler.recon[0] == before[0]  # trajectory 0 only got non-finite values: unchanged
    assert torch.isfinite(sampler.probabilities()).all()
    with pytest.raises(ValueError, match="elements"):
        sampler.update_priority(torch.tensor([0, 1]), {"recon_error": torch.ones(3)})


def test_new_trajectory_enters_at_max_priority():
    rb, sampler = buffer()
    rb.extend(episodes([2, 2], [0.0, 10.0]))
    measure(rb, sampler, recon=[0.0, 1.0], value=[0.0, 1.0])
    rb.extend(episodes([2], [0.0]))
    rb.sample()
    s = sampler.scores()
    assert s[2] == s[:2].max() and s[2] > 0


def test_wrap_around_evicts_oldest_steps():
    rb, sampler = buffer(capacity=10, slice_len=2, batch=4)
    rb.extend(episodes([4, 3, 2], [1.0, 1.0, 1.0]))  # 9 steps
    rb.extend(episodes([5], [2.0]))  # overwrites steps 9 (free), 0..3: the first episode dies
    rb.sample()
    assert sampler.length.tolist() == [0, 3, 2, 5]
    assert sampler.start.tolist()[1:] == [4, 7, 9]
    assert sampler.probabilities()[0] == 0
    rb.extend(episodes([2], [1.0]))  # overwrites 4, 5: episode 1 keeps its last step at 6
    rb.sample()
    assert sampler.length.tolist() == [0, 1, 2, 5, 2] and int(sampler.start[1]) == 6
    for _ in range(20):  # windows are consecutive and never run from the newest step (5) into the oldest (6)
        idx = rb.sample(return_info=True)[1]["index"].reshape(2, 2)
        assert ((idx[:, 1] - idx[:, 0]) % 10 == 1).all() and (idx[:, 0] != 5).all(), idx


def test_short_trajectories_are_kept_and_slices_run_past_them():
    torch.manual_seed(0)
    rb, sampler = buffer(slice_len=5, batch=50)
    rb.extend(episodes([2, 2, 2, 2, 2, 2], [1.0] * 6))
    s = rb.sample()["step"].reshape(10, 5)
    assert ((s[:, 1:] - s[:, :-1]) == 1).all() and s.max() <= 11


def test_importance_weights_like_torchrl():
    rb, sampler = buffer(slice_len=2, batch=8, importance_beta=0.5)
    rb.extend(episodes([3, 3, 3], [0.0, 1.0, 5.0]))
    measure(rb, sampler, recon=[0.0, 0.0, 0.0], value=[0.0, 0.0, 0.0])
    sample = rb.sample()
    w = sample["priority_weight"]
    assert w.shape == (8,) and (w > 0).all() and (w <= 1.0 + 1e-6).all()
    p = sampler.probabilities()
    expected = (3 * p) ** -0.5 / (3 * p.min()) ** -0.5
    first_steps = sample["index"].reshape(4, 2)[:, 0]  # a slice's weight is its chosen trajectory's
    torch.testing.assert_close(w.reshape(4, 2), expected[sampler.step_traj[first_steps]][:, None].expand(4, 2))


def test_state_dict_round_trip():
    rb, sampler = buffer(slice_len=2, batch=6)
    rb.extend(episodes([4, 3, 5], [1.0, -1.0, 2.0]))
    measure(rb, sampler, recon=[1.0, 2.0, 3.0], value=[0.5, 0.1, 0.2])
    state = sampler.state_dict()
    clone = PrioritizedTrajectorySampler(2)
    clone.load_state_dict(state)
    torch.testing.assert_close(clone.probabilities(), sampler.probabilities())
    torch.manual_seed(3)
    a = sampler.sample(rb.storage, 6)[0]
    torch.manual_seed(3)
    b = clone.sample(rb.storage, 6)[0]
    assert a.tolist() == b.tolist()


def test_traj_key_mode_and_bad_settings():
    sampler = PrioritizedTrajectorySampler(1, traj_key="traj")
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(20), sampler=sampler, batch_size=1)
    rb.extend(TensorDict({"traj": torch.tensor([7, 7, 8, 8, 8, 9]), "reward": torch.ones(6)}, [6]))
    rb.sample()
    assert sampler.length.tolist() == [2, 3, 1]
    with pytest.raises(ValueError, match="uniform_fraction"):
        PrioritizedTrajectorySampler(4, uniform_fraction=1.5)
    with pytest.raises(ValueError, match="weights"):
        PrioritizedTrajectorySampler(4, lambda_eps=-1.0)
