"""Losses, optimizer and the update: faithful defaults and behaviour on small hand-made cases."""
import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.modules.value_norm import PercentileValueNorm
from torchrl.objectives import SoftUpdate
from torchrl.trainers.algorithms import DreamerV3Optimizer

from torchrl_dreamerxp.modules import Actor, TwoHotHead
from torchrl_dreamerxp.objectives import ActorLoss, CriticLoss, WorldModelLoss
from torchrl_dreamerxp.training import Learner


def test_world_model_loss_defaults_are_official(tiny_world_model):
    loss = WorldModelLoss(tiny_world_model())
    assert (loss.free_nats, loss.dyn_scale, loss.rep_scale, loss.rec_scale, loss.reward_scale, loss.cont_scale) == (1.0, 1.0, 0.1, 1.0, 1.0, 1.0)
    assert loss.discount == pytest.approx(1 - 1 / 333) and loss.context == 1


def test_world_model_loss_outputs_and_replay_context(replay_batch, tiny_world_model):
    torch.manual_seed(0)
    wm = tiny_world_model()
    loss = WorldModelLoss(wm)
    batch = replay_batch()
    out = loss(batch)
    assert {"loss_model_reconstruction", "loss_model_reward", "loss_model_continue", "loss_model_kl_dyn", "loss_model_kl_rep"} <= set(out.keys())
    assert out["recon_error"].shape == (2, 5) and out["deter"].shape == (2, 5, 16)
    assert out["loss_model_kl_dyn"] >= 1.0 and out["loss_model_kl_rep"] >= 0.1  # free bits
    # the stored state of the context step is the start state: changing it changes the first posterior
    batch2 = batch.clone()
    batch2["deter"][:, 0] = 5.0
    torch.manual_seed(1)
    a = loss(batch)["deter"][:, 0]
    torch.manual_seed(1)
    b = loss(batch2)["deter"][:, 0]
    assert not torch.allclose(a, b)
    # ... unless that step starts an episode
    batch["is_first"][:, 1] = True
    batch2["is_first"][:, 1] = True
    torch.manual_seed(1)
    a = loss(batch)["deter"][:, 0]
    torch.manual_seed(1)
    b = loss(batch2)["deter"][:, 0]
    torch.testing.assert_close(a, b)


def test_world_model_loss_set_keys(replay_batch, tiny_world_model):
    loss = WorldModelLoss(tiny_world_model())
    loss.set_keys(reward="ext_reward")
    batch = replay_batch()
    batch.rename_key_("reward", "ext_reward")
    assert torch.isfinite(loss(batch)["loss_model_reward"])


def test_continue_target_scaled_by_discount(replay_batch, tiny_world_model):
    wm = tiny_world_model()
    loss = WorldModelLoss(wm, context=0)
    with torch.no_grad():
        wm.cont.net[-1].weight.zero_()
        wm.cont.net[-1].bias.fill_(math.log(332.0))  # sigmoid = 332/333 = target
    batch = replay_batch()
    out = loss(batch)
    p = 332 / 333
    expected = -(p * math.log(p) + (1 - p) * math.log(1 - p))  # BCE at its minimum = entropy
    assert float(out["loss_model_continue"].detach()) == pytest.approx(expected, rel=1e-4)


def imagined(N=4, H=3, feat=6, reward=1.0):
    return TensorDict({"feature": torch.randn(N, H + 1, feat), "reward": torch.full((N, H + 1), reward),
                       "continue": torch.ones(N, H + 1), "action": torch.eye(2)[torch.zeros(N, H + 1, dtype=torch.long)]},
                      [N, H + 1])


def test_actor_loss_defaults_and_returns():
    actor, critic = Actor(6, 2, True, units=8, layers=1), TwoHotHead(6, 8, 1)
    loss = ActorLoss(actor, critic)
    assert (loss.lmbda, loss.entropy_coef) == (0.95, 3e-4)
    norm = loss.return_norm
    assert isinstance(norm, PercentileValueNorm) and norm.quantiles == (0.05, 0.95) and norm.rate == 0.01 and norm.min_scale == 1.0
    td = imagined()
    out = loss(td)
    # zero critic, reward 1, continue 1, H = 3, gamma folded into continue:
    # G_2 = 1, G_1 = 1 + 0.95·1 = 1.95, G_0 = 1 + 0.95·1.95 = 2.8525 (bootstrap column: v_H = 0)
    torch.testing.assert_close(td["lambda_return"][0], torch.tensor([2.8525, 1.95, 1.0, 0.0]))
    # official (retnorm debias: False): the first EMA update from 0 at rate 0.01 keeps the scale at its floor 1
    assert float(out["return_scale"]) == 1.0
    assert float(out["advantage"]) == pytest.approx((2.8525 + 1.95 + 1.0) / 3)
    # with debiasing (the vector_small preset) the first scale is the batch's P95 − P5 = 2.8525 − 1.0
    debiased = ActorLoss(actor, critic, return_norm_debias=True)(imagined())
    assert float(debiased["return_scale"]) == pytest.approx(1.8525, rel=1e-5)
    assert set(p for p, _ in loss.named_parameters()) == set(f"actor.{n}" for n, _ in actor.named_parameters())


