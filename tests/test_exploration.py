"""vaelab.exploration: paths, attribute vectors, traversals, masks, inpainting (arrays, no CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import vaelab
from tests.conftest import tiny_config
from vaelab.config import ModelConfig
from vaelab.data import Split, load_data
from vaelab.errors import VaelabError
from vaelab.exploration import (
    arithmetic,
    attribute_vector,
    corrupt,
    encode_means,
    inpaint,
    interpolate,
    latent_path,
    make_mask,
    manifold,
    read_images,
    reconstruct,
    restoration_errors,
    select_inputs,
    top_dims,
    traversal_codes,
    traverse,
)
from vaelab.models import VAE, build_model
from vaelab.models.likelihoods import build_likelihood
from vaelab.runfolder import read_config


@pytest.fixture(scope="module")
def trained(digits_run: Path) -> tuple[VAE, Split, Split]:
    data = load_data(read_config(digits_run).data)
    return vaelab.load(digits_run), data.train, data.test


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_endpoints_are_the_reconstructions(trained, method: str) -> None:
    model, _, test = trained
    xa, xb = test.x[:3], test.x[3:6]
    paths = interpolate(model, xa, xb, steps=7, method=method)
    assert paths.shape == (3, 7, *model.x_shape)
    np.testing.assert_allclose(paths[:, 0], reconstruct(model, xa)[1], atol=1e-5)
    np.testing.assert_allclose(paths[:, -1], reconstruct(model, xb)[1], atol=1e-5)


def test_linear_path_is_a_straight_line() -> None:
    za, zb = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 4.0])
    z = latent_path(za, zb, 3, "linear")
    torch.testing.assert_close(z[1], (za + zb) / 2)
    with pytest.raises(VaelabError):
        latent_path(za, zb, 3, "cubic")


def test_traversal_changes_only_the_chosen_dimension(trained) -> None:
    z0 = torch.randn(6, generator=torch.Generator().manual_seed(0))
    dims, values = [4, 0, 2], [-2.0, 0.0, 1.5]
    z = traversal_codes(z0, dims, values)  # (K, V, D)
    for k, d in enumerate(dims):
        changed = (z[k] != z0).any(0)
        assert changed.nonzero().flatten().tolist() == [d]
        torch.testing.assert_close(z[k, :, d], z0[d] + torch.tensor(values))
    model = trained[0]
    images = traverse(model, [0, 1], [-1.0, 0.0, 1.0])
    assert images.shape == (2, 3, *model.x_shape)
    with pytest.raises(VaelabError, match="dimensions 0..3"):
        traverse(model, [7], [0.0])
    assert top_dims(np.array([0.1, 2.0, 0.5]), 2) == [1, 2]


class IdentityEncoder(nn.Module):
    """q(z|x) = N(x, I): a hand-built linear encoder, so codes are the inputs themselves."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        return x, torch.zeros_like(x)


def test_attribute_vector_recovers_a_known_latent_shift() -> None:
    gen = torch.Generator().manual_seed(0)
    shift = torch.tensor([2.0, -1.0, 0.0, 0.5, 0.0, 3.0])
    has = torch.rand(4000, generator=gen) < 0.3
    x = torch.randn(4000, 6, generator=gen) + has[:, None] * shift  # the attribute is a shift
    model = VAE(IdentityEncoder(), nn.Identity(), build_likelihood("gaussian", 1, 0.1), 6, [6])
    z = encode_means(model, Split(x))
    np.testing.assert_allclose(attribute_vector(z, has.numpy()), shift.numpy(), atol=0.12)
    with pytest.raises(VaelabError, match="with and without"):
        attribute_vector(z, np.ones(len(z), dtype=bool))


def test_arithmetic_at_scale_zero_is_the_reconstruction(trained) -> None:
    model, _, test = trained
    vector = np.ones(model.latent_dim, dtype=np.float32)
    out = arithmetic(model, test.x[:4], vector, [0.0, 1.0])
    assert out.shape == (4, 2, *model.x_shape)
    np.testing.assert_allclose(out[:, 0], reconstruct(model, test.x[:4])[1], atol=1e-5)
    assert not np.allclose(out[:, 0], out[:, 1])


