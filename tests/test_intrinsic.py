"""XP extension 2: reward ensemble, intrinsic-reward transform, λ schedulers, and their recipe wiring."""
import math

import pytest
import torch
from tensordict import TensorDict

from torchrl_dreamerxp.modules import RewardEnsemble, TwoHotHead
from torchrl_dreamerxp.modules.reward_ensemble import EnsembleMLP
from torchrl_dreamerxp.objectives import RewardEnsembleLoss, WorldModelLoss
from torchrl_dreamerxp.schedulers import ConstantWeight, ExponentialDecayWeight, ReturnMovingAverageWeight, make_scheduler
from torchrl_dreamerxp.transforms import IntrinsicRewardTransform


DETER, STOCH, CLASSES, ACTION = 16, 4, 4, 2  # the sizes of test_objectives' tiny world model and batch


class FixedPredictions:
    """A stand-in ensemble whose reward predictions are given, to pin the transform's arithmetic."""

    def __init__(self, preds):
        self.preds = preds

    def reward_predictions(self, deter, stoch, action, next_deter):
        return self.preds


# -- the ensemble ---------------------------------------------------------------------------------
def test_ensemble_mlp_is_one_vectorized_call_equal_to_each_member_alone():
    torch.manual_seed(0)
    mlp = EnsembleMLP(members=3, in_features=5, units=7, layers=2, out=4)
    x = torch.randn(6, 5)
    out = mlp(x)
    assert out.shape == (3, 6, 4)
    for k in range(3):  # member k computed by hand from its slice of the stacked parameters
        h = x @ mlp.weights[0][k] + mlp.biases[0][k]
        for i in (1, 2):
            h = torch.nn.functional.silu(h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-4) * mlp.norm_scales[i - 1][k])
            h = h @ mlp.weights[i][k] + mlp.biases[i][k]
        torch.testing.assert_close(out[k], h)
    # per-member inputs [K, N, in] give the same result as the shared input expanded
    torch.testing.assert_close(mlp(x.expand(3, 6, 5)), out)
    with pytest.raises(ValueError, match="expected"):
        mlp(torch.randn(2, 6, 5))


def test_members_differ_by_initialisation():
    torch.manual_seed(0)
    ens = RewardEnsemble(DETER, STOCH, CLASSES, ACTION, members=5, units=8, layers=1, mode="reward")
    preds = ens.reward_predictions(torch.randn(10, DETER), torch.randn(10, STOCH, CLASSES), torch.randn(10, ACTION),
                                   torch.randn(10, DETER))
    assert preds.shape == (5, 10)
    assert preds.var(0).min() > 0  # every input gets some disagreement at initialisation


def test_latent_mode_scores_the_predicted_latent_with_the_reward_head():
    torch.manual_seed(0)
    head = TwoHotHead(DETER + STOCH * CLASSES, units=8, layers=1, outscale=1.0)  # non-zero so scores differ
    ens = RewardEnsemble(DETER, STOCH, CLASSES, ACTION, members=3, units=8, layers=1, reward_head=head)
    deter, stoch, action = torch.randn(7, DETER), torch.randn(7, STOCH, CLASSES), torch.randn(7, ACTION)
    next_deter = torch.randn(7, DETER)
    preds = ens.reward_predictions(deter, stoch, action, next_deter)
    logits = ens(deter, stoch, action)  # [K, N, S, C]
    z = torch.nn.functional.one_hot(logits.argmax(-1), CLASSES).float()
    expected = torch.stack([head.predict(head(torch.cat([next_deter, z[k].flatten(-2)], -1))) for k in range(3)])
    torch.testing.assert_close(preds, expected, rtol=1e-5, atol=1e-5)  # symexp bins reach e^20


