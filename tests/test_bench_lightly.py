"""The lightly benchmark's own logic: its arithmetic, its report, and that lightly's side is built with our
numbers. Nothing is trained here; the tests that need lightly skip where it is not installed (CI)."""
import pytest
import torch

from bench import vs_lightly as bench
from train import batch_transforms as T
from train.augment import StrongAugment, simclr_jitter
from train.data import FMNIST_STATS

MEAN, STD = FMNIST_STATS["mean"], FMNIST_STATS["std"]


def test_the_ratio_is_of_the_medians_with_the_range_of_the_per_repeat_ratios():
    ours, theirs = [10.0, 12.0, 30.0], [10.0, 10.0, 12.0]
    assert bench.ratio(ours, theirs) == bench.Spread(1.2, 1.0, 2.5)
    assert bench.Spread.of(ours) == bench.Spread(12.0, 10.0, 30.0)
    assert str(bench.Spread.of([2.0, 1.0, 3.0])) == "2 (1-3)"
    with pytest.raises(ValueError, match="as many of each"):
        bench.ratio([1.0, 2.0], [1.0])


def test_the_goal_needs_the_throughput_and_an_equal_or_better_knn():
    fast = dict(name="simclr", ours=[12.0, 13.0], lightly=[10.0, 10.0])
    assert bench.Result(**fast).goal().startswith("undecided: 1.25x >= 1.2x")
    assert bench.Result(**fast, knn=dict(ours=[80.0], lightly=[80.0])).goal().startswith("met:")
    assert bench.Result(**fast, knn=dict(ours=[79.9], lightly=[80.0])).goal().startswith("not met:")
    slow = bench.Result("mocov2", [11.0], [10.0], knn=dict(ours=[90.0], lightly=[80.0]))
    assert slow.goal() == "not met: 1.10x < 1.2x, kNN 90.00 >= 80.00"
    # every repeat short of the goal decides it before any kNN; one repeat reaching it leaves it open
    assert bench.Result("mocov2", [11.0, 10.5], [10.0, 10.0]).goal() == "not met: 1.07x < 1.2x in every repeat"
    assert bench.Result("mocov2", [11.0, 12.5], [10.0, 10.0]).goal().startswith("undecided: 1.18x < 1.2x, but")
    noisy = bench.Result("simclr", [13.0, 11.0, 13.0], [10.0, 10.0, 10.0], knn=dict(ours=[90.0], lightly=[80.0]))
    assert noisy.goal().startswith("undecided: 1.30x >= 1.2x, but the repeats span 1.10-1.30x")


def test_the_knn_is_compared_seed_by_seed():
    fast = dict(name="mocov2", ours=[13.0, 13.0], lightly=[10.0, 10.0])
    worse = bench.Result(**fast, knn=dict(ours=[70.0, 71.0, 69.0], lightly=[71.0, 71.5, 70.0]))
    assert worse.goal() == "not met: 1.30x >= 1.2x, kNN 70.00 < 70.83 over 3 seeds in every seed"
    # a lower mean whose gap changes sign with the seed is the seeds' noise: equal, so the goal is met
    mixed = bench.Result(**fast, knn=dict(ours=[70.0, 72.0, 69.0], lightly=[71.0, 71.5, 70.0]))
    assert mixed.goal() == ("met: 1.30x >= 1.2x, kNN equal: 70.33 vs 70.83 over 3 seeds, "
                            "the gap's sign changes with the seed (-1.00 to +0.50)")
    better = bench.Result(**fast, knn=dict(ours=[71.0, 72.0], lightly=[71.0, 71.5]))
    assert better.goal().startswith("met: 1.30x >= 1.2x, kNN 71.50 >= 71.25 over 2 seeds")
    with pytest.raises(ValueError):
        bench.Result(**fast, knn=dict(ours=[71.0, 72.0], lightly=[71.0])).goal()


def test_the_report_is_computed_from_the_measurements():
    results = [bench.Result("simclr", [30.0, 36.0, 33.0], [20.0, 30.0, 25.0], dict(ours=[81.0], lightly=[80.5]),
                            dict(ours=[31.0], lightly=[24.0])),
               bench.Result("mocov2", [50.0], [40.0])]
    body = bench.report(results, command="python -m bench.vs_lightly --epochs 4", device=torch.device("cpu"), workers=1, repeats=3, warmup=2, steps=20, epochs=4,
                        train_images=60000, test_images=10000, lightly_version="1.6.0")
    simclr, mocov2 = [line for line in body.splitlines() if line.startswith("| SimCLR") or line.startswith("| MoCo")]
    assert "| 33 (30-36) | 25 (20-30) | 1.32 (1.2-1.5) | 81.00 / 80.50 | 31 / 24 | met:" in simclr
    assert "| 1.25 (1.25-1.25) | not measured | - | undecided:" in mocov2
    assert body.lstrip().startswith("`python -m bench.vs_lightly --epochs 4`: each method's")
    assert "1 DataLoader worker process," in body and "after 4 epochs" in body and "20 steps after 2 warm-up" in body
    assert "seeds" not in body and "compiled" not in body
    compiled = bench.report(results, command="python -m bench.vs_lightly --compile", device=torch.device("cpu"),
                            workers=1, repeats=3, warmup=2, steps=20, epochs=4, train_images=60000,
                            test_images=10000, lightly_version="1.6.0", compiled="reduce-overhead")
    assert "with its networks compiled (`torch.compile` in mode reduce-overhead" in compiled  # which path it timed