def test_debiased_return_norm_option():
    from torchrl_dreamerxp.objectives.actor import DebiasedPercentileNorm

    norm = DebiasedPercentileNorm(rate=0.01)
    batch = torch.linspace(0.0, 100.0, 101).unsqueeze(-1)  # P5 = 5, P95 = 95
    for _ in range(3):  # the same data again and again: the debiased scale stays at its spread
        norm.update(batch)
        torch.testing.assert_close(norm.scale(), torch.tensor([90.0]))
    # raw EMAs after 3 updates from 0: (1 − 0.99³)·(5, 95); correction 1 − 0.99³ = 0.029701
    torch.testing.assert_close(norm.correction, torch.tensor(0.029701))
    torch.testing.assert_close(norm.high - norm.low, torch.tensor([90.0 * 0.029701]))
    small = DebiasedPercentileNorm(rate=0.01)
    small.update(torch.full((10, 1), 3.0))  # spread 0: the floor of 1
    assert float(small.scale()) == 1.0
    assert "correction" in norm.state_dict()  # saved in checkpoints with the learner


def test_actor_loss_reinforce_raises_logp_of_rewarded_action():
    torch.manual_seed(0)
    actor, critic = Actor(6, 2, True, units=8, layers=1), TwoHotHead(6, 8, 1)
    td = imagined(reward=1.0)
    feat = td["feature"][:, :-1]
    before = actor.log_prob(feat, td["action"][:, :-1])[0].mean()
    opt = torch.optim.SGD(actor.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        ActorLoss(actor, critic)(td.clone())["loss_actor"].backward()
        opt.step()
    assert actor.log_prob(feat, td["action"][:, :-1])[0].mean() > before


def test_critic_loss_slow_target_and_replay():
    critic = TwoHotHead(6, 8, 1)
    loss = CriticLoss(critic)
    updater = SoftUpdate(loss, tau=0.02)  # created with the loss, before any forward (TorchRL's usage)
    assert (loss.lmbda, loss.slow_reg, loss.replay_scale) == (0.95, 1.0, 0.3)
    assert loss.gamma == pytest.approx(1 - 1 / 333)
    td = imagined()
    ActorLoss(Actor(6, 2, True, units=8, layers=1), critic)(td)
    replay = TensorDict({"feature": torch.randn(2, 5, 6), "reward": torch.ones(2, 5), "is_terminal": torch.zeros(2, 5, dtype=torch.bool),
                         "is_last": torch.zeros(2, 5, dtype=torch.bool), "bootstrap": torch.zeros(2, 5)}, [2, 5])
    out = loss(TensorDict({"imagined": td, "replay": replay}, []))
    assert out["value_error"].shape == (2, 4)
    # zero critic, reward 1, bootstrap 0: R_3 = 1 + γ·(0.05·0 + 0.95·0) = 1 -> |R - 0| = 1 at the last step
    torch.testing.assert_close(out["value_error"][:, -1], torch.ones(2))
    with torch.no_grad():
        critic.net[-1].bias.fill_(1.0)
    updater.step()
    torch.testing.assert_close(loss.target_critic_params["net", "2", "bias"], torch.full((255,), 0.02))


def test_replay_returns_bootstrap_from_the_imagined_returns():
    """Official repl_loss: lambda_return(last, term, rew, val, boot) uses boot (the imagined λ-return from each
    state) for the (1 − λ) part of every step; the critic's own value only enters the error δ."""
    critic = TwoHotHead(6, 8, 1)  # zero-initialised output: v = 0 everywhere
    loss = CriticLoss(critic)
    replay = TensorDict({"feature": torch.randn(1, 3, 6), "reward": torch.tensor([[0.0, 1.0, 2.0]]),
                         "is_terminal": torch.zeros(1, 3, dtype=torch.bool), "is_last": torch.zeros(1, 3, dtype=torch.bool),
                         "bootstrap": torch.tensor([[10.0, 20.0, 30.0]])}, [1, 3])
    g = 1 - 1 / 333
    r1 = 2 + g * (0.05 * 30 + 0.95 * 30)
    r0 = 1 + g * (0.05 * 20 + 0.95 * r1)
    torch.testing.assert_close(loss.replay_loss(replay)["value_error"], torch.tensor([[r0, r1]]))
    with torch.no_grad():  # a critic that predicts something else changes δ, not the targets
        critic.net[-1].bias.copy_(torch.linspace(-1, 1, 255) * 5)
        v = critic.predict(critic(replay["feature"]))[:, :-1]
    torch.testing.assert_close(loss.replay_loss(replay)["value_error"], (torch.tensor([[r0, r1]]) - v).abs())


def test_dreamerv3_optimizer_is_laprop_with_agc():
    # p = [3, 4] (norm 5), g = [30, 40] (norm 50): AGC scales g to norm 0.3·5 = 1.5 -> [0.9, 1.2];
    # RMS-normalised (bias-corrected) -> [1, 1]; momentum bias-corrected -> [1, 1]; lr·1 subtracted
    p = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = DreamerV3Optimizer([p], lr=0.5, warmup_steps=0)
    p.grad = torch.tensor([30.0, 40.0])
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([2.5, 3.5]))
    opt = DreamerV3Optimizer([p], lr=0.5, warmup_steps=4)
    p.grad = torch.tensor([30.0, 40.0])
    before = p.detach().clone()
    opt.step()  # warm-up starts at lr 0
    torch.testing.assert_close(p.detach(), before)


