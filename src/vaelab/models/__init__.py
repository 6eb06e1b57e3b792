"""Models: build a VAE from a ModelConfig."""

from __future__ import annotations

import math

from torch import nn

from vaelab.config import ModelConfig, model_defaults, need
from vaelab.errors import VaelabError
from vaelab.models.likelihoods import LIKELIHOODS, build_likelihood
from vaelab.models.m2 import M2, SemiOutput
from vaelab.models.mlp import MLPDecoder, MLPEncoder, mlp
from vaelab.models.vae import VAE, Output, one_hot, rsample

__all__ = ["LIKELIHOODS", "M2", "VAE", "Output", "SemiOutput", "build_model", "one_hot", "rsample"]


def build_model(config: ModelConfig) -> VAE:
    """The VAE a ModelConfig describes (config.x_shape must be set; unset settings take the
    generic defaults, vaelab.config.GENERIC_DEFAULTS)."""
    if not config.x_shape:
        raise ValueError("ModelConfig.x_shape is empty: set it from the data before building")
    config = model_defaults(config)
    x_shape = list(config.x_shape)
    latent_dim, hidden = need(config.latent_dim, "model.latent_dim"), need(config.hidden, "model.hidden")
    likelihood = build_likelihood(need(config.likelihood, "model.likelihood"), len(x_shape),
                                  need(config.obs_scale, "model.obs_scale"))
    encoder: nn.Module
    decoder: nn.Module
    if config.arch == "conv":
        if len(x_shape) != 3:
            raise VaelabError(f"model.arch conv needs images (C, H, W), but the data's shape is "
                              f"{x_shape}; use --arch mlp")
        from vaelab.models.conv import ConvDecoder, ConvEncoder

        encoder = ConvEncoder(x_shape, latent_dim, config.channels, hidden, config.activation,
                              config.cond_dim)
        decoder = ConvDecoder(x_shape, latent_dim, config.channels, hidden, config.activation,
                              likelihood.num_params, config.cond_dim)
    else:
        encoder = MLPEncoder(x_shape, latent_dim, hidden, config.activation, config.cond_dim)
        decoder = MLPDecoder(x_shape, latent_dim, hidden, config.activation,
                             likelihood.num_params, config.cond_dim)
    if config.family == "m2":
        if not config.cond_dim:
            raise VaelabError("model.family m2 needs model.cond_dim: the number of classes")
        # q(y|x): an MLP on the pixels with the encoder's hidden sizes, also for conv models
        classifier = nn.Sequential(nn.Flatten(),
                                   mlp([math.prod(x_shape), *hidden, config.cond_dim],
                                       config.activation))
        return M2(encoder, decoder, likelihood, latent_dim, x_shape, config.cond_dim, classifier)
    return VAE(encoder, decoder, likelihood, latent_dim, x_shape, config.cond_dim)
