"""Reading TensorFlow checkpoints (the V2 "tensor bundle" format) without TensorFlow.

A checkpoint ``PREFIX`` is two kinds of file, written by TensorFlow's BundleWriter
(tensorflow/core/util/tensor_bundle/tensor_bundle.cc):

- ``PREFIX.index``: a LevelDB-style sorted table (tensorflow/core/lib/io/table_format.txt, format.cc,
  block.cc) mapping each variable's name to a ``BundleEntryProto`` (tensor_bundle.proto): its dtype,
  shape, data shard, offset and size. The entry under the empty name is the ``BundleHeaderProto``.
- ``PREFIX.data-0000K-of-0000N``: the shards, raw little-endian tensor bytes at the entries' offsets.

The table is a run of blocks, then a 48-byte footer: the metaindex block's handle, the index block's
handle (two varints each, padded to 40 bytes) and a magic number. The index block maps the last key of
each data block to that block's handle. A block holds entries (varint shared key length, varint
unshared length, varint value length, unshared key bytes, value) whose keys share a prefix with the
previous key except at restart points, whose offsets are listed (fixed32 each, then their count) at the
block's end. Each block is followed by a compression-type byte and a masked CRC-32C of block and type.

TensorFlow 1 checkpoints (``model.ckpt-N``) name variables by their graph names (``base_model/conv2d/kernel``);
TensorFlow 2 object-based ones (``ckpt-N``) by object paths ending in ``/.ATTRIBUTES/VARIABLE_VALUE``.
Both are this format. Not supported, each refused with an error naming it: Snappy-compressed index
blocks, big-endian bundles, partitioned (sliced) variables, and the resource, variant and quantized dtypes.
Tensor bytes are not checksummed (a CRC-32C over hundreds of megabytes is too slow in Python); their
offsets and sizes are checked against the shard files, and the index's blocks against their checksums.
"""
from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from .registry import ZooError

MAGIC = 0xDB4775248B80FB57  # tensorflow/core/lib/io/format.h, kTableMagicNumber
FOOTER_SIZE = 48  # two block handles of at most 20 bytes each, padding, the 8-byte magic
BLOCK_TRAILER = 5  # compression type (1 byte) + masked CRC-32C (4 bytes)
BUNDLE_VERSION = 1  # tensor_bundle.cc, kTensorBundleVersion: the newest format this reader knows
DATA_SHARD = "{prefix}.data-{shard:05d}-of-{shards:05d}"
DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")

# tensorflow/core/framework/types.proto: DataType -> numpy dtype (None: refused)
DTYPES = {
    1: ("DT_FLOAT", np.float32), 2: ("DT_DOUBLE", np.float64), 3: ("DT_INT32", np.int32),
    4: ("DT_UINT8", np.uint8), 5: ("DT_INT16", np.int16), 6: ("DT_INT8", np.int8),
    7: ("DT_STRING", object), 8: ("DT_COMPLEX64", np.complex64), 9: ("DT_INT64", np.int64),
    10: ("DT_BOOL", np.bool_), 11: ("DT_QINT8", None), 12: ("DT_QUINT8", None), 13: ("DT_QINT32", None),
    14: ("DT_BFLOAT16", np.uint16), 15: ("DT_QINT16", None), 16: ("DT_QUINT16", None),
    17: ("DT_UINT16", np.uint16), 18: ("DT_COMPLEX128", np.complex128), 19: ("DT_HALF", np.float16),
    20: ("DT_RESOURCE", None), 21: ("DT_VARIANT", None), 22: ("DT_UINT32", np.uint32), 23: ("DT_UINT64", np.uint64),
}
DT_STRING, DT_BFLOAT16 = 7, 14


def dtype_name(dtype: int) -> str:
    return DTYPES[dtype][0] if dtype in DTYPES else f"DataType {dtype}"


# --- CRC-32C (Castagnoli), as LevelDB masks it -------------------------------------------------------------

def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (a previous result)."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    """LevelDB stores checksums rotated and offset, so that a CRC of data holding CRCs stays meaningful."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rotated = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


# --- varints and the few protobuf messages the index holds --------------------------------------------------

class Corrupt(ValueError):
    """The index or a shard is not what the format says; read_checkpoint turns it into a ZooError."""


class Unsupported(Corrupt):
    """A valid checkpoint using a feature of the format this reader does not implement."""


