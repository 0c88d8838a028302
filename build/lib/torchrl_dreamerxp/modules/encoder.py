"""Observation encoder: a CNN for ``"pixels"``, a symlog MLP for ``"observation"``, both when both exist."""
from __future__ import annotations

import torch
from torch import nn

from ..functional import symlog
from .layers import MLP, RMSNorm, init_linear_

__all__ = ["Encoder", "ChannelRMSNorm"]


class ChannelRMSNorm(nn.Module):
    """RMSNorm over the channels of an image ``[N, C, H, W]`` (the official conv norm).

    Examples:
        >>> ChannelRMSNorm(3)(torch.full((1, 3, 2, 2), 2.0)).detach().flatten()[:3]
        tensor([1.0000, 1.0000, 1.0000])
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = RMSNorm(channels, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(-3, -1)).movedim(-1, -3)


def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    layer = nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - stride + 1) // 2)  # halves exactly at stride 2
    init_linear_(layer.weight, layer.bias, cin * kernel * kernel)
    return layer


class Encoder(nn.Module):
    """DreamerV3 "simple" encoder.

    - pixels ``uint8 [..., 3, 64, 64]``: ``x/255 − 0.5``, then per stage a 5×5 conv (stride 1) →
      2×2 max-pool → RMSNorm → SiLU with ``depth·mults`` channels (official ``strided: False``),
      until 4×4, flattened.
    - observation ``float [..., D]``: ``symlog``, then ``layers`` × (Linear → RMSNorm → SiLU).

    Args:
        obs_dim: size of ``"observation"`` or ``None``.
        pixel_shape: ``(C, H, W)`` of ``"pixels"`` or ``None``.
        units: MLP width.
        layers: MLP hidden layers.
        depth: CNN base width.
        mults: CNN width multipliers per stage.
        kernel: CNN kernel size.
        strided: use stride-2 convs instead of conv + max-pool (faster on CPU; off by default).

    Examples:
        >>> enc = Encoder(obs_dim=4, units=8, layers=1)
        >>> enc(observation=torch.ones(2, 4)).shape
        torch.Size([2, 8])
    """

    def __init__(self, obs_dim=None, pixel_shape=None, units=256, layers=3, depth=16, mults=(2, 3, 4, 4), kernel=5, strided=False):
        super().__init__()
        if obs_dim is None and pixel_shape is None:
            raise ValueError("Encoder needs an 'observation' or a 'pixels' input")
        self.mlp = MLP(obs_dim, units, layers) if obs_dim is not None else None
        self.cnn = None
        self.out_dim = units if obs_dim is not None else 0
        if pixel_shape is not None:
            c, h, w = pixel_shape
            stages: list[nn.Module] = []
            for mult in mults:
                ch = depth * mult
                if strided:
                    stages += [conv(c, ch, 4, 2)]
                else:
                    stages += [conv(c, ch, kernel), nn.MaxPool2d(2)]
                stages += [ChannelRMSNorm(ch), nn.SiLU()]
                c, h, w = ch, h // 2, w // 2
            # channels-last: oneDNN's fast conv layout, and the channel RMSNorm then reads contiguous rows
            self.cnn = nn.Sequential(*stages, nn.Flatten(-3)).to(memory_format=torch.channels_last)
            self.out_dim += c * h * w

    def forward(self, observation: torch.Tensor | None = None, pixels: torch.Tensor | None = None) -> torch.Tensor:
        outs = []
        if self.cnn is not None:
            lead = pixels.shape[:-3]
            x = pixels.reshape(-1, *pixels.shape[-3:]).float() / 255.0 - 0.5
            x = x.contiguous(memory_format=torch.channels_last)
            outs.append(self.cnn(x).reshape(*lead, -1))
        if self.mlp is not None:
            outs.append(self.mlp(symlog(observation)))
        return outs[0] if len(outs) == 1 else torch.cat(outs, -1)
