"""InvaSpread: the batch softmax loss against its formula, where its gradient goes, a training step, and the
CIFAR ResNet-18 it is trained with."""
import math
import os

import timm
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import zoo
import zoo.architectures  # registers resnet18_cifar with timm
import zoo.checkpoint
from conftest import two_processes
from train import batch_transforms
from train.blocks.losses import invariance_spreading_loss
from train.blocks.views import TwoViews
from train.methods.base import Progress, StepOutput
from train.methods.invaspread import PRESETS, Augment, InvaSpread, build

T = 0.1


def unit_rows(n, d=5, seed=0):
    torch.manual_seed(seed)
    return F.normalize(torch.randn(n, d, dtype=torch.float64), dim=1)


def authors_formula(features, temperature=T):
    """The loss of BatchAverage.py written out: every one of the 2B features an anchor, P over the others."""
    x = features.tolist()
    n = len(x)
    total = 0.0
    for i in range(n):
        positive = (i + n // 2) % n
        e = [math.exp(sum(a * b for a, b in zip(x[i], x[j])) / temperature) for j in range(n)]
        z = sum(e[j] for j in range(n) if j != i)
        total += math.log(e[positive] / z)
        for j in range(n):
            if j not in (i, positive):
                total += math.log(1 - e[j] / z)
    return -total / n


def test_loss_equals_the_authors_formula_computed_loop_by_loop():
    features = unit_rows(8)
    loss, p_positive = invariance_spreading_loss(features.float(), temperature=T)
    assert math.isclose(loss.item(), authors_formula(features), rel_tol=1e-5)
    # P(i'|x_i) of anchor 0: its other view is row 4 of the 8 (2 views of 4 images)
    e = (features[0] @ features.T / T).exp()
    assert torch.isclose(p_positive[0], (e[4] / (e.sum() - e[0])).float())


def test_loss_of_aligned_views_is_lower_than_of_unrelated_ones():
    images = unit_rows(4)
    aligned, _ = invariance_spreading_loss(torch.cat([images, images]).float())
    unrelated, _ = invariance_spreading_loss(unit_rows(8, seed=1).float())
    assert aligned < unrelated


def test_gradient_reaches_every_anchor_and_never_the_key_side():
    x = torch.randn(8, 5, requires_grad=True)
    features = F.normalize(x, dim=1)
    # as rank 1 of 2 under DDP: anchors are rows 4-7, the keys all 8 rows (rows 0-3 are another rank's)
    loss, _ = invariance_spreading_loss(features[4:], features, offset=4)
    loss.backward()
    assert torch.all(x.grad[:4] == 0)  # only keys: constants of the loss
    assert torch.all(x.grad[4:].abs().sum(dim=1) > 0)
    # with every feature an anchor, each gets gradient, and the same as with detached copies as keys
    anchors = unit_rows(8).float().requires_grad_()
    invariance_spreading_loss(anchors)[0].backward()
    assert torch.all(anchors.grad.abs().sum(dim=1) > 0)
    copy = anchors.detach().clone().requires_grad_()
    invariance_spreading_loss(copy, copy.detach().clone())[0].backward()
    assert torch.allclose(anchors.grad, copy.grad)


def test_ranks_losses_average_to_the_whole_batch_loss():
    # the global batch: 2 ranks x 2 images x 2 views; rank r holds [view 1 of its images; view 2 of them]
    view1, view2 = unit_rows(4).float(), unit_rows(4, seed=1).float()
    ranks = [torch.cat([view1[2 * r:2 * r + 2], view2[2 * r:2 * r + 2]]) for r in range(2)]
    gathered = torch.cat(ranks)
    per_rank = [invariance_spreading_loss(f, gathered, offset=4 * r)[0] for r, f in enumerate(ranks)]
    whole, _ = invariance_spreading_loss(torch.cat([view1, view2]))
    assert torch.isclose(sum(per_rank) / 2, whole, rtol=1e-5)


def test_odd_batch_is_refused_with_a_reason():
    try:
        invariance_spreading_loss(unit_rows(5).float())
    except ValueError as error:
        assert "two views" in str(error)
    else:
        raise AssertionError("an odd number of features passed")


def test_two_views_differ_and_keep_the_batch_order():
    images = torch.randint(0, 255, (3, 3, 16, 16), dtype=torch.uint8)
    two = TwoViews(Augment(16, (0.5,) * 3, (0.25,) * 3))
    views = two(images)
    assert views.shape == (6, 3, 16, 16)
    assert not torch.allclose(views[:3], views[3:])
    # image files: the CPU workers cut one crop per view, each gets the rest of the augmentation
    assert [crop.size for crop in two.crops] == [16, 16] and two.crops[0].scale == (0.2, 1.0)
    assert two([images, images]).shape == (6, 3, 16, 16)
    ops = [type(op) for op in Augment(16, (0.5,) * 3, (0.25,) * 3).ops]  # demo_seen.py's order
    bt = batch_transforms
    assert ops == [bt.RandomResizedCrop, bt.ColorJitter, bt.RandomGrayscale, bt.RandomHorizontalFlip, bt.Normalize]


def test_one_training_step_gives_a_finite_loss_and_backbone_gradients():
    torch.manual_seed(0)
    model = build(PRESETS["smoke"], 0, (0.5,) * 3, (0.25,) * 3)
    out = model(torch.randint(0, 255, (4, 1, 32, 32), dtype=torch.uint8), torch.arange(4), Progress(0, 0, 10))
    assert isinstance(out, StepOutput) and math.isfinite(out.loss.item())
    assert 0 < out.logs["p_positive"].item() < 1
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    assert model.export() is model.backbone


def test_method_embeds_in_128_unit_dimensions():
    backbone = timm.create_model("resnet18", num_classes=0)
    model = InvaSpread(backbone, Augment(32, (0.5,) * 3, (0.25,) * 3))
    f = model.embed(torch.randn(3, 3, 32, 32))
    assert f.shape == (3, 128) and torch.allclose(f.norm(dim=1), torch.ones(3))


class MirrorSecondView(torch.nn.Module):
    """A deterministic view maker: the first copy as it is, the second mirrored (so rank layouts can be compared)."""

    crops = []

    def forward(self, images):
        half = len(images) // 2
        return torch.cat([images[:half], images[half:].flip(-1)]).float() / 255


def tiny_invaspread():
    torch.manual_seed(0)  # the same weights in every process
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 12))
    backbone.num_features = 12
    return InvaSpread(backbone, MirrorSecondView(), dim=6)