@pytest.mark.parametrize("kind, hidden_share", [("left", 0.5), ("right", 0.5), ("top", 0.5),
                                                 ("bottom", 0.5), ("center", 0.25)])
def test_block_masks_hide_the_named_part(kind: str, hidden_share: float) -> None:
    observed = make_mask(kind, [1, 8, 8], 3)
    assert observed.shape == (3, 1, 8, 8) and observed.dtype == torch.bool
    assert (~observed).float().mean().item() == pytest.approx(hidden_share)
    corner = {"left": (0, 0), "right": (0, 7), "top": (0, 0), "bottom": (7, 0), "center": (4, 4)}
    assert not observed[0, 0][corner[kind]]


def test_random_mask_and_bad_masks() -> None:
    observed = make_mask("random:0.3", [1, 28, 28], 50, torch.Generator().manual_seed(0))
    assert (~observed).float().mean().item() == pytest.approx(0.3, abs=0.02)
    for bad in ["middle", "random:1.5", "random:x"]:
        with pytest.raises(VaelabError):
            make_mask(bad, [1, 8, 8], 1)


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> tuple[VAE, Split, Split]:
    """A model that has learned digits (the shared digits_run is too brief to beat a mean image):
    small batches and a larger step size, still only 3 epochs."""
    config = tiny_config(epochs=3, batch_size=16, lr=3e-3)
    config.model.hidden = [64]
    result = vaelab.train(config, tmp_path_factory.mktemp("runs") / "learned", device="cpu",
                          progress=False, figures=False)
    return result.model, result.data.train, result.data.test


def test_inpainting_keeps_observed_pixels_and_beats_the_mean_image(learned) -> None:
    model, train, test = learned
    observed = make_mask("center", model.x_shape, len(test))
    mean_image = train.x.mean(0)
    restored = inpaint(model, test.x, observed, init=mean_image)
    x = test.x.numpy()
    assert np.array_equal(restored[observed.numpy()], x[observed.numpy()])  # untouched
    err = restoration_errors(restored, x, ~observed.numpy(), mean_image.numpy())
    assert err["mse"] < err["baseline_mse"], err


def test_corrupt() -> None:
    x = torch.full((100, 1, 8, 8), 0.5)
    gen = torch.Generator().manual_seed(0)
    noisy = corrupt(x, "saltpepper:0.2", gen)
    changed = noisy != 0.5
    assert changed.float().mean().item() == pytest.approx(0.2, abs=0.02)
    assert set(noisy[changed].unique().tolist()) <= {0.0, 1.0}
    noisy = corrupt(x, "gaussian:2", gen)
    assert noisy.min() == 0 and noisy.max() == 1  # clipped to [0, 1]
    with pytest.raises(VaelabError, match="gaussian:S or saltpepper:P"):
        corrupt(x, "blur:1")


def test_manifold_covers_the_prior_quantiles() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=2, hidden=[8], x_shape=[1, 8, 8])).eval()
    images, grid = manifold(model, n=5)
    assert images.shape == (5, 5, 1, 8, 8)
    np.testing.assert_allclose(grid, -grid[::-1], atol=1e-6)  # symmetric quantiles
    top_left = model.decode(torch.tensor([[grid[0], grid[-1]]])).mean[0].detach().numpy()
    np.testing.assert_allclose(images[0, 0], top_left, atol=1e-6)  # top row: largest z[1]
    with pytest.raises(VaelabError, match="2-D latent"):
        manifold(build_model(ModelConfig(latent_dim=3, hidden=[8], x_shape=[1, 8, 8])))


def test_images_from_files_are_resized_and_indices_checked(tmp_path: Path, trained) -> None:
    path = tmp_path / "big.png"
    Image.fromarray((np.arange(256).reshape(16, 16)).astype(np.uint8), "L").convert("RGB").save(path)
    x = read_images([path], [1, 8, 8])
    assert x.shape == (1, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    test = trained[2]
    x, y = select_inputs(["0", str(path)], test, [1, 8, 8])
    assert x.shape == (2, 1, 8, 8) and y is None
    with pytest.raises(VaelabError, match="index out of range"):
        select_inputs([str(len(test))], test, [1, 8, 8])
    with pytest.raises(VaelabError, match="not images"):
        read_images([path], [5])
