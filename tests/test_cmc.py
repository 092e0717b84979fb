"""CMC's mechanisms: the Lab and frequency views, the two banks each fed by its own encoder, the authors'
NCE numbers, and the two-stream export that timm and zoo load back."""
import copy
import itertools
import math

import pytest
import timm
import torch

import zoo
import zoo.checkpoint
from train.config import Config
from train.methods import cmc
from train.methods.base import Progress
from zoo import streams

MEAN, STD = (0.4, 0.45, 0.5), (0.2, 0.25, 0.3)
STEP = Progress(epoch=0, step=0, total_steps=10)
TINY = dict(channels=(8, 16, 32, 64), zero_init_last=False)  # a small resnet18, for speed


def tiny_cmc(views="lab", num_images=20, **method) -> cmc.CMC:
    torch.manual_seed(0)
    cfg = Config(arch="resnet18", model_args=TINY, image_size=16,
                 method=dict(views=views, dim=8, negatives=5, crop_scale=(0.5, 1.0), **method))
    return cmc.build(cfg, num_images, MEAN, STD)


def colour_images(n=4, size=16):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("rgb, lab", [
    ((1, 0, 0), (53.24, 80.09, 67.20)), ((0, 1, 0), (87.73, -86.18, 83.18)), ((0, 0, 1), (32.30, 79.19, -107.86)),
    ((1, 1, 1), (100.0, 0.0, 0.0)), ((0, 0, 0), (0.0, 0.0, 0.0)), ((128 / 255,) * 3, (53.59, 0.0, 0.0)),
])
def test_lab_of_known_colours_is_the_d65_reference(rgb, lab):
    found = streams.rgb_to_lab(torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1)).flatten()
    assert torch.allclose(found, torch.tensor(lab), atol=0.01), found


def test_lab_normalisation_maps_the_srgb_gamut_onto_the_authors_range():
    """train_CMC.py centres each channel on its range over sRGB (from rgb2lab) and scales by half of it: the
    corners of the RGB cube then span exactly [-1, 1] in a and b."""
    corners = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3))).view(-1, 3, 1, 1)
    l, ab = streams.lab_views(corners)
    assert l.shape[1] == 1 and ab.shape[1] == 2
    assert torch.allclose(l.min(), torch.tensor(-1.0)) and torch.allclose(l.max(), torch.tensor(1.0))
    assert torch.allclose(ab.amin(dim=(0, 2, 3)), -torch.ones(2), atol=1e-4)
    assert torch.allclose(ab.amax(dim=(0, 2, 3)), torch.ones(2), atol=1e-4)


def test_frequency_views_of_a_grey_image_sum_back_to_it():
    grey = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    low, high = streams.split_frequencies(grey)
    assert torch.allclose(low + high, grey, atol=1e-6)
    assert low.std() < grey.std() and high.mean().abs() < 0.05  # blurred, and what the blur took away
    low_view, high_view = streams.frequency_views(grey.expand(-1, 3, -1, -1))  # grey as RGB, as datasets give it
    assert torch.allclose((low_view + 1) / 2 + high_view / 2, grey, atol=1e-6)


def test_each_bank_is_written_only_by_its_own_views_encoder():
    """Perturb one encoder and replay the same step: its own bank's rows change, the other bank's do not."""
    model = tiny_cmc()
    start = copy.deepcopy(model.state_dict())
    index = torch.tensor([2, 5, 11, 17])

    def rows_after_step():
        torch.manual_seed(3)  # the same crops and negatives
        model(colour_images(), index, STEP)
        return [bank.memory[index].clone() for bank in model.banks]

    reference = rows_after_step()
    for perturbed, stream in enumerate(model.backbone.streams):
        model.load_state_dict(start)
        with torch.no_grad():
            stream.conv1.weight.add_(torch.randn_like(stream.conv1.weight))
        rows = rows_after_step()
        assert not torch.allclose(rows[perturbed], reference[perturbed])
        assert torch.equal(rows[1 - perturbed], reference[1 - perturbed])


