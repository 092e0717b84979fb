"""The batched transforms draw what torchvision's draw, image by image, and compute what its functions
compute, without a host sync."""
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms
from torchvision.transforms import functional as TF

from bench.dispatch import host_syncs
from train import batch_transforms as T
from train.augment import InstanceAugment, StrongAugment, colour_jitter, simclr_jitter
from train.colour_tf import ColourJitterTF
from train.colour_tf import adjust_saturation as tf_saturation

MEAN, STD = (0.286,) * 3, (0.353,) * 3


def quantiles(values, qs=(0.1, 0.25, 0.5, 0.75, 0.9)):
    return torch.quantile(torch.as_tensor(values, dtype=torch.float), torch.tensor(qs))


def ks_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest gap between the two samples' empirical distribution functions (Kolmogorov-Smirnov)."""
    points = torch.cat([a, b]).unique()
    cdf = [torch.searchsorted(x.sort().values.contiguous(), points, right=True) / len(x) for x in (a, b)]
    return float((cdf[0] - cdf[1]).abs().max())


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.2, 1.0)])
def test_crop_boxes_follow_torchvisions_distribution(scale):
    torch.manual_seed(0)
    height, width, ratio, n = 28, 28, (3 / 4, 4 / 3), 20000
    ours = T.resized_crop_boxes(n, height, width, scale, ratio, "cpu")
    left, top, w, h = ours.unbind(1)
    assert (left >= 0).all() and (top >= 0).all() and (left + w <= width).all() and (top + h <= height).all()
    image = torch.zeros(1, height, width)
    theirs = torch.tensor([transforms.RandomResizedCrop.get_params(image, scale, ratio) for _ in range(n)],
                          dtype=torch.float)  # (top, left, h, w)
    for mine, torchvisions in [(w * h / (height * width), theirs[:, 2] * theirs[:, 3] / (height * width)),
                               ((w / h).log(), (theirs[:, 3] / theirs[:, 2]).log()),
                               (left + w / 2, theirs[:, 1] + theirs[:, 3] / 2)]:
        assert ks_distance(mine, torchvisions) < 0.02  # two samples of 20000 from one law: below 0.0195 in 999 of 1000


def test_a_crop_box_that_never_fits_falls_back_to_torchvisions_centre_crop():
    image = torch.zeros(1, 10, 40)  # wider than 4:3, and no area fraction above 1 fits
    top, left, h, w = transforms.RandomResizedCrop.get_params(image, (1.5, 2.0), (3 / 4, 4 / 3))
    boxes = T.resized_crop_boxes(5, 10, 40, (1.5, 2.0), (3 / 4, 4 / 3), "cpu")
    assert boxes.tolist() == [[left, top, w, h]] * 5


def tf_crop_box(height: int, width: int, scale, ratio, rng, tries: int = 100, covered: float = 0.1):
    """TensorFlow's sample_distorted_bounding_box (GenerateRandomCrop, then the overlap check), one image at a
    time as the C++ kernel runs: the oracle for the batched sampler. (left, top, w, h)."""
    low, high = scale[0] * height * width, scale[1] * height * width
    for _ in range(tries):
        aspect = rng.uniform(*ratio)
        h, top_h = round(math.sqrt(low / aspect)), round(math.sqrt(high / aspect))
        if round(top_h * aspect) > width:
            top_h = int((width + 0.5 - 1e-7) / aspect)
            top_h -= round(top_h * aspect) > width
        top_h = min(top_h, height)
        h = min(h, top_h)
        h += rng.randint(0, top_h - h)
        w = round(h * aspect)
        if w * h < low:
            h += 1
            w = round(h * aspect)
        if w * h > high:
            h -= 1
            w = round(h * aspect)
        if low <= w * h <= high and 0 < w <= width and 0 < h <= height and w * h >= covered * height * width:
            return rng.randrange(max(width - w, 1)), rng.randrange(max(height - h, 1)), w, h
    return 0, 0, width, height


@pytest.mark.parametrize("height, width", [(28, 28), (224, 160)])
def test_tensorflow_crop_boxes_follow_the_kernels_distribution(height, width):
    import random

    torch.manual_seed(0)
    rng, scale, ratio, n = random.Random(0), (0.08, 1.0), (3 / 4, 4 / 3), 20000
    ours = T.distorted_crop_boxes(n, height, width, scale, ratio, "cpu")
    left, top, w, h = ours.unbind(1)
    assert (left >= 0).all() and (top >= 0).all() and (left + w <= width).all() and (top + h <= height).all()
    assert (w * h >= 0.1 * height * width).all()  # min_object_covered: nothing under a tenth of the image
    theirs = torch.tensor([tf_crop_box(height, width, scale, ratio, rng) for _ in range(n)], dtype=torch.float)
    for mine, kernels in [(w * h, theirs[:, 2] * theirs[:, 3]), (w / h, theirs[:, 2] / theirs[:, 3]),
                          (left, theirs[:, 0]), (top, theirs[:, 1])]:
        assert ks_distance(mine, kernels) < 0.02


