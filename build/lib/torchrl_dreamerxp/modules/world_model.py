"""The DreamerV3 world model: encoder, RSSM, decoder, reward and continue heads in one module."""
from __future__ import annotations

from torch import nn

from .decoder import Decoder
from .encoder import Encoder
from .heads import ContinueHead, TwoHotHead
from .rssm import RSSM

__all__ = ["WorldModel"]


class WorldModel(nn.Module):
    """Holds the parts the world model loss trains; sizes follow an official preset.

    Args:
        obs_dim: size of ``"observation"`` (or ``None``); pixel_shape: ``(C, H, W)`` of ``"pixels"``
            (or ``None``); action_dim: size of the action vector.
        deter: RSSM deterministic state size.
        hidden: RSSM hidden width.
        stoch: RSSM categorical latents.
        classes: classes per latent.
        blocks: block GRU groups.
        units: MLP width.
        depth: CNN base width.
        enc_layers: MLP depth of the encoder (3 officially).
        dec_layers: MLP depth of the decoder (3 officially).
        reward_layers: hidden layers of the reward head (1 officially).
        cont_layers: hidden layers of the continue head (1 officially).

    Examples:
        >>> wm = WorldModel(obs_dim=4, action_dim=2, deter=64, hidden=16, classes=4, units=16, blocks=8)
        >>> wm.rssm.feature_dim()
        192
    """

    def __init__(
        self,
        action_dim: int,
        obs_dim: int | None = None,
        pixel_shape: tuple[int, int, int] | None = None,
        deter: int = 2048,
        hidden: int = 256,
        stoch: int = 32,
        classes: int = 16,
        blocks: int = 8,
        units: int = 256,
        depth: int = 16,
        enc_layers: int = 3,
        dec_layers: int = 3,
        reward_layers: int = 1,
        cont_layers: int = 1,
        unimix: float = 0.01,
        strided_cnn: bool = False,
    ):
        super().__init__()
        self.obs_keys = [k for k, v in (("observation", obs_dim), ("pixels", pixel_shape)) if v is not None]
        self.encoder = Encoder(obs_dim, pixel_shape, units, enc_layers, depth, strided=strided_cnn)
        self.rssm = RSSM(action_dim, self.encoder.out_dim, deter, hidden, stoch, classes, blocks, unimix)
        feat = self.rssm.feature_dim()
        self.decoder = Decoder(feat, obs_dim, pixel_shape, units, dec_layers, depth)
        self.reward = TwoHotHead(feat, units, reward_layers)
        self.cont = ContinueHead(feat, units, cont_layers)

    def encode(self, td):
        return self.encoder(**{k: td.get(k) for k in self.obs_keys})