def test_l_anchors_against_the_ab_bank_and_ab_against_the_l_bank():
    model, images = tiny_cmc(), colour_images()
    calls, contrast = [], model.contrast
    model.contrast = lambda anchor, bank, *rest: calls.append((anchor.detach(), bank)) or contrast(anchor, bank, *rest)
    torch.manual_seed(3)
    model(images, torch.arange(4), STEP)
    torch.manual_seed(3)  # the same crops, now embedded by hand
    with torch.no_grad():
        z = model.embed(model.augment(images))
    (l_anchor, l_against), (ab_anchor, ab_against) = calls
    assert l_against is model.banks[1] and torch.allclose(l_anchor, z[0], atol=1e-6)
    assert ab_against is model.banks[0] and torch.allclose(ab_anchor, z[1], atol=1e-6)


@pytest.mark.parametrize("views, loss", [("lab", "nce"), ("frequency", "nce"), ("lab", "softmax")])
def test_a_step_gives_a_finite_loss_and_gradients_in_both_encoders(views, loss):
    model = tiny_cmc(views, loss=loss)
    images = colour_images() if views == "lab" else colour_images()[:, :1]  # frequency views: grayscale data
    out = model(images, torch.tensor([0, 4, 9, 13]), STEP)
    out.loss.backward()
    assert math.isfinite(out.loss.item()) and set(out.logs) == {f"loss_{n}" for n in model.backbone.names}
    for stream, head in zip(model.backbone.streams, model.heads):
        assert stream.conv1.weight.grad.abs().sum() > 0 and head.weight.grad.abs().sum() > 0
    assert torch.isfinite(model.log_z).all() if loss == "nce" else not hasattr(model, "log_z")
    assert not any(bank.memory.requires_grad for bank in model.banks)


def test_nce_is_the_authors_ncecriterion_on_ncaverage_outputs():
    """NCEAverage: P = exp(v.z/T) / Z, Z = N * mean over the first batch; NCECriterion: -[log P_0 / (P_0 + m P_n
    + eps) + sum_k log m P_n / (P_k + m P_n + eps)] / B. Ours equals it up to their eps = 1e-7."""
    model = tiny_cmc(num_images=50)
    bank, n = model.banks[1], 50
    anchor = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    index, noise_rows = torch.tensor([1, 7, 20, 33]), bank.sample(6)
    ours = model.contrast(anchor, bank, index, noise_rows, direction=0)

    rows = torch.cat([index[:, None], noise_rows.expand(4, -1)], dim=1)
    out = torch.exp(torch.einsum("bkd,bd->bk", bank.memory[rows], anchor) / model.temperature)
    p = out / (out.mean() * n)
    m, p_n, eps = 6, 1 / n, 1e-7
    theirs = -((p[:, 0] / (p[:, 0] + m * p_n + eps)).log().sum()
               + (m * p_n / (p[:, 1:] + m * p_n + eps)).log().sum()) / 4
    assert torch.allclose(ours, theirs, rtol=1e-4)
    assert torch.allclose(model.log_z[0], (out.mean() * n).log())


def test_banks_start_as_the_authors_and_prefill_writes_the_initial_features():
    assert not tiny_cmc().wants_prefill  # the paper's random start
    model = tiny_cmc(bank_init="features")
    bound = math.sqrt(3 / 8)
    assert model.wants_prefill and all(bank.memory.abs().max() <= bound for bank in model.banks)
    images = torch.randn(20, 3, 16, 16)  # as the engine hands them: normalised RGB
    model.prefill([(images[:12], torch.arange(12)), (images[12:], torch.arange(12, 20))])
    with torch.no_grad():
        expected = [model.embed(model.backbone.split(model.backbone.unnormalize(part))) for part in images.split(12)]
    for view, bank in enumerate(model.banks):
        assert torch.allclose(bank.memory, torch.cat([e[view] for e in expected]), atol=1e-5)


