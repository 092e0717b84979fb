"""SimCLR v1's colour distortion as the authors' TensorFlow code: additive brightness, contrast about each
channel's mean, clipping after every step, applied with p."""
import colorsys

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from train.augment import StrongAugment, colour_jitter
from train.batch_transforms import adjust_hue
from train.colour_tf import ColourJitterTF, adjust_saturation
from train.methods import simclr, simclrv2

MEAN, STD = (0.5,) * 3, (0.25,) * 3


def test_brightness_is_added_so_a_black_image_can_turn_grey_where_torchvisions_keeps_it_black():
    torch.manual_seed(0)
    black = torch.zeros(256, 3, 8, 8)
    out = ColourJitterTF(0.4, 0, 0, 0, p=1.0)(black)
    per_image = out.flatten(1)
    assert torch.equal(per_image.min(1).values, per_image.max(1).values)  # one delta per image, everywhere
    lifted = per_image[:, 0]
    assert 0.3 < lifted.max() <= 0.4 and (lifted == 0).float().mean() > 0.3  # U(-0.4, 0.4), clipped at 0
    assert torch.equal(colour_jitter(0.4, 0, 0, 0)(black), black)  # multiplicative: black stays black


def test_contrast_scales_each_channel_about_its_own_mean():
    torch.manual_seed(0)
    images = 0.4 + 0.2 * torch.rand(64, 3, 8, 8)  # far from 0 and 1: nothing clips at factors in [0.5, 1.5]
    out = ColourJitterTF(0, 0.5, 0, 0, p=1.0)(images)
    assert torch.allclose(out.mean(dim=(2, 3)), images.mean(dim=(2, 3)), atol=1e-6)
    centred_in, centred_out = images - images.mean((2, 3), keepdim=True), out - out.mean((2, 3), keepdim=True)
    factor = (centred_out.flatten(1) * centred_in.flatten(1)).sum(1) / centred_in.flatten(1).square().sum(1)
    assert torch.allclose(centred_out, factor.view(-1, 1, 1, 1) * centred_in, atol=1e-5)  # one factor per image
    assert factor.min() >= 0.5 - 1e-4 and factor.max() <= 1.5 + 1e-4 and factor.std() > 0.1


def test_the_distortion_applies_with_p_and_stays_in_the_unit_range():
    torch.manual_seed(0)
    images = torch.rand(2000, 3, 4, 4)
    out = ColourJitterTF(0.8, 0.8, 0.8, 0.2, p=0.8)(images)
    untouched = (out == images).flatten(1).all(1).float().mean()
    assert 0.17 < untouched < 0.23
    assert out.min() >= 0 and out.max() <= 1


def test_each_image_draws_its_own_order_of_the_steps():
    """Brightness then contrast clips differently from contrast then brightness: with the same factors for
    every image, both results appear in one batch only if each image draws its order."""
    torch.manual_seed(0)
    jitter = ColourJitterTF(0.5, 0.5, 0, 0, p=1.0)
    drawn = jitter.steps
    jitter.steps = lambda n, device, grey: [(step, torch.full((n,), fixed))  # delta 0.5, contrast factor 1.5
                                            for (step, _), fixed in zip(drawn(n, device, grey), (0.5, 1.5))]
    image = torch.tensor([0.2, 0.8]).view(1, 1, 1, 2).expand(256, 3, 1, 2)  # each channel's mean 0.5
    rows = jitter(image)[:, 0, 0]
    brightness_first = torch.tensor([0.625, 1.0])  # [0.7, 1.3] -> [0.7, 1] -> about 0.85: [0.625, 1.075] -> clip
    contrast_first = torch.tensor([0.55, 1.0])  # about 0.5: [0.05, 0.95] -> [0.55, 1.45] -> clip
    first = torch.isclose(rows, brightness_first).all(1)
    assert (first | torch.isclose(rows, contrast_first).all(1)).all()
    assert 0.3 < first.float().mean() < 0.7


def test_simclr_v2_multiplies_brightness_as_its_tensorflow_code_so_black_stays_black():
    torch.manual_seed(0)
    black, grey = torch.zeros(256, 3, 8, 8), torch.full((256, 3, 8, 8), 0.5)
    jitter = ColourJitterTF(0.4, 0, 0, 0, p=1.0, impl="simclrv2")
    assert torch.equal(jitter(black), black)
    factor = jitter(grey).flatten(1) / 0.5
    assert torch.equal(factor.min(1).values, factor.max(1).values)  # one factor per image, everywhere
    assert 0.6 <= factor.min() < 0.65 and 1.35 < factor.max() <= 1.4  # U(1 - 0.4, 1 + 0.4)
    with pytest.raises(ValueError, match="simclrv1, simclrv2"):
        ColourJitterTF(0.4, 0, 0, 0, impl="torchvision")


def test_v2_and_torchvision_distort_a_grey_image_alike():
    """On one channel saturation and hue do nothing and the channel's mean is the grey mean, so v2's steps, with
    the same factors in the same order, give torchvision's image (Fashion-MNIST's runs are unaffected by which)."""
    torch.manual_seed(0)
    images = torch.rand(64, 1, 8, 8)
    steps = ColourJitterTF(0.4, 0.4, 0.4, 0.1, impl="simclrv2").steps(64, images.device, grey=True)
    assert len(steps) == 2  # brightness and contrast only
    (brightness, b), (contrast, c) = steps
    ours = contrast(brightness(images, b).clamp(0, 1), c).clamp(0, 1)
    theirs = torch.stack([TF.adjust_contrast(TF.adjust_brightness(x, float(bi)), float(ci))
                          for x, bi, ci in zip(images, b, c)])
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_simclr_distorts_as_its_tensorflow_code_v1_adding_brightness_and_v2_multiplying_it():
    for module, impl in ((simclr, "simclrv1"), (simclrv2, "simclrv2")):
        views = module.build(module.PRESETS["smoke"], 16, MEAN, STD).augment.augment
        assert isinstance(views, StrongAugment) and isinstance(views.jitter, ColourJitterTF)
        assert views.jitter.impl == impl
        assert (views.jitter.brightness, views.jitter.hue) == (0.4, 0.1)  # strength 0.5: 0.8 s and 0.2 s


def test_saturation_and_hue_are_hsvs_as_tensorflow_computes_them():
    """Against Python's colorsys, pixel by pixel: s times the factor (clipped), h plus the shift (mod 1)."""
    torch.manual_seed(0)
    images = torch.rand(6, 3, 2, 2)
    factors, shifts = torch.empty(6).uniform_(0.2, 1.8), torch.empty(6).uniform_(-0.5, 0.5)
    saturated, rotated = adjust_saturation(images, factors), adjust_hue(images, shifts)
    for i in range(6):
        for y, x in [(0, 0), (0, 1), (1, 0), (1, 1)]:
            h, s, v = colorsys.rgb_to_hsv(*images[i, :, y, x].tolist())
            expected = colorsys.hsv_to_rgb(h, min(1.0, s * float(factors[i])), v)
            assert saturated[i, :, y, x].tolist() == pytest.approx(expected, abs=1e-5)
            expected = colorsys.hsv_to_rgb((h + float(shifts[i])) % 1.0, s, v)
            assert rotated[i, :, y, x].tolist() == pytest.approx(expected, abs=1e-5)