def batch():
    return torch.randint(0, 255, (4, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def _step_on_rank(rank, port, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = tiny_invaspread()
        mine = slice(2 * rank, 2 * rank + 2)  # each rank holds 2 of the 4 images
        trainer = DistributedDataParallel(model)  # kept: its reducer averages the gradients in backward
        trainer(batch()[mine], torch.arange(4)[mine], Progress(0, 0, 1)).loss.backward()
        results[rank] = model.head.weight.grad.clone()  # DDP's mean over the ranks
    finally:
        torch.distributed.destroy_process_group()


def test_two_ddp_processes_train_as_one_process_on_the_whole_batch():
    """Under DDP each rank's anchors meet every rank's features: the gradient is the single-process one."""
    results = two_processes(_step_on_rank)
    grads = [results[0], results[1]]
    model = tiny_invaspread()
    model(batch(), torch.arange(4), Progress(0, 0, 1)).loss.backward()
    for grad in grads:
        assert torch.allclose(grad, model.head.weight.grad, atol=1e-6)


def test_cifar_resnet_keeps_32_px_through_the_stem_and_round_trips_through_the_zoo(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("resnet18_cifar", num_classes=0).eval()
    x = torch.randn(2, 3, 32, 32)
    stem = model.maxpool(model.act1(model.bn1(model.conv1(x))))
    assert stem.shape == (2, 64, 32, 32)  # what layer1 sees
    assert model.forward_features(x).shape == (2, 512, 4, 4)
    data = dict(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3, crop_pct=1.0, interpolation="bilinear")
    folder = zoo.checkpoint.save(model, tmp_path / "invaspread-resnet18_cifar", data_config=data, card="# test\n")
    loaded = zoo.load(str(folder))
    assert type(loaded).__name__ == "CifarResNet"
    assert torch.allclose(loaded(x), model(x))
    again = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert torch.allclose(again(x), model(x))
