"""The residual upsampling of instance optimisation equals F.interpolate (values and gradients)."""

import pytest
import torch
import torch.nn.functional as F

from medreg.registration.field_io import _Upsample


@pytest.mark.parametrize("small, size", [((5, 7, 9), (20, 28, 36)), ((4, 4, 4), (4, 9, 5)), ((3, 4), (10, 13))])
def test_matches_interpolate(small, size):
    torch.manual_seed(0)
    x = torch.randn(1, len(small), *small, requires_grad=True)
    weights = torch.rand(1, len(small), *size)
    mode = "trilinear" if len(small) == 3 else "bilinear"
    want = F.interpolate(x, size=size, mode=mode, align_corners=False)
    (want_grad,) = torch.autograd.grad((want * weights).sum(), x)
    got = _Upsample(small, size, x.device, x.dtype)(x)
    (got_grad,) = torch.autograd.grad((got * weights).sum(), x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-4)
