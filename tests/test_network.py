"""The U-Net's shape options: any width a user can type, patches, narrow upsampling."""

from __future__ import annotations

import pytest
import torch

from dgmlab.lit.base import lr_factor
from dgmlab.nn import UNet
from dgmlab.nn.unet import num_groups


@pytest.mark.parametrize("base_channels", [8, 18, 40, 48, 52, 100])
@pytest.mark.parametrize("patch_size", [1, 2])
def test_every_width_builds_and_runs(base_channels, patch_size):
    """48 used to fail: 144 channels with 32 GroupNorm groups."""
    net = UNet(28, 1, base_channels, (1, 3), 1, (7,), patch_size=patch_size, narrow_upsample=patch_size == 2)
    out = net(torch.randn(2, 1, 28, 28), torch.tensor([3, 900]))
    assert out.shape == (2, 1, 28, 28) and torch.isfinite(out).all()


@pytest.mark.parametrize("channels", [1, 3, 8, 18, 64, 96, 144, 256, 1000])
def test_group_count_divides_the_width_and_stays_at_most_32(channels):
    groups = num_groups(channels)
    assert channels % groups == 0 and 1 <= groups <= 32


def test_group_count_is_the_most_that_divide():
    assert [num_groups(c) for c in (256, 144, 96, 18, 8, 3)] == [32, 24, 24, 3, 2, 1]


def test_patching_is_an_exact_fold_of_the_image():
    """patch_size=2 sees the image at 14x14 with 4 channels; each output pixel can still differ."""
    torch.manual_seed(0)
    net = UNet(28, 3, 16, (1, 2), 1, (), patch_size=2)
    assert net.stem.in_channels == 12 and net.head[-1].out_channels == 12
    out = net(torch.randn(1, 3, 28, 28), torch.tensor([10]))
    assert out.shape == (1, 3, 28, 28)
    assert not torch.allclose(out[..., 0::2, 0::2], out[..., 1::2, 1::2])
    with pytest.raises(ValueError, match="model.network.patch_size=3 must divide the image size 28"):
        UNet(28, 1, 16, patch_size=3)


def test_narrow_upsampling_has_fewer_parameters_and_the_same_interface():
    wide, narrow = UNet(28, 1, 32, (1, 2, 2)), UNet(28, 1, 32, (1, 2, 2), narrow_upsample=True)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(narrow) < count(wide)
    assert narrow(torch.randn(2, 1, 28, 28), torch.tensor([1, 2])).shape == (2, 1, 28, 28)


def test_learning_rate_warms_up_then_follows_a_cosine_to_its_final_fraction():
    factors = [lr_factor(step, 10, 110, "cosine", 0.1) for step in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.55) and factors[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert all(lr_factor(step, 10, 110, "constant") == 1.0 for step in range(10, 200))
