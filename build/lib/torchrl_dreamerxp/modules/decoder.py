"""Observation decoder: an MLP for ``"observation"`` (symlog MSE) and a CNN for ``"pixels"`` (MSE)."""
from __future__ import annotations

import torch
from torch import nn

from ..functional import symlog
from .encoder import ChannelRMSNorm, conv
from .layers import MLP, make_linear

__all__ = ["Decoder"]


class Decoder(nn.Module):
    """DreamerV3 decoder from the features ``[h, z]``.

    - observation: ``layers`` hidden layers → Linear, trained with a squared error in symlog space
      summed over features (official ``symlog_mse``).
    - pixels: Linear → ``4×4×(depth·mults[-1])``, then per stage nearest ×2 upsampling → 5×5 conv →
      RMSNorm → SiLU, the last stage to 3 channels, a sigmoid; squared error against ``pixels/255``
      summed over pixels. Deviation: the official decoder's first layer is block-structured
      (``bspace: 8``); ours is a plain Linear.

    :meth:`loss` returns the per-step reconstruction error ``[...]`` that XP's prioritized replay uses.

    Examples:
        >>> dec = Decoder(feat_dim=6, obs_dim=3, units=8, layers=1)
        >>> dec.loss(torch.zeros(2, 6), observation=torch.zeros(2, 3)).shape
        torch.Size([2])
    """

    def __init__(self, feat_dim, obs_dim=None, pixel_shape=None, units=256, layers=3, depth=16, mults=(2, 3, 4, 4), kernel=5):
        super().__init__()
        self.mlp = MLP(feat_dim, units, layers, out=obs_dim) if obs_dim is not None else None
        self.cnn = None
        if pixel_shape is not None:
            self.pixel_shape = tuple(pixel_shape)
            c_out, h, w = pixel_shape
            self.base = (depth * mults[-1], h // 2 ** len(mults), w // 2 ** len(mults))
            self.cnn_in = make_linear(feat_dim, self.base[0] * self.base[1] * self.base[2])
            self.cnn_in_norm = nn.Sequential(ChannelRMSNorm(self.base[0]), nn.SiLU())  # per position, over channels
            chans = [depth * m for m in reversed(mults)][1:] + [c_out]
            stages: list[nn.Module] = []
            c = self.base[0]
            for i, ch in enumerate(chans):
                stages += [nn.Upsample(scale_factor=2, mode="nearest"), conv(c, ch, kernel)]
                if i < len(chans) - 1:
                    stages += [ChannelRMSNorm(ch), nn.SiLU()]
                c = ch
            self.cnn = nn.Sequential(*stages).to(memory_format=torch.channels_last)  # as the encoder

    def forward(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predictions: ``"observation"`` in symlog space, ``"pixels"`` in (0, 1) (a sigmoid, as the official)."""
        out = {}
        if self.mlp is not None:
            out["observation"] = self.mlp(feat)
        if self.cnn is not None:
            lead = feat.shape[:-1]
            x = self.cnn_in(feat.reshape(-1, feat.shape[-1])).reshape(-1, *self.base)
            x = self.cnn_in_norm(x.contiguous(memory_format=torch.channels_last))
            out["pixels"] = torch.sigmoid(self.cnn(x)).reshape(*lead, *self.pixel_shape)
        return out

    def loss(self, feat: torch.Tensor, observation=None, pixels=None) -> torch.Tensor:
        """Per-step reconstruction error, summed over features and pixels → ``feat.shape[:-1]``."""
        pred = self(feat)
        err = torch.zeros(feat.shape[:-1], device=feat.device)
        if "observation" in pred:
            err = err + (pred["observation"].float() - symlog(observation)).pow(2).sum(-1)
        if "pixels" in pred:
            err = err + (pred["pixels"].float() - pixels.float() / 255.0).pow(2).sum((-1, -2, -3))
        return err
