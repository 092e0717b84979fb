"""DINO: the cross-entropy over (global, other crop) pairs against its formula, the centre as an EMA of the teacher's
batch means, the teacher temperature's warm-up, a teacher that sees only the global crops and keeps no stochastic
depth, per-parameter gradient clipping, the frozen last layer, the teacher as an EMA of the student, the head."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import step_with_target_apart

from train import optim
from train.blocks.heads import DINOHead
from train.blocks.losses import dino_loss
from train.blocks.momentum import cosine_momentum
from train.engine import Schedules, train_step
from train.methods import dino
from train.methods.base import Progress

MEAN, STD = (0.286,) * 3, (0.353,) * 3


def images(n=8, seed=0):
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def smoke(preset="smoke", **method):
    cfg = dino.PRESETS[preset].override(batch_size=8)
    cfg = cfg.override(method={**cfg.method, **method})
    torch.manual_seed(0)
    return dino.build(cfg, 16, MEAN, STD), cfg


def step(method, cfg, progress, lr=None):
    cfg = cfg.override(lr=lr, lr_scaling="none" if lr else None)
    plan = Schedules.of(cfg, steps_per_epoch=4)
    optimizer = optim.build(method, cfg, plan.base_lr)
    return train_step(method, method, optimizer, plan, images(), torch.arange(8), progress, cfg, torch.device("cpu"))


def test_the_loss_is_the_mean_cross_entropy_over_every_global_and_other_crop_pair():
    torch.manual_seed(0)
    crops, batch, k = 4, 3, 5
    student, teacher, center = torch.randn(crops * batch, k), torch.randn(2 * batch, k), torch.randn(1, k)
    ts, tt = 0.1, 0.04
    s = torch.log_softmax(student / ts, dim=-1).view(crops, batch, k)
    t = torch.softmax((teacher - center) / tt, dim=-1).view(2, batch, k)
    terms = [float(-(t[g] * s[v]).sum(-1).mean()) for g in range(2) for v in range(crops) if v != g]
    assert len(terms) == 2 * crops - 2
    assert dino_loss(student, teacher, center, crops, ts, tt).item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_the_centre_moves_toward_the_teachers_batch_mean_after_the_loss_used_the_old_one():
    """c <- 0.9 c + 0.1 mean(g_t(x)) over the batch's global crops (eq. 4)."""
    method, _ = smoke()
    old = torch.randn_like(method.center)
    method.center.copy_(old)
    seen = {}
    method.momentum_encoder.register_forward_hook(lambda m, args, out: seen.setdefault("teacher", out.detach()))
    method(images(), torch.arange(8), Progress(0, 0, 2))
    expected = 0.9 * old + 0.1 * seen["teacher"].mean(dim=0, keepdim=True)
    assert torch.allclose(method.center, expected, atol=1e-6)


def test_the_teacher_temperature_warms_up_linearly_over_its_epochs_then_holds():
    method, _ = smoke(warmup_teacher_temperature=0.04, teacher_temperature=0.07, warmup_teacher_temperature_epochs=30)
    schedule = np.concatenate([np.linspace(0.04, 0.07, 30), np.full(10, 0.07)])  # the authors' array
    assert [method.teacher_temperature_at(e) for e in range(40)] == pytest.approx(list(schedule))


def test_the_teacher_sees_the_two_global_crops_and_the_student_every_crop_one_call_per_resolution():
    method, _ = smoke()
    shapes = {"teacher": [], "student": []}
    method.momentum_encoder.register_forward_pre_hook(lambda m, args: shapes["teacher"].append(tuple(args[0].shape)))
    method.backbone.register_forward_pre_hook(lambda m, args: shapes["student"].append(tuple(args[0].shape)))
    method(images(), torch.arange(8), Progress(0, 0, 2))
    local_count = len(method.augment.crops) - 2
    assert shapes["teacher"] == [(16, 3, 32, 32)]
    assert shapes["student"] == [(16, 3, 32, 32), (8 * local_count, 3, 16, 16)]


def test_the_teacher_has_no_stochastic_depth_but_the_student_does():
    method, _ = smoke("smoke-vit")
    drops = [layer.drop_prob for layer in method.backbone.modules() if hasattr(layer, "drop_prob")]
    assert drops and max(drops) > 0
    assert all(layer.drop_prob == 0 for layer in method.momentum_encoder.modules() if hasattr(layer, "drop_prob"))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():  # both in training mode: only the teacher is deterministic
        assert torch.equal(method.momentum_encoder(x), method.momentum_encoder(x))
        assert not torch.equal(method.backbone(x), method.backbone(x))


def test_local_crops_smaller_than_the_vit_input_resample_its_position_embedding():
    method, _ = smoke("smoke-vit")
    assert method.backbone(torch.randn(2, 3, 16, 16)).shape == (2, method.backbone.num_features)


def test_each_gradient_is_clipped_to_the_norm_on_its_own():
    big, small = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2))
    big.grad, small.grad = torch.tensor([30.0, 40.0, 0.0]), torch.tensor([0.3, 0.4])
    dino.clip_per_parameter([big, small], 3.0)
    assert big.grad.norm().item() == pytest.approx(3.0, rel=1e-5)
    assert torch.equal(small.grad, torch.tensor([0.3, 0.4]))  # a global clip would have scaled it down too


def test_the_last_layer_is_frozen_in_the_first_epoch_only():
    for epoch, frozen in ((0, True), (1, False)):
        method, cfg = smoke()
        v = method.head.last_layer.parametrizations.weight.original1
        before, mlp_before = v.detach().clone(), method.head.mlp[0].weight.detach().clone()
        step(method, cfg, Progress(epoch, 4 * epoch, 8), lr=1.0)
        assert torch.equal(v, before) == frozen, epoch
        assert not torch.equal(method.head.mlp[0].weight, mlp_before)


