"""``--compile``: the networks compiled in place train as the eager ones and checkpoint, resume and export the same.

Traced with ``backend="aot_eager"``: dynamo and AOTAutograd capture and functionalise each network as inductor
would (in-place BatchNorm statistics included), and the captured graphs run eagerly, so a CPU test pays for the
tracing only. ``test_resnet`` (timm's smallest ResNet) keeps that tracing to seconds."""
import functools
import os

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from conftest import two_processes

import train.__main__
import train.engine
import zoo
from train import optim
from train.engine import Schedules, compile_networks, fit, train_step
from train.methods import METHODS
from train.methods.base import Progress

TINY_ARCH = dict(arch="test_resnet", model_args={})


def two_steps(method, cfg, images, trainer=None):
    plan = Schedules.of(cfg, steps_per_epoch=2)
    optimizer = optim.build(method, cfg, plan.base_lr)
    losses = []
    for step in range(2):
        torch.manual_seed(100 + step)  # the same views on both sides
        out = train_step(trainer or method, method, optimizer, plan, images, torch.arange(len(images)),
                         Progress(0, step, 2), cfg, torch.device("cpu"))
        losses.append(out.loss.item())
    return losses


def test_a_compiled_moco_step_equals_the_eager_one_with_the_same_state_keys():
    """MoCo v2 is the hardest case: BatchNorm split in groups that update their statistics in place, a
    momentum encoder run under no_grad on a shuffled batch, a queue written after the loss."""
    cfg = METHODS["mocov2"].PRESETS["smoke"].override(**TINY_ARCH)
    images = torch.randint(0, 256, (cfg.batch_size, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    runs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        method = METHODS["mocov2"].build(cfg, 512, (0.5,) * 3, (0.25,) * 3)
        if compiled:
            compile_networks(method, backend="aot_eager")
        runs.append((two_steps(method, cfg, images), method.state_dict()))
    (eager_losses, eager), (compiled_losses, compiled) = runs
    assert compiled_losses == pytest.approx(eager_losses, abs=1e-4)
    assert compiled.keys() == eager.keys()  # no "_orig_mod." prefix: checkpoints are interchangeable
    for key in eager:
        assert torch.allclose(compiled[key].float(), eager[key].float(), atol=1e-4), key


def _compiled_ddp_on_rank(rank, port, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        cfg = METHODS["mocov2"].PRESETS["smoke"].override(batch_size=32, **TINY_ARCH)
        images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(rank))  # each rank its half of the batch
        runs = {}
        for compiled in (False, True):
            torch.manual_seed(0)  # the engine's seed: the same initial networks on both ranks
            method = METHODS["mocov2"].build(cfg, 512, (0.5,) * 3, (0.25,) * 3)
            if compiled:
                torch._dynamo.reset()
                compile_networks(method, backend="aot_eager")
            trainer = DistributedDataParallel(method, broadcast_buffers=False)  # as fit() wraps it
            losses = two_steps(method, cfg, images, trainer)
            runs[compiled] = dict(losses=losses, state={k: v.detach().clone() for k, v in method.state_dict().items()},
                                  parameters=[name for name, _ in method.named_parameters()],
                                  graphs=torch._dynamo.utils.counters["stats"]["unique_graphs"])
        results[rank] = runs
    finally:
        torch.distributed.destroy_process_group()


def test_compiled_networks_inside_ddp_train_as_the_eager_ones():
    """``train --compile`` under torchrun: the networks are compiled in place, then the method is wrapped in DDP,
    whose gradient hooks and MoCo's shuffled key batch must see the same values as without compiling."""
    results = two_processes(_compiled_ddp_on_rank)
    for rank in range(2):
        eager, compiled = results[rank][False], results[rank][True]
        assert compiled["graphs"] > 0  # something was traced: the comparison is not eager against eager
        assert compiled["losses"] == pytest.approx(eager["losses"], abs=1e-4)
        for key, value in eager["state"].items():
            assert torch.allclose(compiled["state"][key].float(), value.float(), atol=1e-4), (rank, key)
    # DDP kept the ranks in step: the same parameters (both encoders) and the same queue of gathered keys; only
    # each rank's BatchNorm statistics are its own
    first, second = results[0][True], results[1][True]
    shared = first["parameters"] + [key for key in first["state"] if key.startswith("queue.")]
    assert any(key.startswith("queue.") for key in shared)
    for key in shared:
        assert torch.allclose(second["state"][key].float(), first["state"][key].float(), atol=1e-5), key


def test_fit_compiled_checkpoints_and_exports_as_the_eager_run(zoo_home, tmp_path, monkeypatch):
    cfg = METHODS["simclr"].PRESETS["smoke"].override(epochs=1, **TINY_ARCH)
    monkeypatch.setattr(train.engine, "compile_networks", functools.partial(compile_networks, backend="aot_eager"))
    for compiled in (None, "default"):
        fit("simclr", "smoke", cfg, tmp_path / str(compiled), name=f"run-{compiled}", compiled=compiled)
    eager, compiled = (torch.load(tmp_path / str(c) / "checkpoint.pt", weights_only=True)["model"]
                       for c in (None, "default"))
    assert compiled.keys() == eager.keys()
    for key in eager:
        assert torch.allclose(compiled[key].float(), eager[key].float(), atol=1e-4), key
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(zoo.load(str(zoo_home / "run-default"))(x), zoo.load(str(zoo_home / "run-None"))(x),
                              atol=1e-4)


def test_the_command_line_compiles_only_when_asked_and_in_the_mode_asked(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(train.__main__, "fit", lambda *args, **kwargs: calls.append(kwargs["compiled"]))
    for extra in ([], ["--compile"], ["--compile", "reduce-overhead"]):
        train.__main__.main(["simclr", "--preset", "smoke", "--out", str(tmp_path), *extra])
    assert calls == [None, "default", "reduce-overhead"]
    with pytest.raises(SystemExit):
        train.__main__.main(["simclr", "--preset", "smoke", "--compile", "reduce_overhead"])
    assert "invalid choice: 'reduce_overhead'" in capsys.readouterr().err and not calls[3:]


def test_each_network_is_compiled_in_the_mode_asked(monkeypatch):
    """The mode reaches torch.compile for every network (inductor's own, which the CPU tests do not run), with
    static shapes, and the default passes none; a misspelt mode is refused before anything compiles."""
    cfg = METHODS["mocov2"].PRESETS["smoke"].override(**TINY_ARCH)
    method = METHODS["mocov2"].build(cfg, 512, (0.5,) * 3, (0.25,) * 3)
    seen = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kwargs: seen.append((self, kwargs)))
    compile_networks(method, "reduce-overhead")
    assert [network for network, _ in seen] == list(method.networks()) and len(seen) >= 3  # encoder, head, key encoder
    assert all(kwargs == dict(backend="inductor", mode="reduce-overhead", dynamic=False) for _, kwargs in seen)
    seen.clear()
    compile_networks(method)
    assert all(kwargs["mode"] is None for _, kwargs in seen)
    seen.clear()
    with pytest.raises(ValueError, match="unknown compile mode 'fast'; choose from default, reduce-overhead"):
        compile_networks(method, "fast")
    assert not seen


def test_every_graph_is_compiled_for_the_batches_concrete_shapes():
    """MoCo's key encoder runs without gradients on the second half of the views (another grad mode, another
    storage offset than the query encoder's input). Left dynamic, torch recompiled it for symbolic sizes, whose
    code inductor took over 15 minutes to generate on a CPU; every graph handed to the backend must be static."""
    torch._dynamo.reset()
    inputs = []

    def backend(graph, example_inputs):  # what dynamo traced each input as: a size symbol, or a (fake) tensor
        inputs.extend(node.meta["example_value"] for node in graph.graph.nodes if node.op == "placeholder")
        return graph.forward

    cfg = METHODS["mocov2"].PRESETS["smoke"].override(**TINY_ARCH)
    images = torch.randint(0, 256, (cfg.batch_size, 3, 32, 32), dtype=torch.uint8)
    method = compile_networks(METHODS["mocov2"].build(cfg, 512, (0.5,) * 3, (0.25,) * 3), backend=backend)
    two_steps(method, cfg, images)
    assert inputs  # the networks were traced
    symbolic = [value for value in inputs if isinstance(value, torch.SymInt) or isinstance(value, torch.Tensor) and
                any(isinstance(n, torch.SymInt) for n in (*value.shape, value.storage_offset()))]
    assert not symbolic
