"""The DreamerV3 networks: every faithful default of docs/dreamerv3.md is pinned here."""
import math

import pytest
import torch
from omegaconf import OmegaConf

from torchrl_dreamerxp.modules import RSSM, Actor, BlockLinear, ContinueHead, Decoder, Encoder, TwoHotHead
from torchrl_dreamerxp.modules.rssm import categorical_kl, straight_through_sample, unimix_probs
from torchrl_dreamerxp.training.agent import EnvShapes, build_networks


def small_rssm(**kw):
    return RSSM(action_dim=3, embed_dim=8, deter=16, hidden=8, stoch=4, classes=5, blocks=4, **kw)


def test_rssm_defaults_are_official():
    rssm = RSSM(action_dim=2, embed_dim=4)
    assert (rssm.deter, rssm.stoch, rssm.classes, rssm.blocks, rssm.unimix) == (2048, 32, 16, 8, 0.01)
    # block GRU: block-diagonal weights, RMSNorm + SiLU after every hidden layer
    assert isinstance(rssm.dyn_gru, BlockLinear) and rssm.dyn_gru.weight.shape[0] == 8
    norms = [m for m in rssm.modules() if isinstance(m, torch.nn.RMSNorm)]
    assert norms and all(n.eps == 1e-4 for n in norms)
    assert any(isinstance(m, torch.nn.SiLU) for m in rssm.modules())
    assert not any(isinstance(m, (torch.nn.GRUCell, torch.nn.GRU, torch.nn.ELU, torch.nn.LayerNorm)) for m in rssm.modules())


def test_block_gru_update_gate_bias_minus_one():
    # zero GRU weights: reset=0.5, cand=tanh(0)=0, update=sigmoid(0-1) -> h' = (1 - sigmoid(-1)) h
    rssm = small_rssm()
    with torch.no_grad():
        rssm.dyn_gru.weight.zero_()
        rssm.dyn_gru.bias.zero_()
    deter = torch.randn(2, 16)
    out = rssm.core(deter, torch.zeros(2, 4, 5), torch.zeros(2, 3))
    torch.testing.assert_close(out, (1 - 1 / (1 + math.e)) * deter)


def core_with_explicit_group_input(rssm, deter, stoch, action):
    """The block GRU as the official code writes it: each group's input ``[h_g, x]`` built by copying."""
    action = action / action.abs().clamp(min=1.0)
    x = torch.cat([f(v) for f, v in zip(rssm.dyn_in, (deter, stoch.flatten(-2), action))], -1)
    n, g = deter.shape[0], rssm.blocks
    x = torch.cat([deter.reshape(n, g, -1), x.unsqueeze(1).expand(n, g, x.shape[-1])], -1).reshape(n, -1)
    gates = rssm.dyn_gru(rssm.dyn_hidden(x)).reshape(n, g, 3, -1)
    reset, cand, update = (gates[:, :, i].reshape(n, -1) for i in range(3))
    update = torch.sigmoid(update - 1.0)
    return update * torch.tanh(torch.sigmoid(reset) * cand) + (1.0 - update) * deter


@pytest.mark.parametrize("dynlayers", [0, 1, 2])
def test_block_gru_split_input_matches_the_explicit_group_input(dynlayers):
    torch.manual_seed(0)
    rssm = small_rssm(dynlayers=dynlayers)
    deter, stoch, action = torch.randn(6, 16), torch.rand(6, 4, 5), 3 * torch.randn(6, 3)
    fast = rssm.core(deter, stoch, action)
    torch.testing.assert_close(fast, core_with_explicit_group_input(rssm, deter, stoch, action), atol=1e-5, rtol=1e-5)
    # the gradients agree too (the split path is what training differentiates)
    grads = [torch.autograd.grad(f.square().sum(), rssm.dyn_gru.weight)[0]
             for f in (rssm.core(deter, stoch, action), core_with_explicit_group_input(rssm, deter, stoch, action))]
    torch.testing.assert_close(*grads, atol=1e-5, rtol=1e-5)


