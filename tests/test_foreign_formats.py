"""TensorFlow checkpoints and Haiku pickles are read without TensorFlow, JAX or their code: a checkpoint
written here in TensorFlow's format reads back exactly, fake SimCLR and BYOL releases convert to the
features of the network they were made from, and damaged or crafted files are refused, running nothing."""
import collections
import math
import os
import pickle
import struct
import types
import zipfile

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

import zoo
import zoo.layouts  # noqa: F401  (registers the converters)
from zoo import haiku_pickle, tf_checkpoint
from zoo.checkpoint import check_state_dict
from zoo.convert import CONVERTERS, convert
from zoo.registry import ENTRIES, ZooError

# --- a TensorFlow checkpoint writer (BundleWriter's files: an SSTable index and data shards) ----------------

DT = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3, np.dtype(np.uint8): 4,
      np.dtype(np.int64): 9, np.dtype(np.bool_): 10, np.dtype(np.float16): 19, np.dtype(object): 7}


def varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(number, value):
    """A protobuf field: ints as varints (zero omitted, as proto3 does), bytes length-delimited."""
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    return varint(number << 3) + varint(value) if value else b""


def tensor_bytes(array):
    if array.dtype == object:  # varint lengths, their masked CRC-32C (as uint32s), the strings
        lengths = [len(s) for s in array.ravel()]
        crc = tf_checkpoint.crc32c(b"".join(struct.pack("<I", n) for n in lengths))
        return b"".join(map(varint, lengths)) + struct.pack("<I", tf_checkpoint.mask(crc)) + b"".join(array.ravel())
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def block(entries, restart_every):
    """A table block: prefix-compressed entries, a restart point every ``restart_every`` entries."""
    out, restarts, previous = b"", [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        else:
            restarts.append(len(out))
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        previous = key
    restarts = restarts or [0]
    return out + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))


def table(items, block_bytes=300, restart_every=4):
    """An SSTable of sorted (key, value) items: data blocks of about ``block_bytes``, an empty metaindex
    block, the index block (last key of each data block -> its handle) and the footer."""
    out = bytearray()

    def append(contents):
        handle = varint(len(out)) + varint(len(contents))
        out.extend(contents + b"\0" + struct.pack("<I", tf_checkpoint.mask(tf_checkpoint.crc32c(contents + b"\0"))))
        return handle

    index, pending = [], []
    for key, value in items:
        pending.append((key, value))
        if sum(len(k) + len(v) for k, v in pending) >= block_bytes:
            index.append((key, append(block(pending, restart_every))))
            pending = []
    if pending:
        index.append((pending[-1][0], append(block(pending, restart_every))))
    handles = append(block([], 1)) + append(block(index, 1))
    return bytes(out) + handles.ljust(40, b"\0") + struct.pack("<Q", tf_checkpoint.MAGIC), len(index)


def write_checkpoint(prefix, tensors, shards=1, **table_args):
    """Write ``tensors`` ({name: array}) as a TensorFlow checkpoint ``prefix``; returns its data block count."""
    data, sizes, entries = [[] for _ in range(shards)], [0] * shards, {}
    for i, (name, array) in enumerate(sorted(tensors.items())):
        shard, raw = i % shards, tensor_bytes(np.asarray(array))
        shape = b"".join(field(2, field(1, d)) for d in np.shape(array))
        entries[name.encode()] = (field(1, DT[np.asarray(array).dtype]) + field(2, shape) + field(3, shard)
                                  + field(4, sizes[shard]) + field(5, len(raw)) + b"\x35\0\0\0\0")
        data[shard].append(raw)
        sizes[shard] += len(raw)
    header = field(1, shards) + field(3, field(1, 1))
    index, blocks = table([(b"", header)] + sorted(entries.items()), **table_args)
    with open(f"{prefix}.index", "wb") as file:
        file.write(index)
    for shard in range(shards):
        with open(tf_checkpoint.DATA_SHARD.format(prefix=prefix, shard=shard, shards=shards), "wb") as file:
            file.writelines(data[shard])
    return blocks


