"""DreamerV3 replay: the step layout written from collector batches and the contiguous slice sampler."""
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_dreamerxp.replay import ContiguousSliceSampler
from torchrl_dreamerxp.training import to_dreamer_layout
from torchrl_dreamerxp.training.ratio import TrainRatio
from torchrl_dreamerxp.training.replay_context import write_back_states


def collector_batch():
    # two episodes: o0 -a0-> o1 (terminal) | reset o0' -a1-> o1' -a2-> o2' (truncated)
    obs = torch.tensor([[0.0], [10.0], [11.0]])
    nxt_obs = torch.tensor([[1.0], [11.0], [12.0]])
    return TensorDict(
        {
            "observation": obs,
            "action": torch.tensor([[1, 0], [0, 1], [1, 0]]),
            "is_first": torch.tensor([[True], [True], [False]]),
            "next": {
                "observation": nxt_obs,
                "reward": torch.tensor([[1.0], [2.0], [3.0]]),
                "terminated": torch.tensor([[True], [False], [False]]),
                "done": torch.tensor([[True], [False], [True]]),
            },
        },
        [3],
    )


def test_dreamer_layout_keeps_every_step_and_first_observations():
    rows = to_dreamer_layout(collector_batch(), ["observation"], {"deter": (4,), "stoch": (2, 3)})
    assert rows["observation"].squeeze(-1).tolist() == [0.0, 1.0, 10.0, 11.0, 12.0]
    assert rows["is_first"].tolist() == [True, False, True, False, False]
    assert rows["reward"].tolist() == [0.0, 1.0, 0.0, 2.0, 3.0]
    assert rows["is_terminal"].tolist() == [False, True, False, False, False]
    assert rows["is_last"].tolist() == [False, True, False, False, True]
    # the action stored with o_t is the one that led to it; zero on reset steps
    assert rows["prev_action"].tolist() == [[0, 0], [1, 0], [0, 0], [0, 1], [1, 0]]
    assert rows["deter"].shape == (5, 4) and rows["stoch"].abs().sum() == 0


def test_dreamer_layout_multi_env_blocks():
    batch = torch.stack([collector_batch(), collector_batch()], 0)
    rows = to_dreamer_layout(batch, ["observation"], {"deter": (4,), "stoch": (2, 3)})
    assert rows.shape == (10,) and rows["is_first"].tolist() == [True, False, True, False, False] * 2


def make_rb(capacity, slice_len, batch):
    return TensorDictReplayBuffer(storage=LazyTensorStorage(capacity), sampler=ContiguousSliceSampler(slice_len), batch_size=batch)


def test_slices_are_contiguous_and_cross_episode_ends():
    torch.manual_seed(0)
    rb = make_rb(100, 5, 50)
    is_first = torch.zeros(20, dtype=torch.bool)
    is_first[::3] = True  # episodes of 3 steps, shorter than a slice: never dropped
    rb.extend(TensorDict({"t": torch.arange(20), "is_first": is_first}, [20]))
    s = rb.sample().reshape(10, 5)
    assert ((s["t"][:, 1:] - s["t"][:, :-1]) == 1).all()
    assert s["is_first"].any(1).all()  # every slice of 5 runs across an episode start
    starts = torch.cat([rb.sample().reshape(10, 5)["t"][:, 0] for _ in range(50)])
    assert starts.min() == 0 and starts.max() == 15  # every valid start reachable, none past the data


def test_slices_never_straddle_the_write_cursor():
    torch.manual_seed(0)
    rb = make_rb(10, 4, 40)
    rb.extend(TensorDict({"t": torch.arange(13)}, [13]))  # storage: [10, 11, 12, 3, 4, ..., 9], newest = 12
    for _ in range(20):
        s = rb.sample().reshape(10, 4)["t"]
        assert ((s[:, 1:] - s[:, :-1]) == 1).all(), s


def test_slice_sampler_errors_and_state():
    rb = make_rb(10, 4, 6)
    rb.extend(TensorDict({"t": torch.arange(8)}, [8]))
    with pytest.raises(ValueError, match="multiple"):
        rb.sample()
    small = make_rb(10, 4, 4)
    small.extend(TensorDict({"t": torch.arange(2)}, [2]))
    with pytest.raises(RuntimeError, match="fewer than one slice"):
        small.sample()
    sampler = ContiguousSliceSampler(4)
    sampler.extend(torch.arange(7))
    clone = ContiguousSliceSampler(4)
    clone.load_state_dict(sampler.state_dict())
    assert clone.state_dict() == {"cursor": 7}


def test_write_back_keeps_length_and_cursor():
    rb = make_rb(10, 2, 4)
    rb.extend(TensorDict({"deter": torch.zeros(6, 3), "stoch": torch.zeros(6, 2, 2)}, [6]))
    write_back_states(rb, torch.tensor([[4, 5]]), torch.ones(1, 2, 3), torch.ones(1, 2, 2, 2))
    assert len(rb) == 6 and rb.sampler.state_dict()["cursor"] == 6
    rb.extend(TensorDict({"deter": torch.zeros(1, 3), "stoch": torch.zeros(1, 2, 2)}, [1]))
    assert rb[:]["deter"][:, 0].tolist() == [0, 0, 0, 0, 1, 1, 0]


def test_train_ratio_counts_replayed_steps():
    ratio = TrainRatio(train_ratio=512, replayed_per_update=16 * 64)
    assert ratio(10) == 5 and ratio(10) == 0 and ratio(11) == 0 and ratio(12) == 1
    state = ratio.state_dict()
    again = TrainRatio(512, 1024)
    again.load_state_dict(state)
    assert again(14) == 1
