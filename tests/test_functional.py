"""The formulas of torchrl_dreamerxp.functional, pinned on values computed by hand."""
import math

import pytest
import torch

from torchrl_dreamerxp.functional import (
    intrinsic_reward,
    lambda_returns,
    mix_rewards,
    symexp,
    symexp_bins,
    symlog,
    trajectory_priority,
    two_hot_decode,
    two_hot_encode,
)


def test_symlog_symexp_values():
    x = torch.tensor([0.0, 1.0, -1.0, math.e - 1, -(math.e**2 - 1)])
    torch.testing.assert_close(symlog(x), torch.tensor([0.0, math.log(2), -math.log(2), 1.0, -2.0]))
    torch.testing.assert_close(symexp(torch.tensor([0.0, 1.0, -2.0])), torch.tensor([0.0, math.e - 1, -(math.e**2 - 1)]))
    big = torch.tensor([-1e6, -3.5, 0.25, 1e6])
    torch.testing.assert_close(symexp(symlog(big)), big)


def test_symexp_bins_official_layout():
    bins = symexp_bins()
    assert bins.shape == (255,)
    assert bins[127] == 0.0
    torch.testing.assert_close(bins, -bins.flip(0))  # exactly symmetric
    torch.testing.assert_close(bins[-1], torch.tensor(math.exp(20.0) - 1))
    # symlog of the bins is evenly spaced by 40/254
    torch.testing.assert_close(symlog(bins[128:130].double()).float(), torch.tensor([40 / 254, 80 / 254]))