def test_tensorflow_crops_draw_the_height_uniformly_so_small_crops_are_more_frequent_than_torchvisions():
    torch.manual_seed(0)
    n, side = 20000, 100
    tf_boxes = T.distorted_crop_boxes(n, side, side, (0.08, 1.0), (1.0, 1.0), "cpu")
    heights = tf_boxes[:, 3]
    # h uniform on round(sqrt(800)) = 28 .. 100, less the heights under a tenth of the image (h < 32)
    assert heights.min() == 32 and heights.max() == 100 and (tf_boxes[:, 2] == heights).all()
    assert heights.mean().item() == pytest.approx(66.0, abs=0.5)
    small = lambda boxes: (boxes[:, 2] * boxes[:, 3] < 0.3 * side * side).float().mean().item()  # noqa: E731
    assert small(tf_boxes) == pytest.approx(23 / 69, abs=0.015)  # h in 32 .. 54
    tv_boxes = T.resized_crop_boxes(n, side, side, (0.08, 1.0), (1.0, 1.0), "cpu")
    assert small(tv_boxes) == pytest.approx(0.22 / 0.92, abs=0.015)  # the area uniform on [0.08, 1]
    partial = tf_boxes[heights < side]  # TF's offsets: uniform in [0, side - h), never flush with the far edge
    assert (partial[:, 0] + partial[:, 2] < side).all() and (partial[:, 1] + partial[:, 3] < side).all()


def test_a_tensorflow_crop_that_never_covers_enough_is_the_whole_image():
    boxes = T.distorted_crop_boxes(4, 30, 20, (0.01, 0.05), (3 / 4, 4 / 3), "cpu")
    assert boxes.tolist() == [[0.0, 0.0, 20.0, 30.0]] * 4


def test_a_tensorflow_crop_of_an_image_file_is_resized_bicubically_to_the_views_size():
    from PIL import Image

    from train.augment import Crop
    torch.manual_seed(0)
    image = Image.fromarray(torch.randint(0, 256, (50, 70, 3), dtype=torch.uint8).numpy())
    crop = Crop(32, sampler="tensorflow")
    out = crop.on_cpu()(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    assert isinstance(crop.on_device(), T.RandomResizedCrop) and crop.on_device().boxes is T.distorted_crop_boxes


def test_resized_crop_equals_torchvisions_crop_then_resize():
    torch.manual_seed(0)
    images = torch.rand(3, 3, 28, 28)
    boxes = torch.tensor([[3.0, 5.0, 10.0, 7.0], [0.0, 0.0, 28.0, 28.0], [20.0, 1.0, 8.0, 27.0]])
    out = T.resized_crop(images, boxes, 32)
    for image, (left, top, w, h), got in zip(images, boxes.int().tolist(), out):
        assert torch.allclose(got, TF.resized_crop(image, top, left, h, w, [32, 32], antialias=False), atol=1e-5)


def test_flip_mirrors_about_half_of_the_images():
    torch.manual_seed(0)
    images = torch.rand(1000, 1, 2, 3)
    out = T.RandomHorizontalFlip()(images)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert ((out == images).flatten(1).all(1) | mirrored).all()
    assert 0.45 < mirrored.float().mean() < 0.55


@pytest.mark.parametrize("ours, theirs, low, high", [
    (T.adjust_brightness, TF.adjust_brightness, 0.2, 1.8),
    (T.adjust_contrast, TF.adjust_contrast, 0.2, 1.8),
    (T.adjust_saturation, TF.adjust_saturation, 0.2, 1.8),
    (T.adjust_hue, TF.adjust_hue, -0.5, 0.5),
])
def test_each_colour_step_computes_torchvisions_function_per_image(ours, theirs, low, high):
    torch.manual_seed(0)
    images = torch.rand(16, 3, 6, 5)
    images[0] = 0.5  # grey: no hue
    images[1, :, 0, 0] = torch.tensor([0.3, 0.3, 0.7])  # ties between channels
    factors = torch.empty(16).uniform_(low, high)
    expected = torch.stack([theirs(image, float(f)) for image, f in zip(images, factors)])
    assert torch.allclose(ours(images, factors), expected, atol=1e-5)


def test_colour_jitter_applies_with_p_and_keeps_the_others_exactly():
    torch.manual_seed(0)
    images = torch.rand(2000, 3, 4, 4)
    out = T.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)(images)
    untouched = (out == images).flatten(1).all(1).float().mean()
    assert 0.17 < untouched < 0.23 and out.min() >= 0 and out.max() <= 1