# --- fake releases made from a timm ResNet-50 ---------------------------------------------------------------

@pytest.fixture(scope="module")
def source():
    """A timm resnet50 with random weights and batch-norm statistics: what the fake releases hold."""
    torch.manual_seed(0)
    model = timm.create_model("resnet50", num_classes=0).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                for tensor in (module.weight, module.bias, module.running_mean):
                    tensor.normal_(0, 0.3)
                module.running_var.uniform_(0.5, 2)
    return model


@pytest.fixture(scope="module")
def scratch():
    """A timm resnet50 to load converted state dicts into."""
    return timm.create_model("resnet50", num_classes=0).eval()


IMAGES = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
ATOL = 1e-5  # float32 rounding of the same sums in another order


def features(model, state=None):
    """The features of ``model`` (holding ``state`` if given) for two fixed small images."""
    if state is not None:
        model.load_state_dict(state)
    with torch.no_grad():
        return model(IMAGES)


def tf_pad(x, kernel, stride, same, value=0.0):
    """TensorFlow's and Haiku's 'SAME' padding (``same``): out = ceil(n / stride), the odd pixel of padding after
    the input; else SimCLR's ``fixed_padding``: (k - 1) // 2 before, the rest after, whatever the input size."""
    n = x.shape[-1]
    total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0) if same else kernel - 1
    return F.pad(x, (total // 2, total - total // 2) * 2, value=value)


def authors_forward(model, same_convs, images=IMAGES):
    """The network of ``model``'s weights, computed as the authors' frameworks do, with explicit padding and
    functional ops only: SimCLR's resnet.py (``same_convs=False``: convolutions padded by ``fixed_padding``, the
    max pool 'SAME') or Haiku's ResNet of BYOL (``same_convs=True``: every layer 'SAME')."""
    def conv(module, x):
        k, s = module.kernel_size[0], module.stride[0]
        return F.conv2d(tf_pad(x, k, s, same_convs), module.weight, stride=s)

    def bn(module, x):
        return F.batch_norm(x, module.running_mean, module.running_var, module.weight, module.bias, False, 0.0,
                            module.eps)

    with torch.no_grad():
        x = F.relu(bn(model.bn1, conv(model.conv1, images)))
        x = F.max_pool2d(tf_pad(x, 3, 2, True, -math.inf), 3, 2)
        for block in (b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer):
            shortcut = x if block.downsample is None else bn(block.downsample[1], conv(block.downsample[0], x))
            y = F.relu(bn(block.bn1, conv(block.conv1, x)))
            y = F.relu(bn(block.bn2, conv(block.conv2, y)))
            x = F.relu(bn(block.bn3, conv(block.conv3, y)) + shortcut)
        return x.mean((2, 3))


@pytest.mark.parametrize("same_convs", [False, True])
def test_the_reference_of_the_authors_padding_differs_from_timms(source, same_convs):
    """What the converted models must reproduce is not what timm's resnet50 computes from the same weights: the
    features tests below (to within ATOL) would pass with timm's padding otherwise."""
    assert (authors_forward(source, same_convs) - features(source)).abs().max() > 10 * ATOL


# The fakes name the network as the authors' code does, written here from their sources rather than from the
# converters' tables, so that a mistake in those tables shows.
BN_VARIABLES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
TF2_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def creation_order(model):
    """timm's (conv, bn) modules in the order SimCLR's resnet.py creates them: the stem, then in each block the
    projection shortcut (when it has one) before its three convolutions."""
    order = [("conv1", "bn1")]
    for group in range(1, 5):
        for index, block in enumerate(getattr(model, f"layer{group}")):
            name = f"layer{group}.{index}"
            if block.downsample is not None:
                order.append((f"{name}.downsample.0", f"{name}.downsample.1"))
            order += [(f"{name}.conv{i}", f"{name}.bn{i}") for i in (1, 2, 3)]
    return order


def tf1_scopes(model):
    """SimCLR's TF1 variable scopes, numbered in creation order: base_model/conv2d, conv2d_1, ..."""
    return {pair: (f"base_model/conv2d{f'_{k}' if k else ''}", f"base_model/batch_normalization{f'_{k}' if k else ''}")
            for k, pair in enumerate(creation_order(model))}


def tf2_paths(model, prefix="model/resnet_model/"):
    """SimCLR's TF2 object paths (tf2/resnet.py: Resnet, BlockGroup, BottleneckBlock)."""
    paths = {("conv1", "bn1"): (f"{prefix}initial_conv_relu_max_pool/0/conv2d",
                                f"{prefix}initial_conv_relu_max_pool/2/bn")}
    for conv, bn in creation_order(model)[1:]:
        group, index, layer = conv.split(".")[:3]
        block = f"{prefix}block_groups/{int(group[-1]) - 1}/layers/{index}/"
        if layer == "downsample":
            paths[conv, bn] = (block + "projection_layers/0/conv2d", block + "projection_layers/1/bn")
        else:
            i = 3 * (int(layer[-1]) - 1)  # conv, bn, DropBlock for each of the three
            paths[conv, bn] = (f"{block}conv_relu_dropblock_layers/{i}/conv2d",
                               f"{block}conv_relu_dropblock_layers/{i + 1}/bn")
    return paths


def tf_variables(model, scopes, suffix=""):
    """{TensorFlow name: array} of ``model``'s convolutions (HWIO) and batch norms."""
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    out = {}
    for (conv, bn), (tf_conv, tf_bn) in scopes.items():
        out[f"{tf_conv}/kernel{suffix}"] = state[f"{conv}.weight"].transpose(2, 3, 1, 0)
        for tf_name, name in BN_VARIABLES.items():
            out[f"{tf_bn}/{tf_name}{suffix}"] = state[f"{bn}.{name}"]
    return out


def simclr_tf1(model):
    """SimCLR's TF1 variables: the base network plus what a release also holds and the converter drops."""
    out = tf_variables(model, tf1_scopes(model))
    assert len(out) == 53 * 5 and "base_model/batch_normalization_52/moving_variance" in out
    out.update({"global_step": np.array(250228, np.int64),
                "base_model/conv2d/kernel/Momentum": np.ones((7, 7, 3, 64), np.float32),
                "base_model/batch_normalization_52/gamma/Momentum": np.ones(2048, np.float32),
                "ema_model/base_model/conv2d/kernel": np.zeros((7, 7, 3, 64), np.float32),
                "head_contrastive/nl_0/dense/kernel": np.ones((2048, 2048), np.float16),
                "head_supervised/linear_layer/dense/kernel": np.ones((2048, 1000), np.float32),
                "head_supervised/linear_layer/dense/bias": np.zeros(1000, np.float32)})
    return out


def simclr_tf2(model):
    """SimCLR's TF2 object-based checkpoint: object paths, the object graph, an optimizer slot, the heads."""
    out = tf_variables(model, tf2_paths(model), TF2_SUFFIX)
    out.update({"_CHECKPOINTABLE_OBJECT_GRAPH": np.array(b"\x0a\x02graph", dtype=object),
                "global_step" + TF2_SUFFIX: np.array(1000, np.int64),
                "model/resnet_model/initial_conv_relu_max_pool/0/conv2d/kernel/.OPTIMIZER_SLOT/optimizer/"
                "Momentum" + TF2_SUFFIX: np.ones((7, 7, 3, 64), np.float32),
                "model/supervised_head/linear_layer/dense/kernel" + TF2_SUFFIX: np.ones((2048, 10), np.float32)})
    return out


# --- the TensorFlow format ------------------------------------------------------------------------------------

def test_crc32c_matches_the_castagnoli_check_value():
    assert tf_checkpoint.crc32c(b"123456789") == 0xE3069283
    assert tf_checkpoint.crc32c(b"6789", tf_checkpoint.crc32c(b"12345")) == 0xE3069283
    assert tf_checkpoint.unmask(tf_checkpoint.mask(0x12345678)) == 0x12345678


def test_a_checkpoint_in_tensorflows_format_reads_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {f"base_model/conv2d_{k}/kernel": rng.standard_normal((3, 3, 2, k + 1)).astype(np.float32)
               for k in range(12)}
    tensors.update({
        "base_model/batch_normalization/moving_variance": rng.random(5).astype(np.float16),
        "global_step": np.array(123456789012, np.int64),
        "base_model/mask": rng.random((2, 3)) > 0.5,
        "head/empty": np.zeros((0, 4), np.float64),
        "labels": rng.integers(0, 255, (4, 4)).astype(np.uint8),
        "_CHECKPOINTABLE_OBJECT_GRAPH": np.array(b"\x0a\x05graph\x00bytes", dtype=object),
        "names": np.array([b"a", b"", b"longer name"], dtype=object),
    })
    blocks = write_checkpoint(tmp_path / "model.ckpt-1", tensors, shards=2, block_bytes=200, restart_every=3)
    assert blocks >= 4  # several data blocks, each with several restart points
    for path in ("model.ckpt-1.index", "model.ckpt-1", "model.ckpt-1.data-00001-of-00002"):
        read = tf_checkpoint.read_checkpoint(tmp_path / path)
        assert list(read) == sorted(tensors)
        for name, array in tensors.items():
            assert read[name].dtype == array.dtype and read[name].shape == array.shape, name
            assert np.array_equal(read[name], array), name
    release = tmp_path / "ResNet50_1x.zip"  # as SimCLR v1's release: a folder with the checkpoint and a hub module
    with zipfile.ZipFile(release, "w") as archive:
        for path in tmp_path.glob("model.ckpt-1.*"):
            archive.write(path, f"ResNet50_1x/{path.name}")
        archive.writestr("ResNet50_1x/hub/variables/variables.index", b"not this one")
    read = tf_checkpoint.read_checkpoint(release)
    assert all(np.array_equal(read[name], array) for name, array in tensors.items())
    assert tf_checkpoint.list_variables(tmp_path / "model.ckpt-1.index")["global_step"] == ("DT_INT64", ())
    kept = tf_checkpoint.read_checkpoint(tmp_path / "model.ckpt-1", keep=lambda name: name.endswith("_7/kernel"))
    assert list(kept) == ["base_model/conv2d_7/kernel"]


def damage(tmp_path, how):
    prefix = tmp_path / "model.ckpt-9"
    write_checkpoint(prefix, {f"v{k}": np.arange(k + 3, dtype=np.float32) for k in range(20)}, block_bytes=80)
    index = (tmp_path / "model.ckpt-9.index").read_bytes()
    data = tmp_path / "model.ckpt-9.data-00000-of-00001"
    if how == "truncated index":
        (tmp_path / "model.ckpt-9.index").write_bytes(index[:len(index) * 2 // 3])
    elif how == "flipped byte":
        (tmp_path / "model.ckpt-9.index").write_bytes(index[:10] + bytes([index[10] ^ 1]) + index[11:])
    elif how == "snappy":  # the first data block marked Snappy-compressed, its checksum made right again
        first = tf_checkpoint.block_entries(tf_checkpoint.read_block(index, *footer_index(index)))[0][1]
        offset, length, _ = tf_checkpoint.block_handle(first, 0)
        crc = tf_checkpoint.mask(tf_checkpoint.crc32c(index[offset:offset + length] + b"\1"))
        index = index[:offset + length] + b"\1" + struct.pack("<I", crc) + index[offset + length + 5:]
        (tmp_path / "model.ckpt-9.index").write_bytes(index)
    elif how == "truncated shard":
        data.write_bytes(data.read_bytes()[:-6])
    elif how == "missing shard":
        data.unlink()
    return prefix


def footer_index(index):
    footer = index[-48:]
    _, _, pos = tf_checkpoint.block_handle(footer, 0)
    return tf_checkpoint.block_handle(footer, pos)[:2]


@pytest.mark.parametrize("how, says", [
    ("truncated index", "does not end in the table magic number \\(truncated"),
    ("flipped byte", "fails its CRC-32C checksum"),
    ("snappy", "Snappy-compressed"),
    ("truncated shard", "v9 lies at bytes .* past its end \\(truncated\\)"),
    ("missing shard", "data shard .*data-00000-of-00001 is missing"),
])
def test_a_damaged_or_unsupported_checkpoint_is_refused_saying_why(tmp_path, how, says):
    prefix = damage(tmp_path, how)
    with pytest.raises(ZooError, match=says):
        tf_checkpoint.read_checkpoint(f"{prefix}.index")


# --- SimCLR ---------------------------------------------------------------------------------------------------

def test_a_simclr_tf1_release_converts_to_the_features_of_its_network(zoo_home, tmp_path, source, scratch):
    """v1's model.ckpt-225206 (in ResNet50_1x.zip) and v2's model.ckpt-250228 share these names."""
    write_checkpoint(tmp_path / "model.ckpt-225206", simclr_tf1(source))
    folder = convert("simclr-v1-r50", tmp_path / "model.ckpt-225206.index")
    assert torch.allclose(features(zoo.load("simclr-v1-r50")), authors_forward(source, same_convs=False), atol=ATOL)
    # SimCLR's networks take RGB in [0, 1]: the checkpoint tells users not to normalise
    data = timm.data.resolve_data_config(model=zoo.load(str(folder)))
    assert tuple(data["mean"]) == (0.0, 0.0, 0.0) and tuple(data["std"]) == (1.0, 1.0, 1.0)


def test_a_simclr_tf2_checkpoint_converts_to_the_features_of_its_network(tmp_path, source, scratch):
    write_checkpoint(tmp_path / "ckpt-10", simclr_tf2(source))
    reader = CONVERTERS["simclrv2"]
    state = reader.to_timm(reader.load(tmp_path / "ckpt-10.index"))
    check_state_dict(scratch.state_dict(), state, "simclr v2 (TF2)")
    assert torch.allclose(features(scratch, state), features(source), atol=1e-5)


def test_simclr_checkpoints_of_other_networks_are_refused_naming_them(tmp_path):
    kernel = np.zeros((1, 1, 4, 4), np.float32)
    sk_tf1 = {"base_model/conv2d/kernel": np.zeros((3, 3, 3, 32), np.float32), "base_model/conv2d_1/kernel": kernel}
    sk_tf2 = {"model/resnet_model/initial_conv_relu_max_pool/0/conv2d/kernel": np.zeros((3, 3, 3, 32), np.float32),
              "model/resnet_model/block_groups/0/layers/0/conv_relu_dropblock_layers/3/conv2d_fixed_padding/conv2d/"
              "kernel": kernel}
    wide = {"base_model/conv2d/kernel": np.zeros((7, 7, 3, 128), np.float32)}
    to_timm = CONVERTERS["simclrv2"].to_timm
    with pytest.raises(ZooError, match="selective-kernel .*base_model/conv2d/kernel is \\[3, 3, 3, 32\\]"):
        to_timm(sk_tf1)
    with pytest.raises(ZooError, match="selective-kernel .*conv_relu_dropblock_layers/3/conv2d_fixed_padding"):
        to_timm(sk_tf2)
    with pytest.raises(ZooError, match="128 output channels: a 2x wide ResNet"):
        to_timm(wide)
    write_checkpoint(tmp_path / "other", {"encoder/kernel": kernel, "global_step": np.array(1, np.int64)})
    with pytest.raises(ZooError, match="no SimCLR base network .*encoder/kernel, global_step"):
        CONVERTERS["simclr"].load(tmp_path / "other.index")
    write_checkpoint(tmp_path / "variables", {"trainable_variables_list/0" + TF2_SUFFIX: kernel})
    with pytest.raises(ZooError, match="variables file of a TF2 SavedModel"):
        CONVERTERS["simclrv2"].load(tmp_path / "variables.index")


# --- BYOL -----------------------------------------------------------------------------------------------------

ExperimentState = collections.namedtuple(
    "_ByolExperimentState", ["online_params", "target_params", "online_state", "target_state", "opt_state"])
ScaleByLarsState = collections.namedtuple("ScaleByLarsState", ["mu"])


class FlatMapping(dict):
    """Pickles as Haiku's FlatMapping does: a call of haiku._src.data_structures.FlatMapping with a dict."""


def _flat_mapping(mapping):
    raise AssertionError("only pickled")


FOREIGN = {  # our object -> the (module, name) the authors' pickle names instead
    _flat_mapping: ("haiku._src.data_structures", "FlatMapping"),
    np.zeros(1).__reduce__()[0]: ("numpy.core.multiarray", "_reconstruct"),  # as numpy 1 wrote it
}


class DillLikePickler(pickle._Pickler):
    """Writes what dill 0.3 with protocol 2 wrote for BYOL: NamedTuple classes as calls of
    dill._dill._create_namedtuple, Haiku mappings as calls of their class, numpy 1's module names."""

    dispatch = {**pickle._Pickler.dispatch, types.FunctionType: lambda self, obj: self.save_global(obj)}

    def reducer_override(self, obj):
        if type(obj) is FlatMapping:
            return _flat_mapping, (dict(obj),)
        return NotImplemented

    def save_global(self, obj, name=None):
        if isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields"):
            self.write(pickle.GLOBAL + b"dill._dill\n_create_namedtuple\n")
            self.save((obj.__name__, obj._fields, "byol.byol_experiment"))
            self.write(pickle.REDUCE)
            self.memoize(obj)
        elif obj in FOREIGN:
            self.write(pickle.GLOBAL + "{}\n{}\n".format(*FOREIGN[obj]).encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def haiku_module(name):
    """The Haiku module (byol/utils/networks.py ResNetTorso, hk.nets.ResNet BlockGroup / BlockV1) of a timm one."""
    if name in ("conv1", "bn1"):
        return "initial_conv" if name == "conv1" else "initial_batchnorm"
    group, index, layer = name.split(".")[:3]
    block = f"block_group_{int(group[-1]) - 1}/~/block_{index}/~/"
    if layer == "downsample":
        return block + ("shortcut_conv" if name.endswith(".0") else "shortcut_batchnorm")
    return block + f"{'conv' if layer.startswith('conv') else 'batchnorm'}_{int(layer[-1]) - 1}"


def haiku_tree(model, encoder="res_net50/~/"):
    """BYOL's online_params and online_state of ``model`` in Haiku's names and shapes."""
    params, bn_state = {}, {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            params[encoder + haiku_module(name)] = FlatMapping(w=module.weight.detach().numpy().transpose(2, 3, 1, 0))
        elif isinstance(module, torch.nn.BatchNorm2d):
            path = encoder + haiku_module(name)
            params[path] = FlatMapping(scale=module.weight.detach().numpy().reshape(1, 1, 1, -1),
                                       offset=module.bias.detach().numpy().reshape(1, 1, 1, -1))
            for ema, stat in (("mean_ema", module.running_mean), ("var_ema", module.running_var)):
                bn_state[f"{path}/~/{ema}"] = FlatMapping(counter=np.array(1000, np.int32),
                                                         hidden=np.zeros(1, np.float32),
                                                         average=stat.numpy().reshape(1, 1, 1, -1))
    assert len(params) == 53 * 2 and len(bn_state) == 53 * 2
    # the heads, dropped by the converter (at a fraction of their size: 2048 -> 4096 -> 256, 256 -> 4096 -> 256)
    params["projector/~/linear"] = FlatMapping(w=np.ones((2048, 8), np.float32), b=np.zeros(8, np.float32))
    params["predictor/~/linear_1"] = FlatMapping(w=np.ones((8, 4), np.float32))
    params["classifier"] = FlatMapping(w=np.zeros((2048, 10), np.float32), b=np.zeros(10, np.float32))
    return FlatMapping(params), FlatMapping(bn_state)


def byol_release(path, model):
    online_params, online_state = haiku_tree(model)
    target = FlatMapping({"res_net50/~/initial_conv": FlatMapping(w=np.zeros((7, 7, 3, 64), np.float32))})
    state = ExperimentState(online_params, target, online_state, FlatMapping(),
                            (ScaleByLarsState(mu=FlatMapping(target)), ()))
    with open(path, "wb") as file:
        DillLikePickler(file, protocol=2).dump(
            {"experiment_state": state, "step": 1000, "rng": np.array([0, 42], np.uint32)})


def test_a_byol_release_converts_to_the_features_of_its_online_network(tmp_path, source, scratch):
    """Through the converter ``zoo convert byol-r50`` uses (the SimCLR test above runs ``convert`` itself)."""
    byol_release(tmp_path / "pretrain_res50x1.pkl", source)
    reader = CONVERTERS["byol"]
    state = reader.to_timm(reader.load(tmp_path / "pretrain_res50x1.pkl"))
    check_state_dict(scratch.state_dict(), state, "byol")
    haiku = timm.create_model(ENTRIES["byol-r50"].arch, num_classes=0).eval()  # what `zoo convert` builds
    assert torch.allclose(features(haiku, state), authors_forward(source, same_convs=True), atol=ATOL)


def test_byol_files_of_other_layouts_or_networks_are_refused_naming_them():
    to_timm = CONVERTERS["byol"].to_timm
    with pytest.raises(ZooError, match="experiment_state holds online_params .*found keys \\['params', 'step'\\]"):
        to_timm({"params": {}, "step": 1})
    deep = {"res_net200/~/initial_conv": {"w": np.zeros((7, 7, 3, 128), np.float32)}}
    with pytest.raises(ZooError, match="encoder res_net200 has 1 convolutions and a stem of 128 channels"):
        to_timm({"online_params": deep, "online_state": {}})


class RunsCommand:
    """Unpickles as a call of ``function(command)``."""

    def __init__(self, function, command):
        self.function, self.command = function, command

    def __reduce__(self):
        return self.function, (self.command,)


@pytest.mark.parametrize("crafted, says", [
    (lambda marker: {"experiment_state": RunsCommand(os.system, f"touch {marker}")},
     "asks for posix.system, which its converter does not allow. Nothing it names was imported or run"),
    (lambda marker: {"w": RunsCommand(eval, f"open('{marker}', 'w')")},
     "asks for builtins.eval, which"),
    (lambda marker: {"w": np.array([1, "x"], dtype=object)}, "weights-only unpickler refused it"),
])
def test_a_pickle_asking_for_anything_else_is_refused_and_runs_nothing(tmp_path, crafted, says):
    marker, src = tmp_path / "ran", tmp_path / "crafted.pkl"
    with open(src, "wb") as file:
        pickle.dump(crafted(marker), file, protocol=2)
    with pytest.raises(ZooError, match=says):
        CONVERTERS["byol"].load(src)
    assert not marker.exists()


def test_other_pickle_protocols_and_truncated_pickles_are_refused(tmp_path):
    src = tmp_path / "release.pkl"
    src.write_bytes(pickle.dumps({"w": np.ones(3, np.float32)}, protocol=4))
    with pytest.raises(ZooError, match="pickle of protocol 4; .* reads protocol 2"):
        haiku_pickle.read(src)
    data = pickle.dumps({"w": np.ones(300, np.float32)}, protocol=2)
    src.write_bytes(data[:len(data) // 2])
    with pytest.raises(ZooError, match="not a readable pickle .*truncated"):
        haiku_pickle.read(src)
    assert haiku_pickle.read(_write(tmp_path / "ok.pkl", data))["w"].sum() == 300


def _write(path, data):
    path.write_bytes(data)
    return path