def test_compiled_scoring_and_training_equal_the_eager_ones():
    # compile=true compiles the ensemble's scoring of imagined steps and its member MLP: same numbers
    torch.manual_seed(0)
    head = TwoHotHead(DETER + STOCH * CLASSES, units=8, layers=1, outscale=1.0)
    ens = RewardEnsemble(DETER, STOCH, CLASSES, ACTION, members=3, units=8, layers=2, reward_head=head)
    deter, stoch, action = torch.randn(6, 5, DETER), torch.randn(6, 5, STOCH, CLASSES), torch.randn(6, 5, ACTION)
    next_deter, next_reward = torch.randn(6, 5, DETER), torch.randn(6, 5)
    next_stoch = torch.nn.functional.one_hot(torch.randint(CLASSES, (6, 5, STOCH)), CLASSES).float()

    def run():
        preds = ens.reward_predictions(deter, stoch, action, next_deter)
        grads = torch.autograd.grad(ens.loss(deter, stoch, action, next_stoch, next_reward).mean(), list(ens.parameters()))
        return preds, grads

    eager_preds, eager_grads = run()
    ens.compile_scoring(dynamic=False)
    preds, grads = run()
    # the reward bins reach e^20: compare relative to the predictions' size
    torch.testing.assert_close(preds, eager_preds, rtol=1e-4, atol=1e-4 * eager_preds.abs().max().item())
    for g, eg in zip(grads, eager_grads):
        torch.testing.assert_close(g, eg, rtol=1e-4, atol=1e-6)


def test_ensemble_holds_no_world_model_parameter_and_sends_it_no_gradient(replay_batch, tiny_world_model):
    torch.manual_seed(0)
    wm = tiny_world_model()
    ens = RewardEnsemble(DETER, STOCH, CLASSES, ACTION, members=3, units=8, layers=1, reward_head=wm.reward)
    assert not {id(p) for p in ens.parameters()} & {id(p) for p in wm.parameters()}
    batch = replay_batch()
    post = WorldModelLoss(wm)(batch)  # posterior states that still carry the world model's graph
    assert post["deter"].requires_grad
    data = batch[:, 1:].select("prev_action", "reward", "is_first")
    data.set("deter", post["deter"])
    data.set("stoch", post["stoch"])
    RewardEnsembleLoss(ens)(data)["loss_ensemble"].backward()
    assert all(p.grad is None for p in wm.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ens.parameters())


