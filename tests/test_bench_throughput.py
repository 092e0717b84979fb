"""The throughput benchmark's own logic: every method's step runs on the bare step's images, rounds rotate
their order, and a method measured faster than the bare step is called noise. Nothing is timed here."""
import math

import torch

from bench import throughput
from train import data as datasets
from train.methods import METHODS


def test_each_round_rotates_the_order_so_no_step_is_always_first():
    calls = []
    timed = {name: (lambda name=name: calls.append(name)) for name in ("bare", "a", "b")}
    seconds = throughput.rounds(timed, repeats=3)
    assert calls[:3] == ["bare", "a", "b"]  # the untimed warm-up
    assert calls[3:] == ["bare", "a", "b", "a", "b", "bare", "b", "bare", "a"]
    assert all(len(values) == 3 for values in seconds.values())


def test_a_method_faster_than_its_own_backbone_is_reported_as_noise():
    seconds = {"bare": [2.0, 2.0, 2.0], "slow": [4.0, 4.2, 3.8], "slow bare": [2.0, 2.0, 2.0],
               "odd": [1.0, 1.9, 1.5], "odd bare": [2.0, 2.0, 2.0]}
    rows = {row.split(" | ")[0].strip("| "): row for row in throughput.table(seconds, ["slow", "odd"], 256).splitlines()}
    assert rows["slow"].endswith("| 2 [1.95-2.05] | 2 [1.95-2.05] |") and "noise" not in rows["slow"]
    assert "0.75 [0.625-0.85] (noise: below 1)" in rows["odd"]
    assert rows["yardstick: bare ResNet-18 (32 px)"].endswith("| 128 [128-128] | - | 1 |")


def test_every_method_steps_on_the_same_images_as_the_bare_step(fashion_mnist):
    data = datasets.load("fashion-mnist", 32, 32)
    names = [name for name in METHODS if "fmnist" in METHODS[name].PRESETS]
    for name in names:  # the bare step takes the first 16 images: so does every method's loader
        assert throughput.first_batch(name, data, 16)[3].tolist() == list(range(16)), name
    timed = throughput.steps(names, data, batch=16)
    assert list(timed) == ["bare", *(step for name in names for step in (name, f"{name} bare"))]
    for name, step in timed.items():
        assert math.isfinite(step().loss.item()), name


def test_a_methods_backbone_steps_in_the_engines_layout_on_its_own_parameters(fashion_mnist):
    data = datasets.load("fashion-mnist", 32, 32)
    for name, channels_last in (("instdisc", True), ("mocov2", False)):  # MoCo's split BatchNorms train NCHW
        method = throughput.first_batch(name, data, 16)[0]
        conv = throughput.own_backbone(method, throughput.CPU).conv1.weight
        assert conv.is_contiguous(memory_format=torch.channels_last) != conv.is_contiguous() == (not channels_last)
        exported = method.export().conv1.weight
        assert torch.equal(conv, exported) and conv.data_ptr() != exported.data_ptr()
