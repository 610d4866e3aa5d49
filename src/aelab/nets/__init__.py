"""Encoder/decoder families. Each is a small factory: config holds its widths, a model asks it for
an encoder (images B x C x H x W in [0, 1] -> B x out_features) and a decoder (codes
B x latent_dim -> pixel logits B x C x H x W)."""

from aelab.nets.conv import ConvNet
from aelab.nets.mlp import MLPNet

__all__ = ["ConvNet", "MLPNet"]
