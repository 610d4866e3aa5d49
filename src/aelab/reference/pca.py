"""Principal components as the linear reference: squared reconstruction error per image."""

from __future__ import annotations

import torch
from torch import Tensor

from aelab.checks import check_int


def pca_sse_per_image(train: Tensor, test: Tensor, n_components: int) -> float:
    """Mean over `test` of the summed squared error of its reconstruction from the first
    `n_components` principal components of `train` (centred on the training mean), computed in
    float64: the figure Hinton & Salakhutdinov (2006, Fig. 2B) give for PCA.

    train, test: N x C x H x W (or N x D) images in [0, 1]. Returns the squared error per test
    image, summed over its pixels.

    Raises ConfigError when `n_components` is not in [1, min(N_train, D)].
    """
    x = train.flatten(1).double()
    t = test.flatten(1).double()
    check_int("n_components", n_components, 1, min(x.shape))
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    basis = vh[:n_components].T
    centred = t - mean
    recon = centred @ basis @ basis.T
    return float((recon - centred).square().sum(1).mean())