def test_colour_jitter_draws_each_images_factor_uniformly_in_its_range():
    torch.manual_seed(0)
    images = torch.full((4000, 3, 2, 2), 0.5)
    factors = T.ColorJitter(brightness=0.4, p=1.0)(images)[:, 0, 0, 0] / 0.5
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6
    assert torch.allclose(quantiles(factors), 0.6 + 0.8 * torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]), atol=0.03)


def test_grayscale_puts_torchvisions_luma_in_every_channel_with_p():
    torch.manual_seed(0)
    images = torch.rand(2000, 3, 3, 3)
    out = T.RandomGrayscale(p=0.2)(images)
    greyed = (out != images).flatten(1).any(1)
    assert 0.17 < greyed.float().mean() < 0.23
    assert torch.allclose(out[greyed], TF.rgb_to_grayscale(images[greyed], num_output_channels=3), atol=1e-6)
    assert torch.equal(out[~greyed], images[~greyed])


def test_blur_equals_torchvisions_gaussian_blur_and_leaves_undrawn_images_alone():
    torch.manual_seed(0)
    images = torch.rand(4, 3, 12, 12)
    sigma = 1.3
    out = T.RandomGaussianBlur(5, (sigma, sigma), p=1.0)(images)
    assert torch.allclose(out, TF.gaussian_blur(images, [5, 5], [sigma, sigma]), atol=1e-5)
    assert torch.allclose(T.RandomGaussianBlur(5, (0.1, 2.0), p=0.0)(images), images, atol=1e-7)


def test_blur_draws_each_images_sigma():
    torch.manual_seed(0)
    impulse = torch.zeros(500, 1, 9, 9)
    impulse[:, :, 4, 4] = 1
    centre = T.RandomGaussianBlur(9, (0.1, 2.0), p=1.0)(impulse)[:, 0, 4, 4]
    # the centre tap of a normalised 2-d Gaussian falls from 1 (sigma 0.1) to about 0.04 (sigma 2)
    assert centre.max() > 0.9 and centre.min() < 0.05 and len(centre.unique()) > 400


def test_tensorflows_blur_draws_one_sigma_per_batch_and_pads_with_zeros():
    """SimCLR's ``batch_random_blur``: sigma ~ U(0.1, 2) once for the batch, each image blurred with p, a
    separable convolution padded 'SAME' (zeros), written out here with the authors' filter."""
    blur = T.RandomGaussianBlur(5, (0.1, 2.0), p=1.0, per_batch_sigma=True, padding="zeros")
    images = torch.rand(6, 3, 12, 12)
    torch.manual_seed(3)
    out = blur(images)
    torch.manual_seed(3)
    sigma = torch.empty(1).uniform_(0.1, 2.0)
    x = torch.arange(-2, 3, dtype=torch.float32)
    taps = torch.exp(-x ** 2 / (2 * sigma ** 2))
    taps = (taps / taps.sum()).repeat(3, 1)
    expected = F.conv2d(F.conv2d(images, taps.view(3, 1, 1, 5), padding=(0, 2), groups=3),
                        taps.view(3, 1, 5, 1), padding=(2, 0), groups=3)
    assert torch.allclose(out, expected, atol=1e-6)
    ones = torch.ones(2, 3, 12, 12)
    zeros = T.RandomGaussianBlur(5, (1.5, 1.5), p=1.0, per_batch_sigma=True, padding="zeros")(ones)
    reflected = T.RandomGaussianBlur(5, (1.5, 1.5), p=1.0)(ones)
    assert zeros[..., 0, 0].max() < 0.9 and torch.allclose(zeros[..., 6, 6], ones[..., 6, 6])  # darker borders only
    assert torch.allclose(reflected, ones)
    with pytest.raises(ValueError, match="'reflect'.*'zeros'"):
        T.RandomGaussianBlur(5, padding="same")


def test_normalize():
    images = torch.rand(2, 3, 4, 4)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    assert torch.allclose(T.Normalize(mean, std)(images), TF.normalize(images, mean, std), atol=1e-6)


