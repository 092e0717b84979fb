"""CPC's mechanisms: the patch grid, the causal context, InfoNCE over the grid, and the exported patch model."""
from __future__ import annotations

import math

import pytest
import timm
import torch

import zoo
import zoo.checkpoint
from tests.conftest import FMNIST_DATA
from train.blocks.patches import PatchGrid, jitter_patches
from train.methods import cpc
from train.methods.base import Progress
from zoo.patches import PatchModel, cut_patches, grid_size

SMOKE = cpc.PRESETS["smoke"]
MEAN, STD = (0.286,) * 3, (0.353,) * 3


def smoke_cpc() -> cpc.CPC:
    torch.manual_seed(0)
    return cpc.build(SMOKE, 16, MEAN, STD)


@pytest.mark.parametrize("image, patch, stride, side", [(256, 64, 32, 7), (32, 8, 4, 7), (32, 16, 8, 3)])
def test_the_grid_covers_the_image_with_the_stated_overlap(image, patch, stride, side):
    images = torch.arange(2 * 3 * image * image, dtype=torch.float).view(2, 3, image, image)
    patches = cut_patches(images, patch, stride)
    assert grid_size(image, patch, stride) == side and patches.shape == (2, side, side, 3, patch, patch)
    for i in range(side):
        for j in range(side):
            window = images[..., i * stride:i * stride + patch, j * stride:j * stride + patch]
            assert torch.equal(patches[:, i, j], window)
    overlap = patch - stride  # neighbours share this many pixel columns (rows)
    assert torch.equal(patches[:, 0, 0, ..., stride:], patches[:, 0, 1, ..., :overlap])
    assert torch.equal(patches[:, 0, 0, ..., stride:, :], patches[:, 1, 0, ..., :overlap, :])
    covered = torch.zeros(image, image)
    for i in range(side):
        for j in range(side):
            covered[i * stride:i * stride + patch, j * stride:j * stride + patch] += 1
    assert covered.min() >= 1  # every pixel is in some patch


def test_a_grid_that_does_not_tile_the_image_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="does not cover a 32-px image exactly. Fix"):
        cut_patches(torch.zeros(1, 3, 32, 32), 8, 5)
    with pytest.raises(ValueError, match="Fix: set arch to 'cpc_resnet18'"):
        cpc.build(SMOKE.override(arch="resnet18", model_args={}), 16, MEAN, STD)
    with pytest.raises(ValueError, match="3-row grid can predict 1 to 2 rows ahead"):
        cpc.build(SMOKE.override(method=dict(steps=3)), 16, MEAN, STD)


def test_patch_jitter_is_a_sub_crop_of_each_patch_padded_back_to_its_size():
    torch.manual_seed(0)
    patches = torch.rand(2, 3, 3, 3, 8, 8) + 1  # no zeros inside, so the padding is visible
    jittered = jitter_patches(patches, 2)
    assert jittered.shape == patches.shape
    inner = jittered[..., 1:7, 1:7]
    assert (inner > 0).all() and jittered[..., 0, :].eq(0).all() and jittered[..., :, 0].eq(0).all()
    for source, out in zip(patches.flatten(0, 2), inner.flatten(0, 2)):
        crops = [source[:, y:y + 6, x:x + 6] for y in range(3) for x in range(3)]
        assert any(torch.equal(out, crop) for crop in crops)
    views = PatchGrid(32, 8, 4, MEAN, STD, jitter=1)(torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8))
    assert views.shape == (2, 7, 7, 3, 8, 8)


