import pytest
import torch

from medreg.networks import AffineNet, FCNet, UNet


def test_fcnet_starts_at_identity_and_checks_shape():
    net = FCNet((28, 28))
    out = net(torch.rand(4, 2, 28, 28))
    assert out.shape == (4, 2, 28, 28) and torch.count_nonzero(out) == 0
    with pytest.raises(ValueError, match=r"expects inputs \(B, 2, 28, 28\)"):
        net(torch.rand(1, 2, 27, 28))


@pytest.mark.parametrize("dim,shape", [(2, (16, 24)), (3, (8, 16, 8))])
def test_unet_zero_output_and_shape(dim, shape):
    net = UNet(dim, 2, channels=(4, 8, 8, 8))
    out = net(torch.rand(2, 2, *shape))
    assert out.shape == (2, dim, *shape) and torch.count_nonzero(out) == 0
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.rand(1, 2, *[s + 2 for s in shape]))
    assert any(p.abs().sum() > 0 for p in net.parameters())


def test_affine_net_identity_offset():
    out = AffineNet(3, 2, channels=(4, 8))(torch.rand(2, 2, 8, 8, 8))
    assert out.shape == (2, 3, 4) and torch.count_nonzero(out) == 0