def test_several_seeds_are_reported_as_their_mean_and_range():
    seeds = [bench.Result("mocov2", [50.0], [40.0], dict(ours=[70.0, 72.0], lightly=[71.0, 71.5]),
                          dict(ours=[60.0, 64.0], lightly=[40.0, 42.0]))]
    body = bench.report(seeds, command="c", device=torch.device("cpu"), workers=1, repeats=1, warmup=1, steps=1,
                        epochs=2, train_images=10000, test_images=2500, lightly_version="1.6.0", seeds=2)
    (row,) = [line for line in body.splitlines() if line.startswith("| MoCo")]
    assert "| 71.00 (70.00-72.00) / 71.25 (71.00-71.50) | 62 (60-64) / 41 (40-42) | met:" in row
    assert "for each of 2 seeds" in body


@pytest.mark.parametrize("name, scale, jitter", [("simclr", 0.08, simclr_jitter(0.5)),
                                                 ("mocov2", 0.2, (0.4, 0.4, 0.4, 0.1))])
def test_lightlys_transform_numbers_are_read_off_our_presets_views(name, scale, jitter):
    kwargs = bench.lightly_view_kwargs(bench.our_views(name, MEAN, STD))
    assert kwargs == dict(input_size=32, min_scale=scale, cj_prob=0.8, cj_strength=1.0, cj_bright=jitter[0],
                          cj_contrast=jitter[1], cj_sat=jitter[2], cj_hue=jitter[3], random_gray_scale=0.2,
                          gaussian_blur=0.0, sigmas=(0.1, 2.0), hf_prob=0.5, vf_prob=0.0, rr_prob=0.0,
                          normalize=dict(mean=pytest.approx(list(MEAN)), std=pytest.approx(list(STD))))


def test_a_blur_is_carried_over_and_a_crop_lightly_cannot_make_is_refused():
    kwargs = bench.lightly_view_kwargs(StrongAugment(32, MEAN, STD, scale=(0.2, 1.0), blur=0.5))
    assert (kwargs["gaussian_blur"], kwargs["sigmas"]) == (0.5, (0.1, 2.0))
    with pytest.raises(ValueError, match="scale \\(min, 1.0\\)"):
        bench.lightly_view_kwargs(StrongAugment(32, MEAN, STD, scale=(0.2, 0.9)))


@pytest.mark.parametrize("name", ["simclr", "mocov2"])
def test_lightlys_transform_equals_our_views_field_by_field(name):
    pytest.importorskip("lightly")
    views = bench.our_views(name, MEAN, STD)
    ours = {type(op): op for op in views.ops}
    transform = bench.lightly_transform(name, views)
    assert len(transform.transforms) == 2
    for view in transform.transforms:
        ops = {type(op).__name__: op for op in view.transform.transforms}
        crop = ops["RandomResizedCrop"]
        assert (list(crop.size), crop.scale, crop.ratio) == ([32, 32], views.crops[0].scale, views.crops[0].ratio)
        assert ops["RandomHorizontalFlip"].p == ours[T.RandomHorizontalFlip].p
        assert ops["RandomVerticalFlip"].p == 0.0 and ops["RandomRotate"].prob == 0.0
        jitter, theirs = views.jitter, ops["RandomApply"]
        assert theirs.p == jitter.p
        (colour,) = theirs.transforms
        for field in ("brightness", "contrast", "saturation"):
            assert getattr(colour, field) == pytest.approx((1 - getattr(jitter, field), 1 + getattr(jitter, field)))
        assert colour.hue == pytest.approx((-jitter.hue, jitter.hue))
        assert ops["RandomGrayscale"].p == ours[T.RandomGrayscale].p
        assert ops["GaussianBlur"].prob == 0.0 and T.RandomGaussianBlur not in ours
        assert ops["Normalize"].mean == pytest.approx(list(MEAN)) and ops["Normalize"].std == pytest.approx(list(STD))


def test_lightlys_optimiser_spares_the_parameters_ours_spares():
    pytest.importorskip("lightly")
    import timm

    cfg = bench.preset("simclr")
    model = bench.LightlySimCLR(timm.create_model(cfg.arch, num_classes=0, **cfg.model_args), cfg.method)
    decayed, spared = bench.lightly_optimizer(model, cfg, 1.0).param_groups
    vectors = {id(p) for m in (model.backbone, model.head) for p in m.parameters() if p.ndim <= 1}
    assert {id(p) for p in spared["params"]} == vectors and spared["weight_decay"] == 0.0  # no decay, no trust ratio
    assert decayed["weight_decay"] == cfg.weight_decay and not vectors & {id(p) for p in decayed["params"]}
    sgd = bench.lightly_optimizer(model, bench.preset("mocov2"), 0.03)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["weight_decay"] == bench.preset("mocov2").weight_decay


def test_lightlys_moco_v2_splits_every_batch_norm_and_trains_a_step():
    pytest.importorskip("lightly")
    import timm
    from lightly.models.batchnorm import SplitBatchNorm

    cfg = bench.preset("mocov2")
    torch.manual_seed(0)
    model = bench.LightlyMoCoV2(timm.create_model(cfg.arch, num_classes=0, **cfg.model_args), cfg.method)
    norms = [type(m) for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and set(norms) == {SplitBatchNorm}
    loss = model(torch.randn(16, 3, 32, 32), torch.randn(16, 3, 32, 32))
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.conv1.weight.grad is not None
    assert not any(p.requires_grad for p in model.backbone_momentum.parameters())