def test_is_first_resets_state_and_action():
    torch.manual_seed(0)
    rssm = small_rssm()
    embed, is_first = torch.randn(2, 8), torch.tensor([True, False])
    deter, stoch, action = torch.randn(2, 16), torch.rand(2, 4, 5), torch.randn(2, 3)
    out_deter, _, logits = rssm.obs_step(deter, stoch, action, embed, is_first)
    zero_deter, _, zero_logits = rssm.obs_step(*rssm.initial(2), torch.zeros(2, 3), embed, torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(out_deter[0], zero_deter[0])
    torch.testing.assert_close(logits[0], zero_logits[0])
    assert not torch.allclose(out_deter[1], zero_deter[1])


def test_unimix_and_straight_through():
    logits = torch.tensor([[100.0, 0.0, 0.0, 0.0]], requires_grad=True)
    probs = unimix_probs(logits, 0.01)
    assert probs.min() >= 0.01 / 4 - 1e-7
    torch.testing.assert_close(probs.sum(-1), torch.ones(1))
    sample = straight_through_sample(probs)
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0} and sample.detach().sum() == 1
    (sample * torch.arange(4.0)).sum().backward()
    grad_st = logits.grad.clone()
    logits.grad = None
    (unimix_probs(logits, 0.01) * torch.arange(4.0)).sum().backward()
    torch.testing.assert_close(grad_st, logits.grad)


def test_kl_free_bits_and_split():
    rssm = small_rssm()
    logits = torch.randn(3, 4, 5)
    dyn, rep, kl = rssm.kl_losses(logits, logits.clone(), free_nats=1.0)
    torch.testing.assert_close(dyn, torch.ones(3))  # KL 0 -> clipped to free bits 1
    torch.testing.assert_close(kl, torch.zeros(3), atol=1e-6, rtol=0)
    post = torch.randn(3, 4, 5, requires_grad=True)
    prior = torch.randn(3, 4, 5, requires_grad=True)
    dyn, rep, _ = rssm.kl_losses(post, prior, free_nats=0.0)
    torch.testing.assert_close(dyn, rep)
    dyn.sum().backward(retain_graph=True)
    assert post.grad is None or post.grad.abs().sum() == 0  # dyn trains only the prior
    assert prior.grad.abs().sum() > 0
    # KL of known distributions: p=[1,0] (after unimix 0) vs q=[0.5,0.5] -> log 2
    p = torch.tensor([[[1.0, 0.0 + 1e-12]]])
    torch.testing.assert_close(categorical_kl(p, torch.full((1, 1, 2), 0.5)), torch.tensor([math.log(2)]), atol=1e-6, rtol=0)


def test_observe_matches_step_loop():
    torch.manual_seed(0)
    rssm = small_rssm()
    embed, action = torch.randn(2, 3, 8), torch.randn(2, 3, 3)
    is_first = torch.tensor([[True, False, False], [False, True, False]])
    torch.manual_seed(1)
    deter, stoch, post, prior = rssm.observe(embed, action, is_first, *rssm.initial(2))
    torch.manual_seed(1)
    d, s = rssm.initial(2)
    for t in range(3):
        d, s, p = rssm.obs_step(d, s, action[:, t], embed[:, t], is_first[:, t])
        torch.testing.assert_close(deter[:, t], d)
        torch.testing.assert_close(post[:, t], p)
    torch.testing.assert_close(prior, rssm.prior_logits(deter))


def test_reward_and_critic_outputs_zero_initialised_continue_not():
    head = TwoHotHead(10, units=8, layers=1)
    assert head.bins.shape == (255,)
    assert head.net[-1].weight.abs().sum() == 0
    assert (head.predict(head(torch.randn(4, 10))) == 0).all()
    assert ContinueHead(10, units=8).net[-1].weight.abs().sum() > 0


def test_actor_discrete_unimix_and_continuous_bounded_normal():
    torch.manual_seed(0)
    actor = Actor(6, 4, discrete=True, units=8, layers=1)
    with torch.no_grad():
        actor.net[-1].bias.copy_(torch.tensor([50.0, 0.0, 0.0, 0.0]))
    probs = actor.dist_params(torch.randn(5, 6))
    torch.testing.assert_close(probs[:, 1:], torch.full((5, 3), 0.0025), atol=1e-6, rtol=0)  # 1% unimix / 4 actions
    action, logp, ent = actor(torch.randn(5, 6))
    assert action.shape == (5, 4) and (action.sum(-1) == 1).all()

    cont = Actor(6, 2, discrete=False, units=8, layers=1)
    with torch.no_grad():
        cont.net[-1].bias.copy_(torch.tensor([10.0, -10.0, 100.0, -100.0]))
    mean, std = cont.dist_params(torch.zeros(3, 6)).chunk(2, -1)
    torch.testing.assert_close(mean[0], torch.tanh(torch.tensor([10.0, -10.0])), atol=1e-3, rtol=0)
    torch.testing.assert_close(std[0], torch.tensor([1.0, 0.1]), atol=1e-3, rtol=0)  # sigmoid(s+2) in [0.1, 1]