def test_paper_streams_are_the_authors_resnet50v1_halves():
    """MyResNetsCMC('resnet50v1'): per view a ResNet-50 at width 0.5 with a 64-channel stem, 1024-d pooled features,
    12M parameters for both (the authors' README); their keys less the 128-d ``fc`` are ours under ``l.``/``ab.``."""
    exported = cmc.build(cmc.PRESETS["paper"].override(image_size=32), 10, MEAN, STD).export()
    shapes = {key: tuple(value.shape) for key, value in exported.state_dict().items()}
    assert shapes["l.conv1.weight"] == (64, 1, 7, 7) and shapes["ab.conv1.weight"] == (64, 2, 7, 7)
    assert shapes["l.layer1.0.conv1.weight"] == (32, 64, 1, 1)
    assert shapes["ab.layer1.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert shapes["l.layer4.2.conv3.weight"] == (1024, 256, 1, 1) and exported.num_features == 2048
    assert round(sum(p.numel() for p in exported.parameters()) / 1e6) == 12
    assert exported.pretrained_cfg["architecture"] == "cmc_resnet50"


def test_bad_views_and_unregistered_architectures_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="views must be one of lab, frequency"):
        tiny_cmc("depth")
    with pytest.raises(ValueError, match="no two-stream architecture is registered for 'vit_tiny"):
        cmc.build(Config(arch="vit_tiny_patch16_224", method=dict(views="lab")), 10, MEAN, STD)
    with pytest.raises(ValueError, match="in_chans=3"):
        timm.create_model("cmc_resnet18", in_chans=1)


def by_hand(model: streams.TwoStream, images: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation, make the views and run each stream, written out without TwoStream."""
    rgb = images * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    if model.names == ("l", "ab"):
        lab = streams.rgb_to_lab(rgb)
        lab = (lab - torch.tensor(streams.LAB_MEAN).view(1, 3, 1, 1)) / torch.tensor(streams.LAB_STD).view(1, 3, 1, 1)
        views = lab[:, :1], lab[:, 1:]
    else:
        low, high = streams.split_frequencies((rgb * torch.tensor(streams.LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True))
        views = 2 * low - 1, 2 * high
    first, second = (getattr(model, name) for name in model.names)
    return torch.cat([first(views[0]), second(views[1])], dim=1)


@pytest.mark.parametrize("views, architecture", [("lab", "cmc_resnet18"), ("frequency", "cmc_frequency_resnet18")])
def test_export_takes_normalised_rgb_and_round_trips_through_zoo_and_timm(tmp_path, views, architecture):
    exported = tiny_cmc(views).export().eval()
    images = (torch.rand(3, 3, 16, 16) - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        features = exported(images)
        assert features.shape == (3, exported.num_features)
        assert torch.allclose(features, by_hand(exported, images), atol=1e-5)
        assert torch.allclose(exported.forward_head(exported.forward_features(images), pre_logits=True), features)
    first, second = exported.names
    assert {key.split(".")[0] for key in exported.state_dict()} == {first, second}

    folder = tmp_path / "cmc"
    data_config = dict(input_size=(3, 16, 16), mean=MEAN, std=STD, crop_pct=1.0, interpolation="bilinear")
    zoo.checkpoint.save(exported, folder, data_config=data_config, card="# cmc\n", model_args=TINY)
    assert zoo.checkpoint.read_config(folder)["architecture"] == architecture
    for loaded in (zoo.load(str(folder)), timm.create_model(f"local-dir:{folder}", pretrained=True).eval()):
        assert loaded.names == exported.names
        with torch.no_grad():
            assert torch.allclose(loaded(images), features, atol=1e-5)
    tuned = zoo.load(str(folder), num_classes=10)
    assert tuned(images).shape == (3, 10)
