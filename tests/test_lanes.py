"""Parallel envs in one replay: LaneWriter keeps each env's steps in its own lane, slices stay inside one lane."""
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_dreamerxp.replay import ContiguousSliceSampler, LaneWriter
from torchrl_dreamerxp.training import to_dreamer_layout


def lane_rb(capacity, lanes, slice_len, slices):
    return TensorDictReplayBuffer(storage=LazyTensorStorage(capacity), writer=LaneWriter(lanes),
                                  sampler=ContiguousSliceSampler(slice_len, lanes=lanes), batch_size=slices * slice_len)


def rows(env, times):
    """Steps of one env, tagged env·1000 + t so a sample shows where each row came from."""
    times = torch.as_tensor(list(times), dtype=torch.long)
    return TensorDict({"tag": env * 1000 + times, "lane": torch.full_like(times, env)}, [len(times)])


def test_lane_writer_indices_wrap_inside_each_lane():
    rb = lane_rb(12, 3, 2, 1)  # lanes of 4 rows: [0, 4), [4, 8), [8, 12)
    index = rb.extend(torch.cat([rows(0, range(3)), rows(2, range(2)), rows(0, range(3, 6))]))
    # lane 0 gets t = 0..5 in 4 slots: 0, 1, 2, 3, then 4 → slot 0, 5 → slot 1; lane 2 starts at row 8
    assert index.tolist() == [0, 1, 2, 8, 9, 3, 0, 1]
    assert "lane" not in rb.storage.get(torch.arange(1)).keys()
    assert len(rb.storage) == 10  # rows [0, 10) readable: past the highest lane row written
    assert rb.storage.get(torch.arange(4))["tag"].tolist() == [4, 5, 2, 3]
    assert rb.writer.state_dict() == {"cursor": [2, 0, 2], "written": [6, 0, 2], "write_count": 8}


def test_lane_writer_rejects_bad_lanes():
    rb = lane_rb(10, 3, 2, 1)
    with pytest.raises(ValueError, match="multiple of lanes"):
        rb.extend(rows(0, range(2)))
    rb = lane_rb(12, 3, 2, 1)
    with pytest.raises(ValueError, match=r"lane ids must be in \[0, 3\)"):
        rb.extend(rows(3, range(2)))
    with pytest.raises(KeyError, match="lane"):
        rb.extend(TensorDict({"tag": torch.arange(2)}, [2]))


def test_lane_slices_stay_in_one_env_and_in_time_order():
    torch.manual_seed(0)
    rb = lane_rb(3 * 10, 3, 4, 50)
    # env 1 wraps its lane (13 steps in 10 slots), env 2 holds 3 steps: fewer than one slice, never sampled
    for t in range(13):
        rb.extend(torch.cat([rows(0, [t] if t < 8 else []), rows(1, [t]), rows(2, [t] if t < 3 else [])]))
    seen = set()
    for _ in range(20):
        tag = rb.sample().reshape(50, 4)["tag"]
        env, t = tag // 1000, tag % 1000
        assert (env == env[:, :1]).all() and ((t[:, 1:] - t[:, :-1]) == 1).all(), tag
        seen.update((int(e), int(s)) for e, s in zip(env[:, 0], t[:, 0]))
    # every valid window is reachable: env 0 starts 0..4 (8 steps), env 1 starts 3..9 (oldest kept step is 3)
    assert seen == {(0, s) for s in range(5)} | {(1, s) for s in range(3, 10)}


def test_lane_sampler_needs_one_full_slice_and_keeps_its_state():
    rb = lane_rb(20, 2, 4, 2)
    rb.extend(torch.cat([rows(0, range(3)), rows(1, range(3))]))
    with pytest.raises(RuntimeError, match="no lane holds one slice"):
        rb.sample()
    rb.extend(rows(1, [3]))
    clone = ContiguousSliceSampler(4, lanes=2)
    clone.load_state_dict(rb.sampler.state_dict())
    torch.manual_seed(1)
    a = rb.sampler.sample(rb.storage, 8)[0]
    torch.manual_seed(1)
    assert torch.equal(clone.sample(rb.storage, 8)[0], a) and (a // 10 == 1).all()


def test_dreamer_layout_names_each_env_lane():
    step = TensorDict({"observation": torch.zeros(2, 1), "action": torch.ones(2, 2),
                       "is_first": torch.tensor([[True], [False]]),
                       "next": {"observation": torch.ones(2, 1), "reward": torch.ones(2, 1),
                                "terminated": torch.zeros(2, 1, dtype=torch.bool),
                                "done": torch.zeros(2, 1, dtype=torch.bool)}}, [2])
    out = to_dreamer_layout(torch.stack([step, step]), ["observation"], {"deter": (1,), "stoch": (1, 1)},
                            lane_key="lane")
    assert out["lane"].tolist() == [0, 0, 0, 1, 1, 1]  # a reset row plus two steps per env