def test_actor_output_scale_small_at_init():
    actor = Actor(64, 6, discrete=True, units=64, layers=3)
    probs = actor.dist_params(torch.randn(100, 64))
    assert (probs - 1 / 6).abs().max() < 0.02  # outscale 0.01 -> nearly uniform


def test_encoder_decoder_shapes_and_losses():
    enc = Encoder(obs_dim=5, pixel_shape=(3, 64, 64), units=16, layers=2, depth=2)
    out = enc(observation=torch.randn(2, 7, 5), pixels=torch.randint(0, 255, (2, 7, 3, 64, 64), dtype=torch.uint8))
    assert out.shape == (2, 7, enc.out_dim) and enc.out_dim == 16 + 8 * 4 * 4
    dec = Decoder(feat_dim=12, obs_dim=5, pixel_shape=(3, 64, 64), units=16, layers=1, depth=2)
    feat = torch.randn(2, 7, 12)
    pred = dec(feat)
    assert pred["pixels"].shape == (2, 7, 3, 64, 64) and pred["observation"].shape == (2, 7, 5)
    obs = torch.randn(2, 7, 5)
    pixels = torch.randint(0, 255, (2, 7, 3, 64, 64), dtype=torch.uint8)
    expected = (pred["observation"] - torch.sign(obs) * torch.log1p(obs.abs())).pow(2).sum(-1) + (
        pred["pixels"] - pixels / 255.0
    ).pow(2).sum((-1, -2, -3))
    torch.testing.assert_close(dec.loss(feat, observation=obs, pixels=pixels), expected)


# official totals (danijar/dreamerv3 README: "size12m" etc.) for an Atari-like pixel agent
PRESET_PARAMS = {"size1m": 1e6, "size12m": 12e6, "size25m": 25e6, "size50m": 50e6, "size100m": 100e6, "size200m": 200e6}


@pytest.mark.parametrize("preset", sorted(PRESET_PARAMS))
def test_preset_parameter_counts(preset):
    cfg = OmegaConf.load(f"configs/model/{preset}.yaml")
    with torch.device("meta"):
        nets = build_networks(cfg, EnvShapes(obs_dim=None, pixel_shape=(3, 64, 64), action_dim=18, discrete=True))
    count = sum(p.numel() for net in nets for p in net.parameters())
    print(preset, count)
    assert 0.5 * PRESET_PARAMS[preset] < count < 1.6 * PRESET_PARAMS[preset], count


def test_strided_encoder_halves_exactly():
    enc = Encoder(pixel_shape=(3, 64, 64), depth=2, strided=True)
    x = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    assert enc(pixels=x).shape == (2, enc.out_dim) and enc.out_dim == 8 * 4 * 4


def test_block_linear_initialised_with_the_whole_input_as_fan_in():
    """Official compute_fans of a (blocks, in/blocks, out/blocks) kernel gives fan-in = in: std 1/√in."""
    torch.manual_seed(0)
    layer = BlockLinear(2048, 3 * 2048, blocks=8)
    assert float(layer.weight.std()) == pytest.approx(1 / 2048 ** 0.5, rel=0.02)


def test_image_decoder_predicts_through_a_sigmoid():
    torch.manual_seed(0)
    dec = Decoder(feat_dim=6, pixel_shape=(3, 64, 64), depth=2)
    pixels = dec(torch.randn(4, 6) * 100)["pixels"]
    assert pixels.shape == (4, 3, 64, 64) and float(pixels.min()) >= 0.0 and float(pixels.max()) <= 1.0


def test_block_linear_is_a_block_diagonal_linear():
    torch.manual_seed(0)
    layer = BlockLinear(6, 4, blocks=2)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(3, 5, 6)
    dense = torch.block_diag(*layer.weight)  # [6, 4]: block g maps input slice g to output slice g
    torch.testing.assert_close(layer(x), x @ dense + layer.bias)