def varint(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` (7 bits a byte, low first, high bit = more) and the position after it."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise Corrupt("a varint runs past the end of its data")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise Corrupt("a varint is longer than 10 bytes")


def proto_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of a protobuf message: varints and fixed ints as ints,
    length-delimited fields as bytes. Enough for the messages of tensor_bundle.proto."""
    fields, pos = [], 0
    while pos < len(data):
        key, pos = varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(data, pos)
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if pos + size > len(data):
                raise Corrupt("a fixed-width protobuf field runs past its message")
            value, pos = int.from_bytes(data[pos:pos + size], "little"), pos + size
        elif wire == 2:
            size, pos = varint(data, pos)
            if pos + size > len(data):
                raise Corrupt("a length-delimited protobuf field runs past its message")
            value, pos = data[pos:pos + size], pos + size
        else:
            raise Corrupt(f"protobuf wire type {wire} (groups) is not used by tensor bundles")
        fields.append((number, value))
    return fields


def signed64(value: int) -> int:
    """An int64 protobuf field is sent as its two's complement: -1 is a 10-byte varint."""
    return value - (1 << 64) if value >= 1 << 63 else value


def parse_entry(data: bytes) -> dict:
    """A BundleEntryProto: dtype = 1, shape = 2 (TensorShapeProto: dim = 2 of Dim {size = 1}, unknown_rank = 3),
    shard_id = 3, offset = 4, size = 5, crc32c = 6, slices = 7."""
    entry = {"dtype": 0, "shape": [], "shard_id": 0, "offset": 0, "size": 0, "slices": 0, "unknown_rank": False}
    for number, value in proto_fields(data):
        if number == 1:
            entry["dtype"] = value
        elif number == 2:
            for dim_number, dim in proto_fields(value):
                if dim_number == 2:
                    entry["shape"].append(signed64(dict(proto_fields(dim)).get(1, 0)))
                elif dim_number == 3:
                    entry["unknown_rank"] = bool(dim)
        elif number in (3, 4, 5):
            entry[{3: "shard_id", 4: "offset", 5: "size"}[number]] = value
        elif number == 7:
            entry["slices"] += 1
    return entry


def parse_header(data: bytes) -> dict:
    """A BundleHeaderProto: num_shards = 1, endianness = 2 (0 little, 1 big), version = 3 (VersionDef:
    producer = 1, min_consumer = 2)."""
    fields = proto_fields(data)
    header = {"num_shards": 0, "endianness": 0, "min_consumer": 0}
    for number, value in fields:
        if number == 1:
            header["num_shards"] = value
        elif number == 2:
            header["endianness"] = value
        elif number == 3:
            header["min_consumer"] = dict(proto_fields(value)).get(2, 0)
    return header


# --- the table ---------------------------------------------------------------------------------------------

def block_handle(data: bytes, pos: int) -> tuple[int, int, int]:
    """A BlockHandle (varint offset, varint size) at ``pos``: offset, size and the position after it."""
    offset, pos = varint(data, pos)
    size, pos = varint(data, pos)
    return offset, size, pos


def read_block(table: bytes, offset: int, size: int) -> bytes:
    """The contents of the block at ``offset``, its trailer's checksum verified."""
    end = offset + size + BLOCK_TRAILER
    if end > len(table) - FOOTER_SIZE:
        raise Corrupt(f"a block at bytes {offset}-{end} runs past the end of the table")
    kind = table[offset + size]
    stored = struct.unpack_from("<I", table, offset + size + 1)[0]
    if crc32c(table[offset:offset + size + 1]) != unmask(stored):
        raise Corrupt(f"the block at byte {offset} fails its CRC-32C checksum")
    if kind == 1:
        raise Unsupported("its index blocks are Snappy-compressed (TensorFlow writes checkpoint indexes "
                          "uncompressed)")
    if kind != 0:
        raise Unsupported(f"a block has unknown compression type {kind}")
    return table[offset:offset + size]


def block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of a block, keys rebuilt from their shared prefixes; every restart point
    must be the start of an entry that shares nothing with the previous key."""
    if len(block) < 4:
        raise Corrupt("a block is shorter than its restart count")
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 * (restarts + 1)
    if restarts == 0 or limit < 0:
        raise Corrupt(f"a block of {len(block)} bytes cannot hold {restarts} restart points")
    points = set(struct.unpack_from(f"<{restarts}I", block, limit))
    entries, fresh, key, pos = [], set(), b"", 0
    while pos < limit:
        start = pos
        shared, pos = varint(block, pos)
        unshared, pos = varint(block, pos)
        length, pos = varint(block, pos)
        if shared > len(key) or pos + unshared + length > limit:
            raise Corrupt(f"the entry at byte {start} of a block is malformed")
        if shared == 0:
            fresh.add(start)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + length]))
        pos += length
    if not points <= fresh:
        raise Corrupt("a block's restart points do not fall on entries with whole keys")
    return entries


def read_table(table: bytes) -> dict[bytes, bytes]:
    """Every (key, value) of an SSTable given as bytes, in key order."""
    if len(table) < FOOTER_SIZE:
        raise Corrupt(f"it is {len(table)} bytes, shorter than the {FOOTER_SIZE}-byte footer (truncated)")
    footer = table[-FOOTER_SIZE:]
    if int.from_bytes(footer[-8:], "little") != MAGIC:
        raise Corrupt("it does not end in the table magic number (truncated, or not a checkpoint index)")
    _, _, pos = block_handle(footer, 0)  # the metaindex block: filters, which bundles never have
    index_offset, index_size, _ = block_handle(footer, pos)
    out: dict[bytes, bytes] = {}
    for _, handle in block_entries(read_block(table, index_offset, index_size)):
        offset, size, _ = block_handle(handle, 0)
        for key, value in block_entries(read_block(table, offset, size)):
            if out and key <= next(reversed(out)):
                raise Corrupt(f"its keys are out of order at {key[:80]!r}")
            out[key] = value
    return out


# --- the files of a checkpoint -------------------------------------------------------------------------------

class Files:
    """Where a checkpoint's ``.index`` and ``.data-*`` files are: next to each other on disk, or in a zip
    (SimCLR v1's ``ResNet50_1x.zip``)."""

    def __init__(self, path: Path):
        path = Path(path)
        own_file = path.name.endswith(".index") or DATA_SUFFIX.search(path.name)
        self.zip = zipfile.ZipFile(path) if not own_file and path.is_file() and zipfile.is_zipfile(path) else None
        if self.zip:  # a hub module's variables/variables.index beside the checkpoint is not the checkpoint
            names = [n for n in self.zip.namelist() if n.endswith(".index") and not n.endswith("variables.index")]
            if len(names) != 1:
                self.zip.close()
                raise ZooError(f"{path} holds {len(names)} TensorFlow checkpoints ({', '.join(names[:6]) or 'none'})"
                               ", not one. Fix: extract the one to convert and pass its .index file.")
            self.prefix = names[0][:-len(".index")]
        else:
            text = DATA_SUFFIX.sub("", str(path))
            self.prefix = text[:-len(".index")] if text.endswith(".index") else text
            if not Path(self.prefix + ".index").is_file():
                raise ZooError(f"{self.prefix}.index does not exist. Fix: pass a TensorFlow checkpoint's .index "
                               "file (its .data-* shards beside it) or the checkpoint prefix.")
        self.where = f"{path}:{self.prefix}" if self.zip else self.prefix

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.zip:
            self.zip.close()

    def index(self) -> bytes:
        if self.zip:
            return self.zip.read(self.prefix + ".index")
        return Path(self.prefix + ".index").read_bytes()

    def shard(self, shard: int, shards: int):
        name = DATA_SHARD.format(prefix=self.prefix, shard=shard, shards=shards)
        try:
            return self.zip.open(name) if self.zip else open(name, "rb")
        except (KeyError, FileNotFoundError):
            raise ZooError(f"{self.where}: its data shard {name} is missing. Fix: download every "
                           ".data-* file of the checkpoint next to its .index file.") from None


def _tensor(entry: dict, data: bytes, name: str) -> np.ndarray:
    """The array an entry's bytes hold."""
    shape, dtype = tuple(entry["shape"]), entry["dtype"]
    count = int(np.prod(shape, dtype=np.int64))
    if dtype == DT_STRING:  # varint lengths, a masked CRC-32C of them (as uint32s), then the bytes
        lengths, pos = [], 0
        for _ in range(count):
            length, pos = varint(data, pos)
            lengths.append(length)
        checksum = crc32c(b"".join(struct.pack("<I" if n < 1 << 32 else "<Q", n) for n in lengths))
        if pos + 4 > len(data) or unmask(struct.unpack_from("<I", data, pos)[0]) != checksum:
            raise Corrupt(f"the string lengths of {name} fail their checksum")
        strings, pos = np.empty(count, dtype=object), pos + 4
        for i, length in enumerate(lengths):
            strings[i], pos = data[pos:pos + length], pos + length
        if pos != len(data):
            raise Corrupt(f"the strings of {name} do not fill its {len(data)} bytes")
        return strings.reshape(shape)
    numpy_dtype = np.dtype(DTYPES[dtype][1]).newbyteorder("<")
    if len(data) != count * numpy_dtype.itemsize:
        raise Corrupt(f"{name} is {len(data)} bytes, not the {count * numpy_dtype.itemsize} its shape "
                      f"{list(shape)} and {DTYPES[dtype][0]} need")
    array = np.frombuffer(data, numpy_dtype).reshape(shape).astype(numpy_dtype.newbyteorder("="))  # a copy
    if dtype == DT_BFLOAT16:  # the high half of a float32: widened exactly
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _index(files: Files) -> tuple[dict, dict[str, dict]]:
    """The header and {variable name: entry} of a checkpoint's index."""
    table = read_table(files.index())
    if b"" not in table:
        raise Corrupt("it has no header entry")
    header = parse_header(table.pop(b""))
    if header["min_consumer"] > BUNDLE_VERSION:
        raise Unsupported(f"it needs a reader of bundle version {header['min_consumer']}; this one reads "
                          f"version {BUNDLE_VERSION}")
    if header["endianness"] != 0:
        raise Unsupported("it is a big-endian bundle")
    return header, {key.decode("utf-8", "replace"): parse_entry(value) for key, value in table.items()}


def _check(name: str, entry: dict, header: dict) -> None:
    if entry["slices"]:
        raise Unsupported(f"{name} is a partitioned variable ({entry['slices']} slices)")
    if entry["dtype"] not in DTYPES or DTYPES[entry["dtype"]][1] is None:
        raise Unsupported(f"{name} has dtype {dtype_name(entry['dtype'])}")
    if entry["unknown_rank"] or any(d < 0 for d in entry["shape"]):
        raise Corrupt(f"{name} has an undefined shape {entry['shape']}")
    if not 0 <= entry["shard_id"] < max(header["num_shards"], 1):
        raise Corrupt(f"{name} is in shard {entry['shard_id']} of {header['num_shards']}")


def _refusal(files: Files, error: Corrupt) -> ZooError:
    fix = ("Fix: re-save it with TensorFlow without that feature." if isinstance(error, Unsupported) else
           "Fix: download the checkpoint's .index and .data-* files again.")
    return ZooError(f"{files.where} is not a readable TensorFlow checkpoint: {error}. {fix}")


def list_variables(path: Path | str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{variable name: (dtype, shape)} of a TensorFlow checkpoint, read from its index only."""
    with Files(Path(path)) as files:
        try:
            _, entries = _index(files)
        except Corrupt as error:
            raise _refusal(files, error) from None
    return {name: (dtype_name(e["dtype"]), tuple(e["shape"]))
            for name, e in entries.items()}


def read_checkpoint(path: Path | str, keep: Callable[[str], bool] | None = None) -> dict[str, np.ndarray]:
    """{variable name: numpy array} of a TensorFlow checkpoint.

    ``path`` is its ``.index`` file, one of its ``.data-*`` shards, its prefix (``model.ckpt-250228``) or a
    zip holding one checkpoint. ``keep(name)`` chooses the variables to read (default: all); bfloat16 is
    widened to float32, strings are object arrays of bytes. A damaged or unsupported file raises a ZooError
    that says which and why."""
    with Files(Path(path)) as files:
        try:
            header, entries = _index(files)
            entries = {name: entry for name, entry in entries.items() if keep is None or keep(name)}
            for name, entry in entries.items():
                _check(name, entry, header)
            out = {}
            for shard in sorted({e["shard_id"] for e in entries.values()}):
                with files.shard(shard, header["num_shards"]) as file:
                    # in offset order: a zip member (and a disk file) is then read forwards only
                    for name, entry in sorted(((n, e) for n, e in entries.items() if e["shard_id"] == shard),
                                              key=lambda item: item[1]["offset"]):
                        file.seek(entry["offset"])
                        data = file.read(entry["size"])
                        if len(data) != entry["size"]:
                            raise Corrupt(f"{name} lies at bytes {entry['offset']}-{entry['offset'] + entry['size']} "
                                          f"of shard {shard}, past its end (truncated)")
                        out[name] = _tensor(entry, data, name)
            return {name: out[name] for name in entries}
        except Corrupt as error:
            raise _refusal(files, error) from None
