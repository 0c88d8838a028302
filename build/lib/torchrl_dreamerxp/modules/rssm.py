"""The recurrent state-space model of DreamerV3 (``dreamerv3/rssm.py``), written for PyTorch.

Why our own and not TorchRL's ``RSSMPriorV3``/``RSSMPosteriorV3``: those split prior and posterior
into two modules driven by TorchRL's rollout wrappers, and acting goes through a different path than
training. Here one :meth:`RSSM.obs_step` is the posterior step for both the policy and the world
model loss, and :meth:`RSSM.observe` runs it over a sequence with the prior logits computed in one
batched call afterwards (as the official code does), which saves half the kernels of the loop.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import BlockLinear, NormAct, make_linear

__all__ = ["RSSM", "sample_one_hot", "straight_through_sample", "categorical_kl"]


def unimix_probs(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """``(1 − unimix)·softmax(logits) + unimix / classes``: keeps every class reachable (float32, also
    for bfloat16 logits: the KL and the sampling read these probabilities)."""
    probs = torch.softmax(logits.float(), -1)
    if unimix:
        probs = (1.0 - unimix) * probs + unimix / probs.shape[-1]
    return probs


def sample_one_hot(probs: torch.Tensor) -> torch.Tensor:
    """One-hot samples of categoricals ``[..., classes]`` by inverse CDF (much faster than
    ``torch.multinomial`` for many small distributions on CPU).

    Examples:
        >>> sample_one_hot(torch.tensor([[0.0, 1.0, 0.0]]))
        tensor([[0., 1., 0.]])
    """
    with torch.no_grad():
        u = torch.rand(*probs.shape[:-1], 1, dtype=probs.dtype, device=probs.device)
        index = (probs.cumsum(-1) < u).sum(-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
        return torch.zeros_like(probs).scatter_(-1, index, 1.0)


def straight_through_sample(probs: torch.Tensor) -> torch.Tensor:
    """One-hot sample of a categorical whose gradient is that of ``probs`` (straight-through).

    Examples:
        >>> probs = torch.tensor([[0.0, 1.0]], requires_grad=True)
        >>> sample = straight_through_sample(probs)
        >>> sample.detach(), sample.requires_grad
        (tensor([[0., 1.]]), True)
    """
    return sample_one_hot(probs) + probs - probs.detach()


def categorical_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``KL(p‖q)`` of independent categoricals ``[..., stoch, classes]``, summed over stoch → ``[...]``.

    Examples:
        >>> p = torch.tensor([[[0.5, 0.5]]])
        >>> categorical_kl(p, p), categorical_kl(p, torch.tensor([[[0.25, 0.75]]])).round(decimals=4)
        (tensor([0.]), tensor([0.1438]))
    """
    return (p * (torch.log(p) - torch.log(q))).sum((-1, -2))


