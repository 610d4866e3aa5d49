"""Encoder/decoder families. Each is a small factory: config holds its widths, a model asks it for
an encoder (image -> features of a given size) and a decoder (latent -> pixel logits)."""

from aelab.nets.conv import ConvNet
from aelab.nets.mlp import MLPNet

__all__ = ["ConvNet", "MLPNet"]
