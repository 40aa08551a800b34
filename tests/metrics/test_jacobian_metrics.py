"""World-space Jacobian determinant, folding and SDlogJ against analytic answers."""

import numpy as np
import pytest

from medreg.metrics import folding_fraction, jacobian_determinant_mm, sdlogj

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _lps_grid(shape, affine):
    """World LPS coordinates (X, Y, Z, 3) of every voxel of a grid with a RAS affine."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    ras = idx @ affine[:3, :3].T + affine[:3, 3]
    return ras @ RAS_TO_LPS.T


def _affine_displacement(shape, affine, a_mat, b):
    """u(x) = (A - I) x + b in LPS mm, so phi(x) = A x + b."""
    x = _lps_grid(shape, affine)
    return x @ (a_mat - np.eye(3)).T + b


A_MAT = np.array([[1.1, 0.2, 0.05], [-0.1, 0.9, 0.3], [0.0, 0.15, 1.2]])  # non-symmetric


@pytest.mark.parametrize(
    "affine",
    [
        np.diag([1.0, 1.0, 1.0, 1.0]),
        # anisotropic spacing, RAS header
        np.array([[0.7, 0, 0, -80.0], [0, 1.3, 0, 20.0], [0, 0, 2.5, 5.0], [0, 0, 0, 1]]),
        # LPS-like header (BraTS-Reg style sform: x and y flipped) with anisotropic spacing
        np.array([[-0.9, 0, 0, 0.0], [0, -1.1, 0, 239.0], [0, 0, 2.0, 0.0], [0, 0, 0, 1]]),
        # oblique direction (rotation about z) with anisotropic spacing
        np.array(
            [
                [0.8 * np.cos(0.3), -1.2 * np.sin(0.3), 0, 10.0],
                [0.8 * np.sin(0.3), 1.2 * np.cos(0.3), 0, -4.0],
                [0, 0, 2.0, 1.0],
                [0, 0, 0, 1],
            ]
        ),
    ],
)
def test_jacobian_of_affine_displacement_is_det_a(affine):
    shape = (9, 7, 6)  # odd sizes, and more x-slices than one slab below
    u = _affine_displacement(shape, affine, A_MAT, np.array([1.0, -2.0, 3.0]))
    detj = jacobian_determinant_mm(u.astype(np.float64), affine, slab=4)
    assert detj.shape == shape
    np.testing.assert_allclose(detj, np.linalg.det(A_MAT), rtol=1e-9)


def test_jacobian_would_differ_if_lps_ras_were_mixed_up():
    """Guard: treating the LPS field as RAS (wrong frame) changes the answer for this A."""
    affine = np.array([[0.7, 0, 0, 0.0], [0, 1.3, 0, 0.0], [0, 0, 2.5, 0.0], [0, 0, 0, 1]])
    shape = (5, 5, 5)
    u = _affine_displacement(shape, affine, A_MAT, np.zeros(3))
    right = jacobian_determinant_mm(u, affine)
    wrong_affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # flips x, y only in the grid
    wrong = jacobian_determinant_mm(u, wrong_affine)
    assert right.mean() == pytest.approx(np.linalg.det(A_MAT))
    assert abs(wrong.mean() - np.linalg.det(A_MAT)) > 0.05


def test_identity_field_gives_det_one_no_folding_and_zero_sdlogj():
    affine = np.diag([0.7, 1.0, 2.5, 1.0])
    detj = jacobian_determinant_mm(np.zeros((8, 8, 8, 3), np.float32), affine)
    np.testing.assert_allclose(detj, 1.0)
    assert folding_fraction(detj) == 0.0
    assert sdlogj(detj) == 0.0
    assert sdlogj(detj, variant="plus3") == 0.0


def test_constructed_fold_is_detected():
    """phi_x(x) = x + u_x(x) with slope -1 in a slab: folded there, and only there."""
    shape = (12, 4, 4)
    u = np.zeros(shape + (3,))
    x = np.arange(12, dtype=float)
    ux = np.zeros(12)
    ux[4:8] = -2.0 * (x[4:8] - 4.0)  # d(phi_x)/dx = 1 - 2 = -1 inside
    ux[8:] = ux[7]
    u[..., 0] = ux[:, None, None]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS identity: world x_lps = index
    detj = jacobian_determinant_mm(u, affine)
    frac = folding_fraction(detj)
    assert 0.0 < frac < 1.0
    assert detj[5, 2, 2] == pytest.approx(-1.0)
    assert detj[1, 2, 2] == pytest.approx(1.0)
    inside = np.zeros(shape, bool)
    inside[:3] = True
    assert folding_fraction(detj, mask=inside) == 0.0
    # plain SDlogJ is inflated by the clipped folds; the +3 variant stays modest
    assert sdlogj(detj, crop=0) > 5.0
    assert 0.0 < sdlogj(detj, crop=0, variant="plus3") < 1.0


def test_sdlogj_crop_and_plus3_hand_computed():
    detj = np.ones((6, 6, 6))
    detj[0] = 100.0  # only in the border, cropped away
    assert sdlogj(detj, crop=2) == 0.0
    detj = np.ones((5, 5, 5))
    detj[2:, :, :] = np.e  # no crop: log values 0 (2 slices) and 1 (3 slices)
    expected = np.std(np.r_[np.zeros(50), np.ones(75)])
    assert sdlogj(detj, crop=0) == pytest.approx(expected)
    expected3 = np.std(np.log(np.r_[np.full(50, 4.0), np.full(75, np.e + 3)]))
    assert sdlogj(detj, crop=0, variant="plus3") == pytest.approx(expected3)
    with pytest.raises(ValueError):
        sdlogj(detj, variant="bogus")


def test_jacobian_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(X, Y, Z, 3\)"):
        jacobian_determinant_mm(np.zeros((4, 4, 4)), np.eye(4))
