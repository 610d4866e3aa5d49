"""On real MNIST: the feature network's test accuracy, a trained AE's FID against its untrained
self and the real-data floor, and a GMM sampler's spread of digits."""

import pytest
import torch

from aelab.metrics.features import FeatureExtractor, FeatureNetCache
from aelab.metrics.fid import frechet_distance
from aelab.samplers import GMMSampler, PriorSampler

pytestmark = [pytest.mark.slow, pytest.mark.mnist]
SMALL = {"_target_": "aelab.nets.MLPNet", "hidden": [256]}


def test_feature_net_fid_floor_and_gmm_spread(mnist_dir, tmp_path):
    from aelab.data.mnist import MNISTDataModule
    from aelab.models import Autoencoder

    torch.set_num_threads(1)
    dm = MNISTDataModule(data_dir=str(mnist_dir), download=False, on_device=False)
    dm.setup("fit")
    dm.setup("test")
    train_x, train_y = dm.split_tensors("train")
    test_x, test_y = dm.split_tensors("test")
    net, acc = FeatureNetCache(tmp_path, epochs=2).get(train_x, train_y, test=(test_x, test_y))
    assert acc >= 0.99
    feats = FeatureExtractor(net)
    real = feats(test_x[:2000])
    floor = frechet_distance(real, feats(train_x[:2000]))

    torch.manual_seed(0)
    ae = Autoencoder(latent_dim=8, net=SMALL)
    untrained = frechet_distance(real, feats(PriorSampler().sample(ae, 2000)))
    opt = torch.optim.Adam(ae.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for idx in torch.randperm(len(train_x), generator=g)[: 128 * 600].split(128):
        x = train_x[idx]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(ae.decode(ae.encode(x)), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ae.eval()
    sampler = GMMSampler(n_components=10).fit(ae, train_x[:10000])
    samples = sampler.sample(ae, 2000, torch.Generator().manual_seed(1))
    trained = frechet_distance(real, feats(samples))
    assert floor < trained < untrained
    classes = net(samples).argmax(1).bincount(minlength=10)
    assert int((classes > 0.03 * len(samples)).sum()) >= 8  # a spread, not one class
