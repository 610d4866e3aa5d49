"""LightningModules, one per autoencoder type, all behind one interface (encode, decode, loss,
reconstruct; the VAE adds sample).

A denoising autoencoder is an `Autoencoder` trained with noise.
"""

from aelab.models.aae import AAE
from aelab.models.ae import Autoencoder
from aelab.models.base import AutoencoderModule
from aelab.models.contractive import ContractiveAutoencoder
from aelab.models.dipvae import DIPVAE
from aelab.models.factorvae import FactorVAE
from aelab.models.gumbel import GumbelSoftmaxVAE
from aelab.models.infovae import InfoVAE
from aelab.models.iwae import IWAE
from aelab.models.rae import RAE
from aelab.models.sparse import SparseAutoencoder
from aelab.models.swae import SWAE
from aelab.models.tcvae import BetaTCVAE
from aelab.models.vae import VAE
from aelab.models.vaegan import VAEGAN
from aelab.models.vampprior import VampPriorVAE
from aelab.models.vqvae import VQVAE
from aelab.models.wae import WAE

__all__ = [
    "AAE",
    "BetaTCVAE",
    "DIPVAE",
    "FactorVAE",
    "GumbelSoftmaxVAE",
    "IWAE",
    "InfoVAE",
    "RAE",
    "SWAE",
    "WAE",
    "VAE",
    "VAEGAN",
    "VampPriorVAE",
    "VQVAE",
    "ContractiveAutoencoder",
    "SparseAutoencoder",
    "Autoencoder",
    "AutoencoderModule",
]
