"""Building blocks shared by every network: initialised linear layers, MLPs, block-diagonal linear.

They follow the official DreamerV3 nets (``embodied/jax/nets.py``): every hidden layer is
Linear → RMSNorm → SiLU, weights use a fan-in truncated normal (``trunc_normal_in``) and output layers
take an ``outscale`` (0 gives the zero-initialised reward and critic outputs).
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["init_linear_", "make_linear", "MLP", "BlockLinear", "NormAct", "RMSNorm"]

# std of a standard normal truncated to [-2, 2]; dividing by it makes the truncated std equal to `scale`
_TRUNC_STD = 0.87962566103423978


def init_linear_(weight: torch.Tensor, bias: torch.Tensor | None, fan_in: int, outscale: float = 1.0) -> None:
    """Fan-in truncated-normal initialisation (``trunc_normal_in``) scaled by ``outscale``.

    Examples:
        >>> w, b = torch.empty(3, 4), torch.empty(3)
        >>> init_linear_(w, b, fan_in=4, outscale=0.0)
        >>> float(w.abs().sum()), float(b.abs().sum())
        (0.0, 0.0)
    """
    with torch.no_grad():
        if outscale == 0.0:
            weight.zero_()
        else:
            std = outscale * math.sqrt(1.0 / fan_in) / _TRUNC_STD
            nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)
        if bias is not None:
            bias.zero_()


def make_linear(in_features: int, out_features: int, outscale: float = 1.0) -> nn.Linear:
    """An ``nn.Linear`` initialised by :func:`init_linear_`.

    Examples:
        >>> make_linear(8, 2, outscale=0.0).weight.abs().sum()
        tensor(0., grad_fn=<SumBackward0>)
    """
    layer = nn.Linear(in_features, out_features)
    init_linear_(layer.weight, layer.bias, in_features, outscale)
    return layer


class RMSNorm(nn.RMSNorm):
    """``nn.RMSNorm`` that computes in float32 and returns the input's dtype, as the official norm does.

    A bfloat16 activation is normalized in float32 (mean square, float32 scale, product) and the result
    cast back to bfloat16 once. Rounding the scale to bfloat16 instead would shift every activation of a
    channel the same way in every update: an error that accumulates instead of averaging out
    (``benchmarks/precision_drift.py``). The bf16 learner keeps these scales float32 for that reason.

    Examples:
        >>> norm = RMSNorm(4, eps=1e-4)
        >>> norm(torch.ones(2, 4, dtype=torch.bfloat16)).dtype, norm.weight.dtype
        (torch.bfloat16, torch.float32)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)  # bf16 -> float32; float64 stays float64
        weight = self.weight.to(dtype) if self.weight is not None else None
        return nn.functional.rms_norm(x.to(dtype), self.normalized_shape, weight, self.eps).to(x.dtype)


class NormAct(nn.Sequential):
    """RMSNorm (eps 1e-4, learned scale) followed by SiLU, as every official hidden layer.

    Examples:
        >>> NormAct(4)(torch.ones(2, 4))
        tensor([[0.7310, 0.7310, 0.7310, 0.7310],
                [0.7310, 0.7310, 0.7310, 0.7310]], grad_fn=<SiluBackward0>)
    """

    def __init__(self, features: int):
        super().__init__(RMSNorm(features, eps=1e-4), nn.SiLU())


class MLP(nn.Sequential):
    """``layers`` × (Linear → RMSNorm → SiLU), then an optional output Linear with ``outscale``.

    Examples:
        >>> mlp = MLP(4, units=8, layers=2, out=3, outscale=0.0)
        >>> mlp(torch.ones(5, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(self, in_features: int, units: int, layers: int, out: int | None = None, outscale: float = 1.0):
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [make_linear(in_features if i == 0 else units, units), NormAct(units)]
        if out is not None:
            mods.append(make_linear(units if layers else in_features, out, outscale))
        super().__init__(*mods)


class BlockLinear(nn.Module):
    """Block-diagonal linear map: ``blocks`` independent Linear layers on equal slices of the input.

    The official block GRU uses it so the deterministic state of size ``deter`` costs
    ``deter²/blocks`` weights instead of ``deter²``.

    Examples:
        >>> layer = BlockLinear(8, 4, blocks=2)
        >>> layer(torch.ones(3, 8)).shape, tuple(layer.weight.shape)
        (torch.Size([3, 4]), (2, 4, 2))
    """

    def __init__(self, in_features: int, out_features: int, blocks: int, outscale: float = 1.0):
        super().__init__()
        if in_features % blocks or out_features % blocks:
            raise ValueError(f"features ({in_features}, {out_features}) must divide by blocks={blocks}")
        self.blocks = blocks
        self.weight = nn.Parameter(torch.empty(blocks, in_features // blocks, out_features // blocks))
        self.bias = nn.Parameter(torch.empty(out_features))
        # official compute_fans of a (blocks, in/blocks, out/blocks) kernel: fan-in = the whole input
        init_linear_(self.weight, self.bias, in_features, outscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, self.blocks, x.shape[-1] // self.blocks).transpose(0, 1)  # [G, N, i]
        bias = self.bias.view(self.blocks, 1, -1)  # added inside the matmul, not in a pass of its own
        y = torch.baddbmm(bias, x, self.weight).transpose(0, 1)  # [N, G, o]
        return y.reshape(*lead, -1)

    def forward_with_shared(self, x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """``forward`` of the input whose group ``g`` is ``[x_g, shared]``, without building that input.

        The block GRU feeds every group its own slice of ``h`` plus the same projected inputs. Built
        explicitly, that input copies ``shared`` once per group (tens of MB per imagined step at
        ``size12m``); split, the ``shared`` part is one dense matmul with the same weights.

        Examples:
            >>> layer = BlockLinear(2 * (1 + 3), 4, blocks=2)
            >>> x, shared = torch.randn(5, 2), torch.randn(5, 3)
            >>> full = torch.cat([x.reshape(5, 2, 1), shared.unsqueeze(1).expand(5, 2, 3)], -1).reshape(5, 8)
            >>> torch.allclose(layer.forward_with_shared(x, shared), layer(full), atol=1e-6)
            True
        """
        lead, g = x.shape[:-1], self.blocks
        ix = x.shape[-1] // g
        if ix + shared.shape[-1] != self.weight.shape[1]:
            raise ValueError(f"group input {ix} + shared {shared.shape[-1]} != {self.weight.shape[1]}")
        w_shared = self.weight[:, ix:].permute(1, 0, 2).reshape(shared.shape[-1], -1)  # [s, G*o]
        y_shared = torch.addmm(self.bias, shared.reshape(-1, shared.shape[-1]), w_shared)
        xg = x.reshape(-1, g, ix).transpose(0, 1)  # [G, N, ix]
        y_shared = y_shared.view(-1, g, self.weight.shape[-1]).transpose(0, 1)
        y = torch.baddbmm(y_shared, xg, self.weight[:, :ix]).transpose(0, 1)  # [N, G, o]
        return y.reshape(*lead, -1)