def test_learner_defaults_are_official(tiny_world_model):
    wm = tiny_world_model()
    learner = Learner(wm, Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1), TwoHotHead(wm.rssm.feature_dim(), 8, 1))
    groups = learner.optimizer.param_groups
    for g in groups:  # world model, actor, critic: one lr unless actor_lr/critic_lr say otherwise
        assert (g["lr"], g["agc"], g["eps"], g["warmup_steps"], g["beta1"], g["beta2"]) == (4e-5, 0.3, 1e-20, 1000, 0.9, 0.999)
    assert learner.imagination.horizon == 15
    assert learner.slow_critic.eps == pytest.approx(0.98)  # SoftUpdate(tau=0.02)
    n_params = sum(p.numel() for p in [*wm.parameters(), *learner.actor.parameters(), *learner.critic.parameters()])
    assert sum(p.numel() for g in groups for p in g["params"]) == n_params  # one optimizer over everything


def test_learner_actor_and_critic_learning_rates(tiny_world_model):
    wm = tiny_world_model()
    actor, critic = Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1), TwoHotHead(wm.rssm.feature_dim(), 8, 1)
    learner = Learner(wm, actor, critic, lr=3e-4, actor_lr=1e-4, critic_lr=2e-4)
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in learner.optimizer.param_groups}
    assert by_lr == {3e-4: {id(p) for p in wm.parameters()}, 1e-4: {id(p) for p in actor.parameters()},
                     2e-4: {id(p) for p in critic.parameters()}}


def test_learner_resumes_a_single_group_optimizer_state(replay_batch, tiny_world_model):
    # checkpoints written before actor_lr/critic_lr held one parameter group (world model, actor, critic in order)
    wm = tiny_world_model()
    learner = Learner(wm, Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1), TwoHotHead(wm.rssm.feature_dim(), 8, 1),
                      lr=1e-3, warmup=0)
    learner.update(replay_batch())
    state = learner.training_state_dict()
    flat = state["optimizer"]["param_groups"]
    old = {**state, "optimizer": {"state": state["optimizer"]["state"],
                                  "param_groups": [{**flat[0], "params": [i for g in flat for i in g["params"]]}]}}
    wm2 = tiny_world_model()
    fresh = Learner(wm2, Actor(wm2.rssm.feature_dim(), 2, True, units=8, layers=1), TwoHotHead(wm2.rssm.feature_dim(), 8, 1),
                    lr=1e-3, warmup=0)
    fresh.load_training_state_dict(old)
    assert [len(g["params"]) for g in fresh.optimizer.param_groups] == [len(g["params"]) for g in flat]
    assert [g["step"] for g in fresh.optimizer.param_groups] == [1, 1, 1]
    for p_old, p_new in zip([p for g in learner.optimizer.param_groups for p in g["params"]],
                            [p for g in fresh.optimizer.param_groups for p in g["params"]]):
        torch.testing.assert_close(fresh.optimizer.state[p_new]["rms"], learner.optimizer.state[p_old]["rms"])