def test_log_uniform_aspect_stays_in_its_range():
    boxes = T.resized_crop_boxes(5000, 224, 224, (0.08, 1.0), (3 / 4, 4 / 3), "cpu")
    aspect = boxes[:, 2] / boxes[:, 3]
    # rounding to whole pixels moves the aspect by at most one pixel's worth on the smallest box (63 px)
    assert aspect.min() > 3 / 4 * (1 - 2 / 63) and aspect.max() < 4 / 3 * (1 + 2 / 63)
    assert math.isclose(float(aspect.log().mean()), 0.0, abs_tol=0.02)


def test_host_syncs_are_detected():
    assert host_syncs(lambda: torch.rand(8)[torch.rand(8) > 0.5]) == {"index"}


@pytest.mark.parametrize("views", [
    lambda: StrongAugment(32, MEAN, STD, scale=(0.2, 1.0), jitter=colour_jitter(0.4, 0.4, 0.4, 0.1), blur=0.5),
    lambda: StrongAugment(32, MEAN, STD, jitter=ColourJitterTF(*simclr_jitter(1.0)), blur=0.5, tensorflow=True),
    lambda: InstanceAugment(32, MEAN, STD),
])
def test_the_views_of_every_recipe_are_made_without_a_host_sync(views):
    views, images = views(), torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    assert host_syncs(lambda: views(images)) == set()
    assert views(images).shape == (16, 3, 32, 32)


@pytest.mark.parametrize("step", [T.adjust_brightness, T.adjust_contrast, T.adjust_saturation, T.adjust_hue,
                                  tf_saturation])
def test_a_grey_batch_is_jittered_as_its_three_equal_channels_would_be(step):
    torch.manual_seed(0)
    grey = torch.rand(8, 1, 5, 5)
    factors = torch.empty(8).uniform_(0.2, 0.45)  # a valid hue shift and a valid factor alike
    # up to torchvision's luma weights, which sum to 0.9999
    assert torch.allclose(step(grey, factors).expand(-1, 3, -1, -1), step(grey.expand(-1, 3, -1, -1), factors),
                          atol=2e-4)


def test_grey_views_come_out_as_three_equal_normalised_channels():
    views = StrongAugment(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), jitter=ColourJitterTF(*simclr_jitter(1.0)))
    out = views(torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8))
    assert out.shape == (16, 3, 32, 32) and torch.equal(out[:, 0], out[:, 2])


def test_the_crop_and_the_blur_stay_float32_under_an_autocast():
    """The engine runs the views inside its bf16 autocast: a grid from a matrix product, or a convolution,
    would drop to bf16 there and move the sampled pixels."""
    torch.manual_seed(0)
    images = torch.rand(4, 3, 28, 28)
    boxes = torch.tensor([[3.0, 5.0, 10.0, 7.0], [0.0, 0.0, 28.0, 28.0], [20.0, 1.0, 8.0, 27.0], [1.0, 2.0, 25.0, 19.0]])
    blur = T.RandomGaussianBlur(5, (1.3, 1.3), p=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cropped, blurred = T.resized_crop(images, boxes, 32), blur(images)
    assert cropped.dtype == blurred.dtype == torch.float32
    assert torch.allclose(cropped, T.resized_crop(images, boxes, 32), atol=1e-6)
    assert torch.allclose(blurred, TF.gaussian_blur(images, [5, 5], [1.3, 1.3]), atol=1e-5)


def test_each_image_draws_its_own_order_of_torchvisions_steps():
    """Brightness x1.5 then contrast x0.5 about a mid-grey mean differs from the reverse where brightness
    clips: with the same factors for every image, both results appear only if each image draws its order."""
    torch.manual_seed(0)
    image = torch.tensor([0.2, 0.8]).view(1, 1, 1, 2).expand(400, 1, 1, 2)
    steps = [(T.adjust_brightness, torch.full((400,), 1.5)), (T.adjust_contrast, torch.full((400,), 0.5))]
    rows = T.in_random_order(image, steps)[:, 0, 0]
    brightness_first = T.adjust_contrast(T.adjust_brightness(image[:1], steps[0][1][:1]), steps[1][1][:1])[0, 0, 0]
    contrast_first = T.adjust_brightness(T.adjust_contrast(image[:1], steps[1][1][:1]), steps[0][1][:1])[0, 0, 0]
    assert not torch.allclose(brightness_first, contrast_first)
    first = torch.isclose(rows, brightness_first).all(1)
    assert (first | torch.isclose(rows, contrast_first).all(1)).all()
    assert 0.4 < first.float().mean() < 0.6
