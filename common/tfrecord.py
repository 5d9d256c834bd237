"""TFRecord files of tf.train.Example protos, written and read without TensorFlow.

A TFRecord file is a sequence of records, each framed as: its length (uint64, little-endian), the
masked CRC32C of those 8 bytes (uint32), the payload, the masked CRC32C of the payload (uint32). A
tf.train.Example is a protobuf message `Features features = 1`, where Features is a
`map<string, Feature> feature = 1` and a Feature is one of `BytesList bytes_list = 1`,
`FloatList float_list = 2` (float32) or `Int64List int64_list = 3`, each a `repeated value = 1`
(packed for floats and int64s). The encoder here writes what protobuf's deterministic serialization
writes (map entries in key order, packed lists), so TFDS and TensorFlow read the records unchanged;
the decoder also takes unpacked lists and entries in any order, as protobuf readers must. Both the
RL Unplugged Atari shards (common/atari/shards.py, common/atari/fixture.py) and the BSuite TFDS
directories (common/bsuite/tfds_files.py) use it. The module knows no dataset, feature layout or episode.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import google_crc32c
import numpy as np

# ----------------------------------------------------------------------------------------------
# Record framing
# ----------------------------------------------------------------------------------------------


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of TFRecord framing (C implementation, several GB/s)."""
    return google_crc32c.value(bytes(data))


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 bits, add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record with its TFRecord framing (length, its CRC, the payload, its CRC)."""
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", masked_crc32c(length)) + record + struct.pack("<I", masked_crc32c(record))


def write_tfrecord(path: str | os.PathLike, records: Iterable[bytes]) -> None:
    """An uncompressed TFRecord file (written to a temporary name, then moved into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    with open(partial, "wb") as out:
        for record in records:
            out.write(frame(record))
    os.replace(partial, path)


def write_tfrecord_gzip(path: str | os.PathLike, records: Iterable[bytes]) -> None:
    """A GZIP-compressed TFRecord file (written to a temporary name, then moved into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    with open(partial, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
        for record in records:
            out.write(frame(record))
    os.replace(partial, path)


def read_tfrecord(data: bytes | memoryview) -> Iterator[memoryview]:
    """The records of an uncompressed TFRecord file's bytes, each checked against its length and payload
    CRC32C (memoryviews into `data`). Raises ValueError naming the record on a failed check or a
    truncated file."""
    data = memoryview(data)
    pos, index = 0, 0
    while pos < len(data):
        if len(data) - pos < 12:
            raise ValueError(f"record {index}: the file ends inside its length")
        (length,) = struct.unpack_from("<Q", data, pos)
        (length_crc,) = struct.unpack_from("<I", data, pos + 8)
        if masked_crc32c(data[pos : pos + 8]) != length_crc:
            raise ValueError(f"record {index}: its length fails its CRC32C check")
        if len(data) - pos < 12 + length + 4:
            raise ValueError(f"record {index}: the file ends inside the record")
        record = data[pos + 12 : pos + 12 + length]
        (payload_crc,) = struct.unpack_from("<I", data, pos + 12 + length)
        if masked_crc32c(record) != payload_crc:
            raise ValueError(f"record {index}: its payload fails its CRC32C check")
        yield record
        pos += 12 + length + 4
        index += 1


# ----------------------------------------------------------------------------------------------
# Encoding tf.train.Example
# ----------------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varints(values: np.ndarray) -> bytes:
    """int64 values as concatenated protobuf varints (vectorised; negatives take 10 bytes)."""
    v = np.ascontiguousarray(values, np.int64).reshape(-1).view(np.uint64)
    if v.size == 0 or v.max() < 0x80:
        return v.astype(np.uint8).tobytes()
    sizes = np.ones(v.size, np.int64)  # bytes per value: 1 + the number of 7-bit groups above the first
    for k in range(1, 10):
        sizes += v >= np.uint64(1 << (7 * k))
    starts = np.cumsum(sizes) - sizes
    out = np.zeros(int(sizes.sum()), np.uint8)
    for k in range(int(sizes.max())):
        sel = sizes > k
        group = (v[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (sizes[sel] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + k] = (group | more).astype(np.uint8)
    return out.tobytes()


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def bytes_feature(values: Iterable[bytes]) -> bytes:
    """A tf.train.Feature holding a BytesList."""
    return _length_delimited(1, b"".join(_length_delimited(1, bytes(v)) for v in values))


def float_feature(values: Sequence[float] | np.ndarray) -> bytes:
    """A tf.train.Feature holding a (packed) FloatList; values are stored as float32."""
    packed = np.asarray(values, "<f4").tobytes()
    return _length_delimited(2, _length_delimited(1, packed) if packed else b"")


def int64_feature(values: Sequence[int] | np.ndarray) -> bytes:
    """A tf.train.Feature holding a (packed) Int64List."""
    packed = _varints(np.asarray(values, np.int64))
    return _length_delimited(3, _length_delimited(1, packed) if packed else b"")


def encode_example(features: dict[str, bytes]) -> bytes:
    """A serialized tf.train.Example from {name: encoded Feature} (map entries in name order)."""
    entries = b"".join(
        _length_delimited(1, _length_delimited(1, name.encode("utf-8")) + _length_delimited(2, feature))
        for name, feature in sorted(features.items())
    )
    return _length_delimited(1, entries)


# ----------------------------------------------------------------------------------------------
# Decoding tf.train.Example
# ----------------------------------------------------------------------------------------------


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of every field of one protobuf message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("a field runs past the end of its message")
        yield field, wire, value


def _packed_varints(buf: memoryview) -> np.ndarray:
    """A packed repeated int64 field -> int64 array (vectorised; two's complement for negatives)."""
    raw = np.frombuffer(buf, np.uint8)
    if raw.size == 0 or raw.max() < 0x80:
        return raw.astype(np.int64)
    ends = np.flatnonzero(raw < 0x80)
    if ends.size == 0 or ends[-1] != raw.size - 1:
        raise ValueError("truncated packed varints")
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise ValueError("varint longer than 10 bytes")
    values = np.zeros(ends.size, np.uint64)
    for k in range(int(lengths.max())):
        sel = lengths > k
        values[sel] |= (raw[starts[sel] + k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
    return values.view(np.int64)


def _feature_values(feature: memoryview) -> list | np.ndarray:
    """One tf.train.Feature: a list of byte strings, a float32 array or an int64 array."""
    kind, parts = None, []
    for field, wire, value in _fields(feature):
        if field not in (1, 2, 3) or wire != 2:
            continue
        kind = field
        for inner, inner_wire, item in _fields(value):
            if inner != 1:
                continue
            if field == 1 and inner_wire == 2:  # BytesList
                parts.append(item)
            elif field == 2 and inner_wire == 2:  # FloatList, packed
                if len(item) % 4:
                    raise ValueError("packed floats of a length not a multiple of 4")
                parts.append(np.frombuffer(item, "<f4"))
            elif field == 2 and inner_wire == 5:
                parts.append(np.frombuffer(item, "<f4"))
            elif field == 3 and inner_wire == 2:  # Int64List, packed
                parts.append(_packed_varints(item))
            elif field == 3 and inner_wire == 0:
                parts.append(np.asarray([item], np.uint64).view(np.int64))
            else:
                raise ValueError(f"wire type {inner_wire} in a feature list")
    if kind == 1 or kind is None:
        return parts
    dtype = np.float32 if kind == 2 else np.int64
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def parse_example(record: bytes | memoryview) -> dict[str, list | np.ndarray]:
    """A serialized tf.train.Example -> {feature name: list of bytes | float32 array | int64 array}.

    Byte strings are memoryviews into `record` (no copies). Raises ValueError on malformed input.
    """
    features: dict[str, list | np.ndarray] = {}
    for field, wire, value in _fields(memoryview(record)):
        if field != 1 or wire != 2:
            continue
        for entry_field, entry_wire, entry in _fields(value):
            if entry_field != 1 or entry_wire != 2:
                continue
            name, feature = None, memoryview(b"")
            for part, part_wire, part_value in _fields(entry):
                if part == 1 and part_wire == 2:
                    name = bytes(part_value).decode("utf-8")
                elif part == 2 and part_wire == 2:
                    feature = part_value
            if name is None:
                raise ValueError("a feature without a name")
            features[name] = _feature_values(feature)
    return features