def test_the_context_at_row_r_never_sees_rows_below_r():
    model = smoke_cpc().train()  # train mode: the encoder's normalisation must not mix patches either
    patches = model.augment(torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8))
    rows = patches.shape[1]
    context = model.context(model.backbone.encode_patches(patches))
    for r in (0, rows // 2, rows - 1):
        changed = patches.clone()
        changed[1, r, 2] += torch.randn_like(changed[1, r, 2])
        after = model.context(model.backbone.encode_patches(changed))
        assert torch.equal(after[:, :, :r], context[:, :, :r]), f"a change in row {r} reached the rows above it"
        assert not torch.allclose(after[1, :, r], context[1, :, r])  # the test can fail: row r does see it
        if r + 1 < rows:
            assert not torch.allclose(after[1, :, r + 1], context[1, :, r + 1])
        assert torch.equal(after[[0, 2]], context[[0, 2]])  # nor does any other image see it


def test_info_nce_equals_the_loop_over_every_prediction_and_candidate():
    torch.manual_seed(0)
    b, dim, rows, cols = 2, 4, 3, 2
    z, context = torch.randn(b, dim, rows, cols), torch.randn(b, dim, rows, cols)
    predictors = torch.nn.ModuleList(torch.nn.Linear(dim, dim, bias=False) for _ in range(2))
    candidates = [(bb, i, j) for bb in range(b) for i in range(rows) for j in range(cols)]
    losses, hits = [], []
    for k, w in enumerate(predictors, start=1):
        for bb in range(b):
            for i in range(rows - k):
                for j in range(cols):
                    prediction = w.weight @ context[bb, :, i, j]
                    scores = torch.stack([prediction @ z[n, :, y, x] for n, y, x in candidates])
                    positive = candidates.index((bb, i + k, j))
                    losses.append(-(scores[positive] - torch.logsumexp(scores, 0)))
                    hits.append(float(scores.argmax() == positive))
    loss, accuracy = cpc.info_nce(context, z, predictors)
    assert torch.allclose(loss, torch.stack(losses).mean(), atol=1e-5)
    assert math.isclose(accuracy.item(), sum(hits) / len(hits), abs_tol=1e-6)


def test_one_step_gives_a_finite_loss_and_gradients_in_encoder_context_and_every_predictor():
    model = smoke_cpc()
    out = model(torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8), torch.arange(4), Progress(0, 0, 10))
    assert torch.isfinite(out.loss) and 0 <= out.logs["accuracy"].item() <= 1
    out.loss.backward()
    parts = {"encoder stem": model.backbone.encoder.stem.conv.weight,
             "context": model.context.blocks[0][2].weight,
             **{f"W_{k + 1}": w.weight for k, w in enumerate(model.predictors)}}
    for name, weight in parts.items():
        assert weight.grad is not None and weight.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert len(model.predictors) == SMOKE.method["steps"]


def test_export_is_the_mean_of_the_patch_encodings_and_round_trips_through_the_zoo(tmp_path):
    model = smoke_cpc().export().eval()
    assert isinstance(model, PatchModel) and model.num_classes == 0
    images, patch, stride = torch.randn(2, 3, 32, 32), model.patch_size, model.stride
    corners = range(0, 32 - patch + 1, stride)
    by_hand = torch.stack([model.encoder(images[..., i:i + patch, j:j + patch]) for i in corners for j in corners])
    by_hand = by_hand.mean(dim=0)
    with torch.no_grad():
        features = model(images)
        assert features.shape == (2, model.num_features)
        assert torch.allclose(features, by_hand.detach(), atol=1e-5)
        assert torch.allclose(model.forward_head(model.forward_features(images), pre_logits=True), features)
    folder = zoo.checkpoint.save(model, tmp_path / "cpc", data_config=FMNIST_DATA, card="# cpc\n",
                                 model_args=SMOKE.model_args)
    saved = zoo.checkpoint.read_config(folder)["model_args"]
    assert (saved["patch_size"], saved["stride"]) == (patch, stride) == (16, 8)
    for loaded in (zoo.load(str(folder)), timm.create_model(f"local-dir:{folder}", pretrained=True).eval()):
        with torch.no_grad():
            assert torch.equal(loaded(images), features)
    classifier = zoo.load(str(folder), num_classes=10)
    assert classifier(images).shape == (2, 10)


def test_the_paper_preset_is_v1s_grid_encoder_and_horizon():
    paper = cpc.PRESETS["paper"]
    assert grid_size(paper.image_size, paper.model_args["patch_size"], paper.model_args["stride"]) == 7
    encoder = timm.create_model(paper.arch, **paper.model_args)
    assert encoder.num_features == 1024 and len(encoder.encoder.stages) == 3  # ResNet-v2-101 to the third block
    assert paper.method["steps"] == 5 and paper.lr == 2e-4 and paper.batch_size == 512
