"""slerp paths (vaelab.exploration.latent_path): White's (2016) formula, its limits and norms.

The reference is White's formula evaluated independently in numpy float64 (arccos of the dot
product, as his code does); the norm checks use only the endpoints' norms.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaelab.exploration import latent_path


def white(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """slerp(t, a, b) as in White (2016): (T,) times, (D,) codes -> (T, D)."""
    omega = np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))
    so = np.sin(omega)
    return (np.sin((1 - t) * omega)[:, None] / so * a + np.sin(t * omega)[:, None] / so * b)


def pairs(seed: int, p: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scale_a = torch.rand(p, 1, generator=gen) * 3 + 0.1
    scale_b = torch.rand(p, 1, generator=gen) * 3 + 0.1
    return torch.randn(p, dim, generator=gen) * scale_a, torch.randn(p, dim, generator=gen) * scale_b


def unit_vectors(seed: int, p: int, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    z = torch.randn(p, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return z / z.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("dim", [2, 8, 64])
def test_slerp_is_whites_formula(dim: int) -> None:
    za, zb = pairs(dim, 16, dim)
    z = latent_path(za, zb, 13, "slerp")  # (16, 13, D)
    assert z.shape == (16, 13, dim)
    t = np.linspace(0, 1, 13)
    for a, b, path in zip(za.double().numpy(), zb.double().numpy(), z.numpy(), strict=True):
        np.testing.assert_allclose(path, white(t, a, b), rtol=1e-5, atol=1e-5 * np.linalg.norm(b))
    single = latent_path(za[0], zb[0], 13, "slerp")  # (D,) codes give (T, D)
    torch.testing.assert_close(single, z[0])


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_endpoints_are_exact(method: str) -> None:
    za, zb = pairs(0, 6, 10)
    zb[1] = -za[1]  # opposite
    zb[2] = 2 * za[2]  # parallel
    zb[3] = 0  # zero
    z = latent_path(za, zb, 7, method)
    assert torch.equal(z[:, 0], za) and torch.equal(z[:, -1], zb)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [2, 5, 512])
def test_equal_norms_keep_that_norm_at_every_step(dim: int, dtype: torch.dtype) -> None:
    ua, ub = unit_vectors(1, 8, dim, dtype), unit_vectors(2, 8, dim, dtype)
    ub[0] = -ua[0]  # exactly opposite
    if dtype == torch.float64:
        # Nearly opposite: White's formula divides by sin W, so it magnifies the endpoints' norm
        # difference 1 / sin W times; float32 codes of "equal" norms differ by ~1e-7.
        near = -ua[1] + 1e-6 * ub[1]
        ub[1] = near / near.norm()
    r = torch.linspace(0.5, 30, 8, dtype=dtype)[:, None]
    z = latent_path(r * ua, r * ub, 21, "slerp")  # (8, 21, D)
    assert torch.isfinite(z).all() and z.dtype == dtype
    rtol = 2e-6 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(z.norm(dim=-1), r.expand(8, 21), rtol=rtol, atol=0)


def test_opposite_codes_go_round_a_half_circle() -> None:
    za = torch.tensor([[3.0, -4.0, 0.0], [0.0, 0.0, 2.0], [1.0, 2.0, 2.0]])
    zb = -za * torch.tensor([[1.0], [1.0], [0.5]])  # the last pair: opposite, unequal norms
    z = latent_path(za, zb, 5, "slerp")  # (3, 5, 3)
    assert torch.isfinite(z).all()
    ra, rb = za.norm(dim=-1), zb.norm(dim=-1)
    t = torch.linspace(0, 1, 5)
    torch.testing.assert_close(z.norm(dim=-1), (1 - t) * ra[:, None] + t * rb[:, None])
    # the midpoint is perpendicular to both ends (a quarter of the way round), never 0
    torch.testing.assert_close((z[:, 2] * za).sum(-1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z[:, 2].norm(dim=-1), (ra + rb) / 2)
    # the path stays in one plane: the half circle through the midpoint's direction
    e = z[:, 2] / z[:, 2].norm(dim=-1, keepdim=True)
    ua = za / ra[:, None]
    angle = t * math.pi
    circle = torch.cos(angle)[None, :, None] * ua[:, None] + torch.sin(angle)[None, :, None] * e[:, None]
    torch.testing.assert_close(z, circle * z.norm(dim=-1, keepdim=True), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(latent_path(za, zb, 5, "slerp"), z, rtol=0, atol=0)  # deterministic


def test_zero_parallel_and_one_dimensional_codes_give_the_straight_line() -> None:
    za = torch.tensor([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0], [1.0, -1.0]])
    zb = torch.tensor([[3.0, 1.0], [0.0, 0.0], [0.0, 0.0], [3.0, -3.0]])  # the last: parallel
    t = torch.linspace(0, 1, 6)[:, None]
    straight = (1 - t) * za[:, None] + t * zb[:, None]
    torch.testing.assert_close(latent_path(za, zb, 6, "slerp"), straight)
    a, b = torch.tensor([2.0]), torch.tensor([-1.0])  # no circle in one dimension
    torch.testing.assert_close(latent_path(a, b, 4, "slerp"), latent_path(a, b, 4, "linear"))


@pytest.mark.parametrize("dim", [2, 3, 16])
def test_unequal_norms_stay_between_the_endpoints_up_to_90_degrees(dim: int) -> None:
    za, zb = pairs(10 + dim, 200, dim)
    zb = torch.where((za * zb).sum(-1, keepdim=True) < 0, -zb, zb)  # angle <= 90 degrees
    norms = latent_path(za, zb, 25, "slerp").norm(dim=-1)  # (200, 25)
    ra, rb = za.norm(dim=-1, keepdim=True), zb.norm(dim=-1, keepdim=True)
    assert (norms >= torch.minimum(ra, rb) * (1 - 1e-6)).all()
    assert (norms <= torch.maximum(ra, rb) * (1 + 1e-6)).all()


def test_wider_angles_can_leave_the_endpoints_norms() -> None:
    """The promise above is not kept past 90 degrees: White's formula swings out (and in)."""
    angle = math.radians(170)
    za, zb = torch.tensor([1.0, 0.0]), 0.5 * torch.tensor([math.cos(angle), math.sin(angle)])
    norms = latent_path(za, zb, 41, "slerp").norm(dim=-1)
    reference = np.linalg.norm(white(np.linspace(0, 1, 41), za.double().numpy(), zb.double().numpy()), axis=1)
    np.testing.assert_allclose(norms.numpy(), reference, rtol=1e-5)
    assert norms.max() > 1.5  # |za| = 1, |zb| = 0.5


@pytest.mark.parametrize("dim", [2, 8])
def test_the_direction_moves_steadily_from_za_to_zb(dim: int) -> None:
    """At any angle below 180 degrees the code's direction moves monotonically along the arc."""
    za, zb = pairs(20 + dim, 50, dim)
    z = latent_path(za, zb, 30, "slerp")

    def angle_to(v: torch.Tensor) -> torch.Tensor:  # (50, 30) angles of the path's codes to v
        cos = (z * v[:, None]).sum(-1) / z.norm(dim=-1) / v.norm(dim=-1, keepdim=True)
        return cos.double().clamp(-1, 1).arccos()

    assert (angle_to(za).diff(dim=1) >= -1e-3).all()
    assert (angle_to(zb).diff(dim=1) <= 1e-3).all()
    total = angle_to(za)[:, -1]
    torch.testing.assert_close(angle_to(za) + angle_to(zb), total[:, None].expand(50, 30),
                               atol=2e-3, rtol=0)  # on the arc between them