def test_learner_reduces_world_model_loss_on_fixed_batch(replay_batch, tiny_world_model):
    torch.manual_seed(0)
    wm = tiny_world_model()
    learner = Learner(wm, Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1), TwoHotHead(wm.rssm.feature_dim(), 8, 1),
                      horizon=3, lr=3e-3, warmup=0)
    batch = replay_batch()
    first, _ = learner.update(batch)
    for _ in range(40):
        last, feedback = learner.update(batch)
    assert last["loss_model_reconstruction"] < 0.75 * first["loss_model_reconstruction"]
    assert all(math.isfinite(v) for v in last.values())
    # the replay feedback: [B, T] of the trained steps; the last step has no return target for δ
    assert feedback.shape == (2, 5) and feedback["recon_error"].shape == (2, 5)
    assert feedback["value_error"][:, :-1].isfinite().all() and feedback["value_error"][:, -1].isnan().all()


@pytest.mark.parametrize("discrete", [True, False])
def test_reused_actor_and_critic_outputs_change_neither_losses_nor_gradients(discrete, replay_batch, tiny_world_model):
    # the update reuses Imagination's actor distribution and ActorLoss's critic logits (speed); the plain
    # path, which runs the actor and the critic over the imagined batch again, must give the same numbers
    torch.manual_seed(0)
    wm = tiny_world_model()
    actor, critic = Actor(wm.rssm.feature_dim(), 2, discrete, units=8, layers=1), TwoHotHead(wm.rssm.feature_dim(), 8, 1)
    learner = Learner(wm, actor, critic, horizon=3)
    with torch.no_grad():  # a critic that is not zero at init, so its gradients mean something
        critic.net[-1].weight.normal_()
    batch = replay_batch()
    params = [p for g in learner.optimizer.param_groups for p in g["params"]]
    norm_state = {k: v.clone() for k, v in learner.actor_loss.return_norm.state_dict().items()}

    def losses_and_grads(plain: bool):
        torch.manual_seed(1)
        learner.actor_loss.return_norm.load_state_dict(norm_state)
        wm_out = learner.world_model_loss(batch)
        imagined = learner.imagination(wm_out["deter"].flatten(0, 1), wm_out["stoch"].flatten(0, 1))
        assert imagined["policy"].requires_grad
        if plain:
            imagined = imagined.exclude("policy")
        actor_out = learner.actor_loss(imagined)
        if plain:
            imagined = imagined.exclude("value_logits")
        critic_out = learner.critic_loss(TensorDict({"imagined": imagined}, []))
        loss = actor_out["loss_actor"] + critic_out["loss_critic"]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return actor_out["loss_actor"], critic_out["loss_critic"], [g for g in grads if g is not None]

    fast, plain = losses_and_grads(False), losses_and_grads(True)
    torch.testing.assert_close(fast[0], plain[0])
    torch.testing.assert_close(fast[1], plain[1])
    assert len(fast[2]) == len(plain[2]) > 0
    for a, b in zip(fast[2], plain[2]):
        torch.testing.assert_close(a, b)


def test_compiled_networks_change_neither_losses_nor_gradients(replay_batch, tiny_world_model):
    # compile=true (compile_networks: the RSSM steps and every MLP) is a speed option only: with inductor
    # drawing random numbers as eager does (fallback_random), a compiled update gives the eager losses and gradients
    from torchrl_dreamerxp.modules import MLP
    from torchrl_dreamerxp.training.agent import compile_networks

    import torch._inductor.config as inductor_config

    torch.manual_seed(0)
    wm = tiny_world_model()
    learner = Learner(wm, Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1),
                      TwoHotHead(wm.rssm.feature_dim(), 8, 1), horizon=3)
    batch = replay_batch()
    params = [p for g in learner.optimizer.param_groups for p in g["params"]]
    norm_state = {k: v.clone() for k, v in learner.actor_loss.return_norm.state_dict().items()}

    def losses_and_grads():
        torch.manual_seed(1)
        learner.actor_loss.return_norm.load_state_dict(norm_state)
        losses, _, _ = learner.losses(batch)
        total = sum(v for k, v in losses.items() if k.startswith("loss_"))
        return {k: v.detach() for k, v in losses.items()}, torch.autograd.grad(total, params, allow_unused=True)

    eager_losses, eager_grads = losses_and_grads()
    with inductor_config.patch(fallback_random=True):
        assert compile_networks(wm, learner.actor, learner.critic, dynamic=False) == 6
        compiled_losses, compiled_grads = losses_and_grads()
    mlps = [m for net in (wm, learner.actor, learner.critic) for m in net.modules() if isinstance(m, MLP)]
    assert len(mlps) == 6 and all(m._compiled_call_impl is not None for m in mlps)  # compiled in place
    assert sorted(compiled_losses) == sorted(eager_losses) and len(eager_losses) >= 5
    for key in eager_losses:
        torch.testing.assert_close(compiled_losses[key], eager_losses[key], rtol=1e-4, atol=1e-5, msg=key)
    for a, b in zip(compiled_grads, eager_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