@pytest.mark.parametrize("mode", ["latent", "reward"])
def test_ensemble_learns_a_fixed_transition(mode):
    torch.manual_seed(0)
    head = TwoHotHead(DETER + STOCH * CLASSES, units=8, layers=1)
    ens = RewardEnsemble(DETER, STOCH, CLASSES, ACTION, members=3, units=16, layers=1, mode=mode, reward_head=head)
    stoch = torch.nn.functional.one_hot(torch.randint(CLASSES, (2, 9, STOCH)), CLASSES).float()
    td = TensorDict({"deter": torch.randn(2, 9, DETER), "stoch": stoch, "prev_action": torch.randn(2, 9, ACTION),
                     "reward": torch.randn(2, 9), "is_first": torch.zeros(2, 9, dtype=torch.bool)}, [2, 9])
    loss_fn = RewardEnsembleLoss(ens)
    opt = torch.optim.Adam(ens.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = loss_fn(td)["loss_ensemble"]
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.3 * first


def test_ensemble_loss_masks_transitions_into_a_new_episode():
    ens = RewardEnsemble(DETER, STOCH, CLASSES, ACTION, members=2, units=8, layers=1, mode="reward")
    td = TensorDict({"deter": torch.zeros(1, 3, DETER), "stoch": torch.zeros(1, 3, STOCH, CLASSES),
                     "prev_action": torch.zeros(1, 3, ACTION), "reward": torch.tensor([[0.0, 0.0, 1e6]]),
                     "is_first": torch.tensor([[False, False, True]])}, [1, 3])
    masked = RewardEnsembleLoss(ens)(td)["loss_ensemble"]
    td["reward"][0, 2] = 0.0
    torch.testing.assert_close(masked, RewardEnsembleLoss(ens)(td)["loss_ensemble"])


def test_ensemble_rejects_bad_settings():
    with pytest.raises(ValueError, match="at least 2"):
        RewardEnsemble(DETER, STOCH, CLASSES, ACTION, members=1, mode="reward")
    with pytest.raises(ValueError, match="mode"):
        RewardEnsemble(DETER, STOCH, CLASSES, ACTION, mode="nope")
    with pytest.raises(ValueError, match="reward_head"):
        RewardEnsemble(DETER, STOCH, CLASSES, ACTION, mode="latent")


# -- the transform ---------------------------------------------------------------------------------
def imagined(n=1, horizon=3, reward=None):
    reward = torch.ones(n, horizon + 1) if reward is None else reward
    return TensorDict({"deter": torch.zeros(n, horizon + 1, DETER), "stoch": torch.zeros(n, horizon + 1, STOCH, CLASSES),
                       "action": torch.zeros(n, horizon + 1, ACTION), "reward": reward}, [n, horizon + 1])


def test_transform_mixes_by_hand_computed_values():
    # K = 2 members, H = 3: r̂_1 = [1, 2, 3], r̂_2 = [3, 2, 1] -> mean [2, 2, 2], variance [1, 0, 1],
    # u = [3, 2, 3]; window 2 (cut at the horizon): r_intr = [2.5, 2.5, 3]
    preds = torch.tensor([[[1.0, 2.0, 3.0]], [[3.0, 2.0, 1.0]]])
    t = IntrinsicRewardTransform.for_imagination(FixedPredictions(preds), ConstantWeight(0.25), window=2)
    out = t(imagined(reward=torch.tensor([[7.0, 1.0, 1.0, 1.0]])))
    torch.testing.assert_close(out["reward_intrinsic"], torch.tensor([[0.0, 2.5, 2.5, 3.0]]))
    torch.testing.assert_close(out["reward_extrinsic"], torch.tensor([[7.0, 1.0, 1.0, 1.0]]))
    # λ = 0.25 is the extrinsic weight: 0.25·1 + 0.75·r_intr; the start state keeps its reward
    torch.testing.assert_close(out["reward"], torch.tensor([[7.0, 2.125, 2.125, 2.5]]))


def test_transform_follows_the_scheduler():
    preds = torch.tensor([[[1.0, 1.0]], [[3.0, 3.0]]])  # u = 2 + 1 = 3 everywhere
    sched = ExponentialDecayWeight(lam_start=0.0, lam_end=1.0, decay_steps=1)
    t = IntrinsicRewardTransform.for_imagination(FixedPredictions(preds), sched, window=1)
    assert t(imagined(horizon=2))["reward"][0, 1] == pytest.approx(3.0)  # λ = 0: intrinsic only
    for _ in range(50):
        sched.step()
    assert t(imagined(horizon=2))["reward"][0, 1] == pytest.approx(1.0, abs=1e-6)  # λ -> 1: extrinsic only


def test_transform_env_step_uses_a_window_of_one():
    preds = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # two envs: u = [2 + 1, 0]
    t = IntrinsicRewardTransform(FixedPredictions(preds), ConstantWeight(0.5), window=4, reward_key=("next", "reward"))
    state = TensorDict({"deter": torch.zeros(2, DETER), "stoch": torch.zeros(2, STOCH, CLASSES),
                        "action": torch.zeros(2, ACTION)}, [2])
    nxt = TensorDict({"deter": torch.zeros(2, DETER), "reward": torch.tensor([[1.0], [1.0]])}, [2])
    out = t._step(state, nxt)
    torch.testing.assert_close(out["reward_intrinsic"], torch.tensor([[3.0], [0.0]]))
    torch.testing.assert_close(out["reward"], torch.tensor([[2.0], [0.5]]))


def test_transform_rejects_window_below_one():
    with pytest.raises(ValueError, match="window"):
        IntrinsicRewardTransform(FixedPredictions(None), ConstantWeight(0.5), window=0)


# -- schedulers -----------------------------------------------------------------------------------
def test_exponential_decay_hand_computed_curve_and_bounds():
    s = ExponentialDecayWeight(lam_start=0.2, lam_end=0.8, decay_steps=4)
    assert s.value == pytest.approx(0.2)
    values = [s.step() for _ in range(8)]
    # 1 − λ_n = 0.2 + 0.6·e^(−n/4)
    assert values[3] == pytest.approx(1 - (0.2 + 0.6 * math.exp(-1)))
    assert values[7] == pytest.approx(1 - (0.2 + 0.6 * math.exp(-2)))
    assert all(a < b for a, b in zip(values, values[1:])) and all(0.2 <= v < 0.8 for v in values)
    for _ in range(1000):
        s.step()
    assert s.value == pytest.approx(0.8)


def test_return_moving_average_hand_computed_and_bounded():
    s = ReturnMovingAverageWeight(lam_init=0.5, lam_min=0.3, lam_max=0.6, rate=0.5, slow_rate=0.25, tolerance=0.5,
                                  lam_rate=0.5)
    assert s.step([]) == pytest.approx(0.4)  # no return yet: the target is lam_min, half the way there
    assert s.step([0.0]) == pytest.approx(0.35)  # the first return only initialises the averages
    # fast 4, slow 2, spread 0.25·|8 − 2| = 1.5: 4 − 2 > 0.5·1.5 -> improving, target 0.6
    assert s.step([8.0]) == pytest.approx(0.475)
    assert (s.fast, s.slow, s.dev) == (4.0, 2.0, 1.5)
    assert s.step([0.0]) == pytest.approx(0.3875)  # fast 2, slow 1.5, spread 1.5: 0.5 < 0.75, stalled -> 0.3
    assert s.step([float("nan")]) == pytest.approx(0.34375)  # a non-finite return is ignored; λ still moves
    t = ReturnMovingAverageWeight()
    t.load_state_dict(s.state_dict())  # hyperparameters come with the state
    assert (t.value, t.fast, t.slow, t.dev, t.updates, t.lam_rate, t.lam_max) == (s.value, s.fast, s.slow, s.dev,
                                                                                    s.updates, 0.5, 0.6)
    assert t.step([0.0]) == s.step([0.0])


def test_return_moving_average_moves_by_a_rate_per_update_whatever_the_episodes():
    s = ReturnMovingAverageWeight(lam_init=0.0, lam_rate=0.01, rate=0.5, slow_rate=0.1)
    lams = [s.step([float(i) for i in range(k * 50, k * 50 + 50)]) for k in range(5)]  # 50 improving episodes each
    assert lams[0] == pytest.approx(0.01) and all(b - a <= 0.01 for a, b in zip([0.0] + lams, lams))


def test_a_solved_task_keeps_lambda_extrinsic():
    s = ReturnMovingAverageWeight(lam_init=1.0, lam_rate=0.01, solved_return=475.0)
    lams = [s.step([500.0]) for _ in range(2000)]  # CartPole solved: the same return every episode
    assert min(lams) == 1.0
    stuck = ReturnMovingAverageWeight(lam_init=1.0, lam_rate=0.01, solved_return=-110.0)
    lams = [stuck.step([-200.0]) for _ in range(2000)]  # MountainCar stuck at -200: explore
    assert lams[-1] < 0.01


@pytest.mark.parametrize("skew", ["symmetric", "right", "left"])
def test_return_moving_average_lowers_lambda_on_a_noisy_plateau(skew):
    """A flat but noisy stream of returns is a stall whatever the shape of its noise: λ goes to explore."""
    gen = torch.Generator().manual_seed(0)
    noise = {"symmetric": torch.randn(2000, generator=gen), "right": torch.rand(2000, generator=gen) ** 4,
             "left": -torch.rand(2000, generator=gen) ** 4}[skew]
    s = ReturnMovingAverageWeight(lam_init=0.5, lam_rate=0.01)
    lams = [s.step([100.0 + 10.0 * float(x)]) for x in noise]
    assert sum(lams[-500:]) / 500 < 0.1


def test_return_moving_average_raises_lambda_while_returns_improve():
    gen = torch.Generator().manual_seed(0)
    s = ReturnMovingAverageWeight(lam_init=0.0, lam_rate=0.01)
    lams = [s.step([float(i) + 5.0 * float(torch.randn(1, generator=gen))]) for i in range(600)]
    assert lams[-1] > 0.95 and sum(lams[-300:]) / 300 > 0.9


def test_scheduler_state_round_trip_and_constant():
    s = ExponentialDecayWeight(0.1, 0.9, 10)
    for _ in range(5):
        s.step()
    t = ExponentialDecayWeight(0.1, 0.9, 10)
    t.load_state_dict(s.state_dict())
    assert t.step() == s.step()
    c = ConstantWeight(0.3)
    assert c.step([1.0, 2.0]) == 0.3 and c.value == 0.3


@pytest.mark.parametrize("name, kwargs", [
    ("constant", {"lam": 1.5}), ("constant", {"lam": -0.1}), ("exponential", {"lam_start": 2.0}),
    ("exponential", {"lam_end": -1.0}), ("exponential", {"decay_steps": 0}), ("return_average", {"lam_min": -0.5}),
    ("return_average", {"lam_max": 1.2}), ("return_average", {"lam_min": 0.8, "lam_max": 0.2}),
    ("return_average", {"rate": 0.0}), ("return_average", {"rate": 0.01, "slow_rate": 0.1}), ("nope", {}),
    ("return_average", {"lam_init": 0.9, "lam_max": 0.8}), ("return_average", {"lam_rate": 0.0}),
    ("return_average", {"solved_return": float("inf")}), ("exponential", {"lam_start": 0.9, "lam_end": 0.5}),
])
def test_schedulers_reject_bad_settings(name, kwargs):
    with pytest.raises(ValueError):
        make_scheduler(name, **kwargs)


# -- alignment of the time indices ------------------------------------------------------------------------
class Recording:
    """A stand-in ensemble that records what it is given."""

    def __init__(self, out_shape):
        self.out_shape, self.calls = out_shape, []

    def reward_predictions(self, deter, stoch, action, next_deter):
        self.calls.append((deter, stoch, action, next_deter))
        return torch.zeros(self.out_shape)


def test_transform_feeds_state_t_action_t_and_next_deter():
    td = imagined(n=2, horizon=3)
    td["deter"] = torch.arange(4.0).expand(2, 4).unsqueeze(-1).expand(2, 4, DETER).clone()
    td["action"] = torch.arange(4.0).expand(2, 4).unsqueeze(-1).expand(2, 4, ACTION).clone()
    stub = Recording((2, 2, 3))
    IntrinsicRewardTransform.for_imagination(stub, ConstantWeight(0.5), window=1)(td)
    deter, _, action, next_deter = stub.calls[0]
    assert deter[0, :, 0].tolist() == [0, 1, 2] and action[0, :, 0].tolist() == [0, 1, 2]  # state t, action at t
    assert next_deter[0, :, 0].tolist() == [1, 2, 3]  # the state it leads to


def test_ensemble_loss_pairs_state_t_with_the_prev_action_stored_at_t_plus_1():
    seen = {}

    class RecordingEnsemble(torch.nn.Module):
        def loss(self, deter, stoch, action, next_stoch, next_reward):
            seen.update(deter=deter, action=action, next_stoch=next_stoch, next_reward=next_reward)
            return torch.zeros(deter.shape[:2])

    t = torch.arange(4.0)
    td = TensorDict({"deter": t.view(1, 4, 1).expand(1, 4, DETER), "stoch": t.view(1, 4, 1, 1).expand(1, 4, STOCH, CLASSES),
                     "prev_action": t.view(1, 4, 1).expand(1, 4, ACTION), "reward": t.view(1, 4),
                     "is_first": torch.zeros(1, 4, dtype=torch.bool)}, [1, 4])
    RewardEnsembleLoss(RecordingEnsemble())(td)
    assert seen["deter"][0, :, 0].tolist() == [0, 1, 2]  # (h_t, z_t, a_{t+1}) -> (z_{t+1}, r_{t+1})
    assert seen["action"][0, :, 0].tolist() == [1, 2, 3]
    assert seen["next_stoch"][0, :, 0, 0].tolist() == [1, 2, 3] and seen["next_reward"][0].tolist() == [1, 2, 3]


@pytest.fixture
def learner_with_intrinsic(tiny_world_model):
    """``learner_with_intrinsic(lam)``: a tiny learner with a reward-mode ensemble mixing at extrinsic weight λ."""
    from torchrl_dreamerxp.modules import Actor
    from torchrl_dreamerxp.training import Learner

    def make(lam):
        torch.manual_seed(0)
        wm = tiny_world_model()
        ens = RewardEnsemble(DETER, STOCH, CLASSES, ACTION, members=3, units=8, layers=1, mode="reward")
        transform = IntrinsicRewardTransform.for_imagination(ens, ConstantWeight(lam), window=2, init_key="is_first")
        learner = Learner(wm, Actor(wm.rssm.feature_dim(), ACTION, True, units=8, layers=1),
                          TwoHotHead(wm.rssm.feature_dim(), 8, 1), horizon=3, warmup=0, reward_transform=transform,
                          ensemble=ens)
        return learner, ens
    return make


def test_replay_value_loss_learns_the_mixed_reward(learner_with_intrinsic, replay_batch):
    from torchrl_dreamerxp.functional import intrinsic_reward

    batch = replay_batch()
    data = batch[:, 1:]
    deter, stoch = torch.randn(2, 5, DETER), torch.randn(2, 5, STOCH, CLASSES)
    extrinsic_only, _ = learner_with_intrinsic(1.0)
    torch.testing.assert_close(extrinsic_only.replay_rewards(data, deter, stoch), data["reward"])
    intrinsic_only, ens = learner_with_intrinsic(0.0)
    mixed = intrinsic_only.replay_rewards(data, deter, stoch)
    preds = ens.reward_predictions(deter[:, :-1], stoch[:, :-1], data["prev_action"][:, 1:], deter[:, 1:])
    torch.testing.assert_close(mixed[:, 1:], intrinsic_reward(preds, 2))
    torch.testing.assert_close(mixed[:, 0], data["reward"][:, 0])  # no prediction for the first step


def test_a_non_finite_ensemble_gradient_is_skipped_and_counted(learner_with_intrinsic, replay_batch):
    learner, ens = learner_with_intrinsic(0.5)
    before = {k: v.clone() for k, v in ens.state_dict().items()}
    handle = next(ens.parameters()).register_hook(lambda g: g * float("nan"))
    out, _ = learner.update(replay_batch())
    handle.remove()
    assert out["ensemble_skipped"] == 1.0 and out["skipped"] == 0.0
    assert all(torch.equal(before[k], v) for k, v in ens.state_dict().items())
    assert learner.update(replay_batch())[0]["ensemble_skipped"] == 1.0  # and the next step trains again
    assert any(not torch.equal(before[k], v) for k, v in ens.state_dict().items())


def test_replay_rewards_windows_stop_at_an_episode_start(learner_with_intrinsic, replay_batch):
    from torchrl_dreamerxp.functional import intrinsic_reward

    data = replay_batch()[:, 1:]
    data["is_first"][:, 3] = True  # a new episode starts at step 3 of the slice
    deter, stoch = torch.randn(2, 5, DETER), torch.randn(2, 5, STOCH, CLASSES)
    learner, ens = learner_with_intrinsic(0.0)
    mixed = learner.replay_rewards(data, deter, stoch)
    preds = ens.reward_predictions(deter[:, :-1], stoch[:, :-1], data["prev_action"][:, 1:], deter[:, 1:])
    u = preds.mean(0) + preds.var(0, unbiased=False)  # arrivals at steps 1 … 4
    torch.testing.assert_close(mixed[:, 1], (u[:, 0] + u[:, 1]) / 2)
    torch.testing.assert_close(mixed[:, 2], u[:, 1])  # its window would reach the reset at step 3: cut
    torch.testing.assert_close(mixed[:, 3], data["reward"][:, 3])  # the reset step: no prediction
    torch.testing.assert_close(mixed[:, 4], u[:, 3])
    assert not torch.allclose(mixed[:, 2], intrinsic_reward(preds, 2)[:, 1])


# -- TorchRL's layout: envs, rollouts, replay buffers -------------------------------------------------------------
class ObsEnsemble(torch.nn.Module):
    """Predictions that are a known function of the observation: member k predicts (k + 1)·obs[0]."""

    def reward_predictions(self, deter, stoch, action, next_deter):
        return torch.stack([(k + 1) * deter[..., 0] for k in range(2)])


def obs_transform(**kw):
    return IntrinsicRewardTransform(ObsEnsemble(), ConstantWeight(0.0), window=kw.pop("window", 3), deter_key="observation",
                                    next_deter_key=("next", "observation"), stoch_key=None, **kw)


def u_of(obs0):
    """mean + population variance of (1·x, 2·x): 1.5x + 0.25x²."""
    return 1.5 * obs0 + 0.25 * obs0 ** 2


def test_appended_to_an_env_it_keeps_one_reward_key():
    from torchrl.envs import GymEnv, RewardSum, TransformedEnv
    from torchrl.envs.utils import check_env_specs

    env = TransformedEnv(GymEnv("CartPole-v1"), obs_transform())
    env.append_transform(RewardSum())
    assert env.reward_key == "reward"
    assert "reward_intrinsic" in env.full_observation_spec.keys() and "reward_extrinsic" in env.full_observation_spec.keys()
    env.set_seed(0)
    rollout = env.rollout(20)
    torch.testing.assert_close(rollout["next", "reward_intrinsic"].squeeze(-1), u_of(rollout["observation"][..., 0]))
    torch.testing.assert_close(rollout["next", "reward"], rollout["next", "reward_intrinsic"])  # λ = 0
    torch.testing.assert_close(rollout["next", "episode_reward"][-1], rollout["next", "reward"].sum(0))
    assert [k for k in rollout["next"].keys() if k == "episode_reward"] == ["episode_reward"]
    check_env_specs(env)  # every written entry is declared in the specs


def rollout_batch(obs0, done_at=()):
    n, t = obs0.shape
    done = torch.zeros(n, t, 1, dtype=torch.bool)
    for b, s in done_at:
        done[b, s] = True
    return TensorDict({"observation": obs0.unsqueeze(-1).expand(n, t, 2).clone(), "action": torch.zeros(n, t, 1),
                       "next": {"observation": torch.zeros(n, t, 2), "reward": torch.zeros(n, t, 1), "done": done}}, [n, t])


def test_rollout_layout_scores_each_row_and_stops_at_done_without_an_offset():
    obs0 = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    out = obs_transform(window=2)(rollout_batch(obs0, done_at=[(0, 1)]))
    u = u_of(obs0)[0]
    # row t's window: its own transition and the next one, never past the done at row 1
    torch.testing.assert_close(out["next", "reward_intrinsic"][0, :, 0], torch.stack([(u[0] + u[1]) / 2, u[1], (u[2] + u[3]) / 2, u[3]]))


def test_time_first_input_and_flat_replay_samples():
    obs0 = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    expected = obs_transform(window=2)(rollout_batch(obs0))["next", "reward_intrinsic"]
    time_first = obs_transform(window=2, time_dim=0)(rollout_batch(obs0).transpose(0, 1))
    torch.testing.assert_close(time_first["next", "reward_intrinsic"].transpose(0, 1), expected)
    flat = obs_transform(window=2, slice_len=3)(rollout_batch(obs0).reshape(-1))
    torch.testing.assert_close(flat["next", "reward_intrinsic"], expected.reshape(-1, 1))  # windows stop at slice ends
    with pytest.raises(ValueError, match="slice_len"):
        obs_transform()(rollout_batch(obs0).reshape(-1))
    with pytest.raises(ValueError, match="whole number of slices"):
        obs_transform(slice_len=4)(rollout_batch(obs0).reshape(-1))


def test_in_a_replay_buffer_windows_stop_at_slice_ends_and_episode_starts():
    from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer

    obs0 = torch.arange(1.0, 21.0).reshape(1, 20)
    data = rollout_batch(obs0).reshape(-1)
    data["episode"] = torch.arange(20) // 10
    data["is_init"] = torch.arange(20) % 10 == 0
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(20), sampler=SliceSampler(slice_len=5, traj_key="episode"),
                                batch_size=10)
    rb.append_transform(obs_transform(window=3, slice_len=5))
    rb.extend(data)
    sample = rb.sample().reshape(2, 5)
    u = u_of(sample["observation"][..., 0])
    ends = sample["next", "truncated"].squeeze(-1)
    assert ends[:, -1].all()
    expected = torch.stack([torch.stack([u[b, t:min(t + 3, 5)].mean() for t in range(5)]) for b in range(2)])
    torch.testing.assert_close(sample["next", "reward_intrinsic"].squeeze(-1), expected)