class RSSM(nn.Module):
    """DreamerV3 RSSM: block-GRU deterministic state ``h`` and categorical stochastic state ``z``.

    - core: ``h' = BlockGRU(h, z, a)``; inputs are projected by Linear → RMSNorm → SiLU, the GRU
      gates are block-diagonal (``blocks`` groups), update gate biased by −1 (official).
      Actions are divided by ``max(1, |a|)``.
    - prior ``p(z|h)``: ``imglayers`` hidden layers → logits ``[stoch, classes]``.
    - posterior ``q(z|h, e)``: ``obslayers`` hidden layers on ``[h, e]`` → logits.
    - both mix 1% uniform into the class probabilities and sample straight-through.
    - ``is_first`` resets ``h``, ``z`` and the previous action to zero before the step.

    Args:
        action_dim: size of the (one-hot or continuous) action vector.
        embed_dim: size of the encoder's output.
        deter: deterministic state size (official size presets in ``configs/model``).
        hidden: width of the input and prior/posterior layers.
        stoch: number of categorical latents.
        classes: classes per latent.
        blocks: groups of the block GRU.
        unimix: uniform mixture of the categorical (0.01).
        imglayers: hidden layers of the prior.
        obslayers: hidden layers of the posterior.
        dynlayers: hidden layers of the core.

    Examples:
        >>> rssm = RSSM(action_dim=2, embed_dim=8, deter=16, hidden=8, stoch=4, classes=4, blocks=4)
        >>> deter, stoch = rssm.initial(3)
        >>> is_first = torch.ones(3, dtype=torch.bool)
        >>> deter, stoch, logits = rssm.obs_step(deter, stoch, torch.zeros(3, 2), torch.randn(3, 8), is_first)
        >>> deter.shape, stoch.shape, logits.shape
        (torch.Size([3, 16]), torch.Size([3, 4, 4]), torch.Size([3, 4, 4]))
    """

    def __init__(
        self,
        action_dim: int,
        embed_dim: int,
        deter: int = 2048,
        hidden: int = 256,
        stoch: int = 32,
        classes: int = 16,
        blocks: int = 8,
        unimix: float = 0.01,
        imglayers: int = 2,
        obslayers: int = 1,
        dynlayers: int = 1,
    ):
        super().__init__()
        self.deter, self.stoch, self.classes, self.blocks = deter, stoch, classes, blocks
        self.unimix = unimix
        self.dyn_in = nn.ModuleList(
            [nn.Sequential(make_linear(n, hidden), NormAct(hidden)) for n in (deter, stoch * classes, action_dim)]
        )
        group_in = deter // blocks + 3 * hidden
        hid: list[nn.Module] = []
        for i in range(dynlayers):
            hid += [BlockLinear((group_in if i == 0 else deter // blocks) * blocks, deter, blocks), NormAct(deter)]
        self.dyn_hidden = nn.Sequential(*hid)
        self.dyn_gru = BlockLinear(deter if dynlayers else group_in * blocks, 3 * deter, blocks)
        self.prior_net = nn.Sequential(
            *[m for i in range(imglayers) for m in (make_linear(deter if i == 0 else hidden, hidden), NormAct(hidden))],
            make_linear(hidden if imglayers else deter, stoch * classes),
        )
        self.post_net = nn.Sequential(
            *[m for i in range(obslayers) for m in (make_linear(deter + embed_dim if i == 0 else hidden, hidden), NormAct(hidden))],
            make_linear(hidden if obslayers else deter + embed_dim, stoch * classes),
        )

    # -- state -------------------------------------------------------------------------------
    def initial(self, batch: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(deter [B, D], stoch [B, S, C])``, the state at the start of every episode (on the
        RSSM's device unless ``device`` says otherwise)."""
        if device is None:
            device = next(self.parameters()).device
        return (
            torch.zeros(batch, self.deter, device=device, dtype=dtype),
            torch.zeros(batch, self.stoch, self.classes, device=device, dtype=dtype),
        )

    def feature_dim(self) -> int:
        return self.deter + self.stoch * self.classes

    @staticmethod
    def features(deter: torch.Tensor, stoch: torch.Tensor) -> torch.Tensor:
        """The input of every head: ``[h, flatten(z)]``."""
        return torch.cat([deter, stoch.flatten(-2)], -1)

    # -- steps -------------------------------------------------------------------------------
    def core(self, deter: torch.Tensor, stoch: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Block GRU: next deterministic state from ``(h, z, a)``."""
        action = action / action.abs().clamp(min=1.0).detach()
        x = torch.cat([f(v) for f, v in zip(self.dyn_in, (deter, stoch.flatten(-2), action))], -1)
        g = self.blocks
        lead = deter.shape[:-1]
        # each group sees its own slice of h plus all the projected inputs (split, not copied per group)
        if len(self.dyn_hidden):
            x = self.dyn_hidden[1:](self.dyn_hidden[0].forward_with_shared(deter, x))
            gates = self.dyn_gru(x)
        else:
            gates = self.dyn_gru.forward_with_shared(deter, x)
        gates = gates.reshape(*lead, g, 3, -1)
        reset, cand, update = (gates[..., i, :].reshape(*lead, -1) for i in range(3))
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * deter

    def prior_logits(self, deter: torch.Tensor) -> torch.Tensor:
        return self.prior_net(deter).unflatten(-1, (self.stoch, self.classes))

    def posterior_logits(self, deter: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
        return self.post_net(torch.cat([deter, embed], -1)).unflatten(-1, (self.stoch, self.classes))

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """A straight-through one-hot sample, in the logits' (compute) dtype."""
        return straight_through_sample(unimix_probs(logits, self.unimix)).to(logits.dtype)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the steps compute in: that of the weights (bfloat16 when the learner casts them)."""
        return self.dyn_gru.weight.dtype

    def obs_step(self, deter, stoch, prev_action, embed, is_first):
        """The posterior step, shared by acting and training.

        Returns ``(deter, stoch, posterior_logits)`` after observing ``embed``; where ``is_first``
        the previous state and action are zeroed first.
        """
        keep = (~is_first.reshape(-1, *[1] * (deter.dim() - 1))).to(deter.dtype)
        deter, prev_action = deter * keep, prev_action * keep
        stoch = stoch * keep.unsqueeze(-1)
        deter = self.core(deter, stoch, prev_action)
        logits = self.posterior_logits(deter, embed)
        return deter, self.sample(logits), logits

    def img_step(self, deter, stoch, action):
        """The prior step used in imagination: ``(deter, stoch, prior_logits)`` after ``action``."""
        deter = self.core(deter, stoch, action)
        logits = self.prior_logits(deter)
        return deter, self.sample(logits), logits

    def compile_steps(self, **compile_kwargs) -> "RSSM":
        """Compiles :meth:`obs_step` and :meth:`img_step` with ``torch.compile`` (optional; same math).

        The two steps run 64 and 15 times per update on small tensors; compiling fuses their elementwise
        work (RMSNorm, SiLU, GRU gates, unimix, sampling); the measured gain is in ``docs/benchmarks.md``.
        Each new batch size (acting, training, imagination) compiles once.
        Compiled sampling draws its own random numbers (inductor's RNG), so a compiled run is not
        bit-identical to an eager one.

        Args:
            **compile_kwargs: passed to ``torch.compile`` (e.g. ``dynamic=False``, ``mode``).

        Examples:
            >>> rssm = RSSM(action_dim=2, embed_dim=3, deter=16, hidden=8, stoch=4, classes=4, blocks=4)
            >>> rssm.compile_steps(dynamic=False) is rssm
            True
        """
        self.obs_step = torch.compile(self.obs_step, **compile_kwargs)
        self.img_step = torch.compile(self.img_step, **compile_kwargs)
        return self

    def observe(self, embed, prev_action, is_first, deter, stoch):
        """Posterior states over a sequence ``[B, T]`` from a start state ``(deter, stoch)``.

        Returns ``deter [B,T,D]``, ``stoch [B,T,S,C]``, ``post_logits`` and ``prior_logits``.
        """
        deter, stoch = deter.to(self.compute_dtype), stoch.to(self.compute_dtype)  # replayed states are float32
        deters, stochs, logits = [], [], []
        for t in range(embed.shape[1]):
            deter, stoch, logit = self.obs_step(deter, stoch, prev_action[:, t], embed[:, t], is_first[:, t])
            deters.append(deter)
            stochs.append(stoch)
            logits.append(logit)
        deter = torch.stack(deters, 1)
        return deter, torch.stack(stochs, 1), torch.stack(logits, 1), self.prior_logits(deter)

    def kl_losses(self, post_logits, prior_logits, free_nats: float = 1.0):
        """Dynamics and representation KL per step, each clipped below at ``free_nats``.

        ``dyn = max(free, KL(sg(q)‖p))`` trains the prior, ``rep = max(free, KL(q‖sg(p)))`` the
        posterior; both with unimix applied to the probabilities, as the official ``rssm.loss``.
        """
        post = unimix_probs(post_logits, self.unimix)
        prior = unimix_probs(prior_logits, self.unimix)
        dyn = categorical_kl(post.detach(), prior)
        rep = categorical_kl(post, prior.detach())
        return dyn.clamp(min=free_nats), rep.clamp(min=free_nats), dyn.detach()
