"""Which logged figures are headline metrics and which are flags: names only, importing nothing,
so that the report, TensorBoard's HParams columns and the training loop read one list."""

from __future__ import annotations

# the metrics summary.md shows (those some job has), with what they are; summary.csv has all;
# TensorBoard's HParams table has them as its metric columns after val/loss and test/loss
HEADLINE = {
    "test/recon_mse": "pixel-mean squared error of the reconstruction",
    "test/recon": "the loss's reconstruction term: squared error or Bernoulli NLL, per image",
    "test/psnr": "PSNR of the output against the clean image (dB)",
    "test/psnr_noisy_input": "PSNR of the corrupted input itself (dB)",
    "test/ssim": "structural similarity of the output against the clean image",
    "test/kl": "KL rate (nats)",
    "test/neg_elbo": "negative ELBO (nats)",
    "test/iw_nll": "importance-weighted -log p(x) (nats)",
    "test/active_units": "active latent units",
    "test/linear_probe_acc": "linear probe accuracy on the code",
    "test/knn_acc": "k-NN accuracy on the code",
    "test/auroc": "one-class AUROC",
}
# figures that say how a run was scored, not how well: an hparam, not a metric column
FLAGS = ("test/likelihood_on_binarized",)