def test_two_hot_encode_between_bins():
    bins = torch.tensor([-2.0, 0.0, 1.0, 3.0])
    # 0.25 lies between 0 and 1: weights 0.75 on 0, 0.25 on 1
    torch.testing.assert_close(two_hot_encode(torch.tensor(0.25), bins), torch.tensor([0.0, 0.75, 0.25, 0.0]))
    # 2.5 between 1 and 3: (3-2.5)/2 = 0.25 on 1, 0.75 on 3
    torch.testing.assert_close(two_hot_encode(torch.tensor(2.5), bins), torch.tensor([0.0, 0.0, 0.25, 0.75]))
    # on a bin: all weight there
    torch.testing.assert_close(two_hot_encode(torch.tensor(1.0), bins), torch.tensor([0.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(two_hot_encode(torch.tensor(-2.0), bins), torch.tensor([1.0, 0.0, 0.0, 0.0]))


def test_two_hot_encode_outside_range_clips_to_end_bins():
    bins = torch.tensor([-2.0, 0.0, 1.0, 3.0])
    out = two_hot_encode(torch.tensor([-10.0, 7.0]), bins)
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))


def test_two_hot_encode_batch_shape_and_default_bins():
    bins = symexp_bins()
    x = torch.tensor([[0.0, 5.0], [-123.4, 1e3]])
    enc = two_hot_encode(x, bins)
    assert enc.shape == (2, 2, 255)
    torch.testing.assert_close(enc.sum(-1), torch.ones(2, 2))
    torch.testing.assert_close((enc * bins).sum(-1), x, rtol=1e-5, atol=1e-5)


def test_two_hot_decode_values():
    bins = torch.tensor([-1.0, 0.0, 1.0])
    # softmax([0, log 3, 0]) = [0.2, 0.6, 0.2] -> 0
    assert two_hot_decode(torch.tensor([0.0, math.log(3), 0.0]), bins) == 0.0
    # softmax([log 1, log 1, log 2]) = [0.25, 0.25, 0.5] -> -0.25 + 0.5 = 0.25
    torch.testing.assert_close(two_hot_decode(torch.log(torch.tensor([1.0, 1.0, 2.0])), bins), torch.tensor(0.25))
    # even number of bins: plain expectation
    torch.testing.assert_close(two_hot_decode(torch.zeros(2), torch.tensor([1.0, 3.0])), torch.tensor(2.0))
    # uniform over the official bins decodes to exactly zero (symmetric sum)
    assert two_hot_decode(torch.zeros(255), symexp_bins()) == 0.0


def test_lambda_returns_hand_computed():
    # T=2, gamma=0.5, lambda=0.5, r=[1, 2], V(s1)=4, V(s2)=8, cont=1, bootstrap=8
    # G_1 = 2 + 0.5*(0.5*8 + 0.5*8) = 6
    # G_0 = 1 + 0.5*(0.5*4 + 0.5*6) = 3.5
    out = lambda_returns(torch.tensor([1.0, 2.0]), torch.tensor([4.0, 8.0]), torch.ones(2), torch.tensor(8.0), 0.5, 0.5)
    torch.testing.assert_close(out, torch.tensor([3.5, 6.0]))


def test_lambda_returns_horizon_one():
    # G_0 = r + gamma*c*((1-lambda) V + lambda*bootstrap) = 1 + 0.9*(0.05*2 + 0.95*3) = 3.655
    out = lambda_returns(torch.tensor([[1.0]]), torch.tensor([[2.0]]), torch.ones(1, 1), torch.tensor([3.0]), 0.9, 0.95)
    torch.testing.assert_close(out, torch.tensor([[3.655]]))


def test_lambda_returns_terminal_mid_trajectory():
    # cont=0 at the second step: G_1 = r_2 = 2, and nothing after it leaks back
    # G_2 = 3 + 1*(0*V + 1*10) = 13;  G_1 = 2 + 0 = 2;  G_0 = 1 + 1*(0*V + 1*2) = 3
    out = lambda_returns(
        torch.tensor([1.0, 2.0, 3.0]), torch.tensor([5.0, 5.0, 5.0]), torch.tensor([1.0, 0.0, 1.0]), torch.tensor(10.0), 1.0, 1.0
    )
    torch.testing.assert_close(out, torch.tensor([3.0, 2.0, 13.0]))


def test_lambda_returns_lambda_zero_is_one_step_td():
    r, v = torch.tensor([1.0, 1.0]), torch.tensor([10.0, 20.0])
    out = lambda_returns(r, v, torch.ones(2), torch.tensor(100.0), 0.5, 0.0)
    torch.testing.assert_close(out, torch.tensor([1 + 0.5 * 10, 1 + 0.5 * 20]))


def test_lambda_returns_per_step_lambda():
    # lambda_t = [0, 1]: G_1 = 1 + 1*(0 + 1*7) = 8, G_0 = 1 + (1*V_1=3) = 4
    out = lambda_returns(torch.ones(2), torch.tensor([3.0, 100.0]), torch.ones(2), torch.tensor(7.0), 1.0, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(out, torch.tensor([4.0, 8.0]))


def test_lambda_returns_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes differ"):
        lambda_returns(torch.ones(3), torch.ones(2), torch.ones(3), torch.tensor(0.0))


def test_trajectory_priority_hand_computed():
    # (0.1 + 0.4*0.5)*2 + 0.5*1 = 0.6 + 0.5 = 1.1 ; (0.1 + 0.4*2)*(-1) + 0.5*3 = -0.9 + 1.5 = 0.6
    out = trajectory_priority(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 3.0]), torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(out, torch.tensor([1.1, 0.6]))
    # custom weights: (1 + 0*δ)*R + 0*ε = R
    torch.testing.assert_close(trajectory_priority(torch.tensor([3.0]), torch.tensor([9.0]), torch.tensor([9.0]), 1.0, 0.0, 0.0), torch.tensor([3.0]))


def test_intrinsic_reward_window_one_k_two():
    # members [1, 3] at t=0: mean 2, population variance 1 -> 3 ; t=1: [2, 2] -> mean 2, var 0 -> 2
    preds = torch.tensor([[1.0, 2.0], [3.0, 2.0]])
    torch.testing.assert_close(intrinsic_reward(preds, 1), torch.tensor([3.0, 2.0]))


def test_intrinsic_reward_window_cut_at_horizon():
    # K=2, H=3, u = [3, 2, 0+0.25]: members [[1,2,0],[3,2,1]] -> means [2,2,0.5], vars [1,0,0.25]
    preds = torch.tensor([[1.0, 2.0, 0.0], [3.0, 2.0, 1.0]])
    # u = [3, 2, 0.75]
    # window 2: [(3+2)/2, (2+0.75)/2, 0.75/1]
    torch.testing.assert_close(intrinsic_reward(preds, 2), torch.tensor([2.5, 1.375, 0.75]))
    # window longer than the horizon: mean of what is left
    torch.testing.assert_close(intrinsic_reward(preds, 10), torch.tensor([5.75 / 3, 2.75 / 2, 0.75]))


def test_intrinsic_reward_batch_dims_and_errors():
    preds = torch.zeros(5, 4, 7, 15)
    assert intrinsic_reward(preds, 3).shape == (4, 7, 15)
    with pytest.raises(ValueError, match="window"):
        intrinsic_reward(preds, 0)
    with pytest.raises(ValueError, match="K>=2"):
        intrinsic_reward(torch.zeros(1, 15), 1)


def test_mix_rewards_lambda_is_extrinsic_weight():
    torch.testing.assert_close(mix_rewards(torch.tensor(1.0), torch.tensor(3.0), 0.25), torch.tensor(2.5))
    torch.testing.assert_close(mix_rewards(torch.tensor(1.0), torch.tensor(3.0), 1.0), torch.tensor(1.0))
    torch.testing.assert_close(mix_rewards(torch.tensor(1.0), torch.tensor(3.0), 0.0), torch.tensor(3.0))
