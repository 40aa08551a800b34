import torch

from medreg.spatial import Affine, DisplacementField, folding_fraction, identity_grid, integrate_velocity, jacobian_determinant


def test_jacobian_of_identity_is_one():
    for shape in [(6, 7), (5, 6, 7)]:
        det = jacobian_determinant(identity_grid(shape, dtype=torch.float64))
        torch.testing.assert_close(det, torch.ones(1, *shape, dtype=torch.float64))


def test_jacobian_of_affine_is_its_determinant_in_voxel_units():
    shape = (8, 10, 12)
    # An affine in voxel space: y = M x. In normalized units channel c scales by 2/n_c.
    m_vox = torch.tensor([[1.2, 0.1, 0.0], [0.0, 0.9, 0.2], [0.1, 0.0, 1.1]], dtype=torch.float64)
    n = torch.tensor(shape, dtype=torch.float64)
    m_norm = m_vox * (n.view(1, 3) / n.view(3, 1))  # S^-1 M S with S = diag(n/2)
    mat = torch.cat([m_norm, torch.zeros(3, 1, dtype=torch.float64)], 1)
    coords = Affine(mat)(identity_grid(shape, dtype=torch.float64))
    det = jacobian_determinant(coords)
    torch.testing.assert_close(det, torch.full((1, *shape), float(torch.linalg.det(m_vox)), dtype=torch.float64))


def test_folding_zero_for_identity_positive_for_constructed_fold():
    shape = (16, 16)
    grid = identity_grid(shape, dtype=torch.float64)
    assert folding_fraction(jacobian_determinant(grid)).item() == 0.0
    disp = torch.zeros(1, 2, *shape, dtype=torch.float64)
    # reverse the order of rows 6..9 along axis 0: a fold
    disp[:, 0, 6:10] = (torch.tensor([3.0, 1.0, -1.0, -3.0]) * 2 / 16).view(4, 1)
    coords = DisplacementField(disp)(grid)
    assert folding_fraction(jacobian_determinant(coords)).item() > 0.05


def test_scaling_and_squaring_of_constant_velocity_is_translation():
    v = torch.zeros(1, 2, 12, 12, dtype=torch.float64)
    v[:, 1] = 0.1
    disp = integrate_velocity(v, steps=6)
    torch.testing.assert_close(disp, v)
