"""The reward ensemble of latent reward disagreement (XP extension 2): K one-step latent predictors."""
from __future__ import annotations

import torch
from torch import nn

from ..functional import symexp, symlog
from .heads import TwoHotHead
from .layers import init_linear_

__all__ = ["EnsembleMLP", "RewardEnsemble"]


class EnsembleMLP(nn.Module):
    """``members`` independent MLPs with stacked parameters, evaluated in one batched call.

    Each hidden layer is Linear → RMSNorm → SiLU (as every official DreamerV3 layer), with a weight
    ``[K, in, out]`` per layer: a shared input ``[N, in]`` goes through the first layer as one matmul
    against the ``[in, K·out]`` concatenation of the members' weights, later layers are one
    ``baddbmm`` over the member dimension. No Python loop over members.

    Examples:
        >>> mlp = EnsembleMLP(members=3, in_features=4, units=8, layers=2, out=2)
        >>> mlp(torch.randn(5, 4)).shape
        torch.Size([3, 5, 2])
    """

    def __init__(self, members: int, in_features: int, units: int, layers: int, out: int, outscale: float = 1.0):
        super().__init__()
        self.members = members
        sizes = [in_features] + [units] * layers + [out]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.norm_scales = nn.ParameterList()
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            weight = nn.Parameter(torch.empty(members, n_in, n_out))
            bias = nn.Parameter(torch.empty(members, 1, n_out))
            # every member draws its own weights: they differ by initialisation only
            init_linear_(weight, bias, n_in, outscale if i == layers else 1.0)
            self.weights.append(weight)
            self.biases.append(bias)
            if i < layers:
                self.norm_scales.append(nn.Parameter(torch.ones(members, 1, n_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, in]`` (shared by all members) or ``[K, N, in]`` → ``[K, N, out]``."""
        w0, b0 = self.weights[0], self.biases[0]
        if x.dim() == 2:
            k, n_in, n_out = w0.shape
            h = (x @ w0.permute(1, 0, 2).reshape(n_in, k * n_out)).reshape(-1, k, n_out).transpose(0, 1) + b0
        elif x.dim() == 3 and x.shape[0] == self.members:
            h = torch.baddbmm(b0, x, w0)
        else:
            raise ValueError(f"expected [N, in] or [{self.members}, N, in], got {tuple(x.shape)}")
        for i in range(1, len(self.weights)):
            # the norm in float32 with a float32 scale, as every RMSNorm here (modules.layers.RMSNorm)
            dtype = torch.promote_types(h.dtype, torch.float32)  # bf16 -> float32; float64 stays float64
            scale, hf = self.norm_scales[i - 1].to(dtype), h.to(dtype)
            hf = nn.functional.silu(hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + 1e-4) * scale)
            h = torch.baddbmm(self.biases[i], hf.to(h.dtype), self.weights[i])
        return h


class RewardEnsemble(nn.Module):
    """K reward predictors whose disagreement is the intrinsic reward (``docs/xp_extensions.md``).

    ``mode="latent"`` (default, the seed's design): member ``k`` is a one-step latent dynamics predictor
    ``(h_t, z_t, a_t) → ẑ_{k,t+1}`` over the ``stoch × classes`` categorical; its reward prediction is
    the world model's reward head on ``[h_{t+1}, mode(ẑ_{k,t+1})]`` (``h_{t+1}`` is deterministic given
    ``(h_t, z_t, a_t)``, so only the stochastic part can disagree). ``mode="reward"`` (cheaper): member
    ``k`` predicts ``symlog(r_{t+1})`` itself.

    The members share no parameters and differ by initialisation; they are trained by
    :class:`~torchrl_dreamerxp.objectives.RewardEnsembleLoss` on replayed posterior transitions with
    their own optimizer. The reward head is held by reference only: it is not among this module's
    parameters, and everything here runs on detached world model states, so no gradient reaches the
    world model.

    Cost: the reward head's first layer is split into its ``h`` and ``z`` columns so the ``h`` part is
    computed once for all members (``h`` is 80% of the features at ``size12m``), and the ``z`` part of a
    one-hot latent is a sum of ``stoch`` gathered columns rather than a product over ``stoch × classes``.

    Args:
        deter: RSSM deterministic state size.
        stoch: RSSM categorical latents.
        classes: classes per latent.
        action_dim: action vector size.
        members: K (5).
        units: member MLP width.
        layers: member MLP hidden layers.
        mode: ``"latent"`` or ``"reward"``.
        reward_head: the world model's reward head (latent mode).

    Examples:
        >>> from torchrl_dreamerxp.modules import TwoHotHead
        >>> head = TwoHotHead(16 + 4 * 4, units=8, layers=1)
        >>> ens = RewardEnsemble(16, 4, 4, action_dim=2, members=3, units=8, layers=1, reward_head=head)
        >>> preds = ens.reward_predictions(torch.zeros(6, 16), torch.zeros(6, 4, 4), torch.zeros(6, 2), torch.zeros(6, 16))
        >>> preds.shape
        torch.Size([3, 6])
    """

    def __init__(self, deter: int, stoch: int, classes: int, action_dim: int, *, members: int = 5, units: int = 256,
                 layers: int = 2, mode: str = "latent", reward_head: TwoHotHead | None = None):
        super().__init__()
        if members < 2:
            raise ValueError(f"a reward ensemble needs at least 2 members to disagree, got members={members}")
        if mode not in ("latent", "reward"):
            raise ValueError(f"mode must be 'latent' or 'reward', got {mode!r}")
        if mode == "latent" and reward_head is None:
            raise ValueError("mode='latent' scores predicted latents with the world model's reward head: pass reward_head")
        self.deter, self.stoch, self.classes, self.members, self.mode = deter, stoch, classes, members, mode
        out = stoch * classes if mode == "latent" else 1
        self.net = EnsembleMLP(members, deter + stoch * classes + action_dim, units, layers, out)
        # a reference, not a submodule: the ensemble's optimizer must never see the reward head
        object.__setattr__(self, "reward_head", reward_head)

    def forward(self, deter: torch.Tensor, stoch: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Raw member outputs ``[K, ..., out]``: next-latent logits ``[K, ..., S, C]`` or symlog reward ``[K, ...]``."""
        x = torch.cat([deter, stoch.flatten(-2), action], -1)
        out = self.net(x.reshape(-1, x.shape[-1])).reshape(self.members, *x.shape[:-1], -1)
        if self.mode == "latent":
            return out.unflatten(-1, (self.stoch, self.classes))
        return out.squeeze(-1)

    def compile_scoring(self, **compile_kwargs) -> "RewardEnsemble":
        """Compiles :meth:`reward_predictions` and the member MLP with ``torch.compile`` (optional; same math).

        The scoring of every imagined step (15,360 of them per ``size12m`` update) is mostly elementwise work
        on ``[K, N, units]`` activations (the members' RMSNorm and SiLU, the argmax of the predicted latents,
        the reward head's layers and two-hot decoding); inductor fuses it around the matrix products. The
        recipe's ``compile=true`` calls this; the measured gain is in ``docs/benchmarks.md``.

        Args:
            **compile_kwargs: passed to ``torch.compile`` (e.g. ``dynamic=False``, ``mode``).

        Examples:
            >>> head = TwoHotHead(16 + 4 * 4, units=8, layers=1)
            >>> ens = RewardEnsemble(16, 4, 4, action_dim=2, members=3, units=8, layers=1, reward_head=head)
            >>> ens.compile_scoring(dynamic=False) is ens
            True
        """
        self.reward_predictions = torch.compile(self.reward_predictions, **compile_kwargs)
        self.net.compile(**compile_kwargs)  # the training forward and backward
        return self

    @torch.no_grad()
    def reward_predictions(self, deter, stoch, action, next_deter) -> torch.Tensor:
        """``r̂_{k}`` ``[K, ...]`` of arriving after taking ``action`` in ``(deter, stoch)``."""
        out = self(deter, stoch, action)
        if self.mode == "reward":
            return symexp(out)
        head = self.reward_head
        first = head.net[0]
        d = self.deter
        # W·[h, z] + b = (W_h·h + b) + W_z·z: the h part once for all members
        shared = nn.functional.linear(next_deter, first.weight[:, :d], first.bias)
        # z = one-hot mode of ẑ, so W_z·z is the sum of one column of W_z per latent: gathered and summed
        # (an embedding bag), not a dense product with S·C inputs of which all but S are zero
        mode = out.argmax(-1)  # [K, ..., S]
        columns = (mode + torch.arange(self.stoch, device=mode.device) * self.classes).reshape(-1, self.stoch)
        picked = nn.functional.embedding_bag(columns, first.weight[:, d:].t().contiguous(), mode="sum")
        hidden = shared.unsqueeze(0) + picked.reshape(*mode.shape[:-1], -1).to(shared.dtype)
        for layer in list(head.net)[1:]:
            hidden = layer(hidden)
        return head.predict(hidden)

    def loss(self, deter, stoch, action, next_stoch, next_reward) -> torch.Tensor:
        """Per-transition loss ``[...]`` summed over members: CE of ``ẑ_{k}`` against the posterior
        sample ``next_stoch`` (latent mode) or squared error against ``symlog(next_reward)`` (reward mode)."""
        out = self(deter.detach(), stoch.detach(), action.detach())
        if self.mode == "latent":
            ce = -(next_stoch.detach().float() * torch.log_softmax(out.float(), -1)).sum((-1, -2))
            return ce.sum(0)
        return (out.float() - symlog(next_reward.detach().float())).pow(2).sum(0)