def test_after_a_step_the_teacher_is_the_moving_average_with_the_new_student_weights():
    method, cfg = smoke()
    progress = Progress(1, 5, 8)
    teacher_before, _ = step_with_target_apart(method, cfg, progress, (method.backbone, method.head), images(), lr=1.0)
    student = [p.detach() for m in (method.backbone, method.head) for p in m.parameters()]
    lam = cosine_momentum(cfg.method["base_momentum"], progress.fraction)
    for before, after, theta in zip(teacher_before, method.momentum_encoder.parameters(), student):
        assert torch.allclose(after, lam * before + (1 - lam) * theta, atol=1e-5)
    assert method.export() is method.momentum_encoder[0]  # the teacher's backbone is what users get


def test_the_head_normalises_the_bottleneck_and_its_last_layers_scale_is_fixed_unless_asked():
    head = DINOHead(12, out_dim=7, hidden=10, bottleneck=5)
    assert [type(m) for m in head.mlp] == [nn.Linear, nn.GELU, nn.Linear, nn.GELU, nn.Linear]
    g, v = head.last_layer.parametrizations.weight.original0, head.last_layer.parametrizations.weight.original1
    assert torch.equal(g, torch.ones(7, 1)) and not g.requires_grad and v.requires_grad
    x = torch.randn(4, 12)
    z = torch.nn.functional.normalize(head.mlp(x), dim=-1)
    assert torch.allclose(head(x), z @ torch.nn.functional.normalize(v, dim=1).T, atol=1e-6)
    assert DINOHead(12, 7, 10, 5, norm_last_layer=False).last_layer.parametrizations.weight.original0.requires_grad
    with_bn = DINOHead(12, 7, 10, 5, use_bn=True)
    assert [type(m) for m in with_bn.mlp][:3] == [nn.Linear, nn.BatchNorm1d, nn.GELU]


def test_presets_follow_the_authors_numbers():
    paper = dino.PRESETS["paper"]
    assert (paper.arch, paper.optimizer, paper.lr, paper.lr_scaling, paper.lr_end, paper.batch_size) == \
        ("vit_small_patch16_224", "adamw", 5e-4, "linear", 1e-6, 512)
    assert (paper.weight_decay, paper.weight_decay_end, paper.exclude_norm_bias, paper.warmup_epochs, paper.epochs) == \
        (0.04, 0.4, True, 10, 100)
    assert paper.model_args["drop_path_rate"] == 0.1 and paper.clip_grad == 0  # DINO clips per parameter itself
    m = paper.method
    assert (m["out_dim"], m["student_temperature"], m["teacher_temperature"], m["center_momentum"],
            m["base_momentum"], m["clip_grad"], m["freeze_last_layer_epochs"]) == (65536, 0.1, 0.04, 0.9, 0.996, 3.0, 1)
    assert (m["global_crops"], m["local_crops"]) == ((224, (0.4, 1.0)), (8, 96, (0.05, 0.4)))
    boost = dino.PRESETS["paper-boost"]
    assert (boost.epochs, boost.method["teacher_temperature"], boost.method["warmup_teacher_temperature_epochs"],
            boost.method["norm_last_layer"]) == (300, 0.07, 30, False)
    r50 = dino.PRESETS["paper-r50"]
    assert (r50.optimizer, r50.lr, r50.weight_decay, r50.weight_decay_end) == ("sgd", 0.03, 1e-4, 1e-4)
    assert (r50.method["global_crops"][1], r50.method["local_crops"][2]) == ((0.14, 1.0), (0.05, 0.14))
    assert math.isclose(dino.PRESETS["fmnist"].method["global_crops"][0] / dino.PRESETS["fmnist"].method["local_crops"][1], 2)


def test_a_vit_resamples_its_position_embedding_for_local_crops_as_the_authors():
    """interpolate_pos_encoding: bicubic at scale (n + 0.1) / N, no antialiasing (timm's own resampling antialiases)."""
    method, _ = smoke("smoke-vit")
    vit = method.backbone
    tokens = torch.randn(2, 2, 2, vit.embed_dim)  # a 16-px crop's 2 x 2 patches, as the ViT's patch_embed gives them
    grid = vit.patch_embed.grid_size
    patches = vit.pos_embed[:, 1:].reshape(1, *grid, -1).permute(0, 3, 1, 2)
    theirs = torch.nn.functional.interpolate(patches, scale_factor=(2.1 / grid[0], 2.1 / grid[1]), mode="bicubic")
    expected = torch.cat([vit.cls_token.expand(2, -1, -1) + vit.pos_embed[:, :1],
                          tokens.reshape(2, 4, -1) + theirs.permute(0, 2, 3, 1).reshape(1, 4, -1)], dim=1)
    assert torch.allclose(vit._pos_embed(tokens), expected, atol=1e-6)
    timm_own = super(type(vit), vit)._pos_embed(tokens)
    assert not torch.allclose(timm_own, expected, atol=1e-4)


def test_image_files_are_cropped_bicubically_as_the_authors():
    method, _ = smoke()
    assert {crop.interpolation for crop in method.crops} == {"bicubic"}
    assert "bicubic" in repr(method.crops[0].on_cpu()).lower()


def test_without_centring_the_centre_stays_zero():
    """Sec. 5.3's ablation: the teacher is only sharpened."""
    method, _ = smoke(centring=False)
    method(images(), torch.arange(8), Progress(0, 0, 2))
    assert torch.equal(method.center, torch.zeros_like(method.center))
    centred, _ = smoke()
    centred(images(), torch.arange(8), Progress(0, 0, 2))
    assert centred.center.abs().sum() > 0
