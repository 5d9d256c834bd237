"""TFDS builder directories, the files `tfds.builder_from_directory` reads, written and read without TensorFlow.

A builder directory holds dataset_info.json (name, version, description and the splits: each split's
shard lengths and file-name template), features.json (the nested features) and, per split, TFRecord
shards of one tf.train.Example per example (common/tfrecord.py), named by the template, by default
`{name}-{split}.tfrecord-{index:05d}-of-{count:05d}`. An Example holds every tensor of the nested
features under its path joined by "/" (`steps/observation`); the tensors of a sequence (TFDS's
`Dataset`, the RLDS steps, or `Sequence`) are stacked along a first axis of the sequence's length.
Values are flattened in C order; integers and booleans are stored as int64s, floats as float32s,
strings as bytes, and a tensor encoded as "bytes" or "zlib" as its raw (zlib-compressed) bytes.

`write_builder_dir` writes what TFDS 4.9's `store_as_tfds_dataset(..., disable_shuffling=True)` writes:
the same dataset_info.json and features.json byte for byte, the same shard count and file names, and
Examples equal to TFDS's (its protobuf serializer orders the feature map at random; this one sorts
it, as protobuf's deterministic serialization does). `read_examples` reads directories written by
TFDS (features.json in the current or the earlier `{"type", "content"}` form) and by `write_builder_dir`,
every split in the order dataset_info.json lists them, shard by shard, as TFDS reads with
`split="all"`, `shuffle_files=False` and `interleave_cycle_length=1`. Supported features: nested
dicts, tensors and scalars of any fixed shape (one unknown dimension outside sequences) and dtype,
class labels, and one level of sequence; other features (images, text, nested sequences) and other
file formats than TFRecord raise ValueError. The module knows no dataset, episode or environment.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import numpy as np

from common import tfrecord

FEATURES_FILE = "features.json"
INFO_FILE = "dataset_info.json"
DEFAULT_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
# Where TFDS records that its ad-hoc builder (store_as_tfds_dataset) wrote a directory; written as TFDS writes it.
MODULE_NAME = "tensorflow_datasets.core.dataset_builders.adhoc_builder"
DEFAULT_DESCRIPTION = "Dataset built without a DatasetBuilder class."  # what that builder writes when given none
_CLASS = "tensorflow_datasets.core.features."
_FEATURES_DICT = _CLASS + "features_dict.FeaturesDict"
_TENSOR = _CLASS + "tensor_feature.Tensor"
_SCALAR = _CLASS + "scalar.Scalar"
_DATASET = _CLASS + "dataset_feature.Dataset"
_SEQUENCE = _CLASS + "sequence_feature.Sequence"
_ENCODINGS = ("none", "bytes", "zlib")


class Tensor(NamedTuple):
    """A tensor feature: the shape of one value (None: a dimension of any size), its numpy dtype name
    ('bool', 'int64', 'float32', ... or 'string') and its encoding ('none', 'bytes' or 'zlib')."""

    shape: tuple
    dtype: str
    encoding: str = "none"


class Sequence(NamedTuple):
    """A sequence of `feature` (a dict of features, one value per element): TFDS's Dataset (RLDS steps) when
    `dataset`, else its Sequence; `length` None for any length."""

    feature: dict
    length: int | None = None
    dataset: bool = True


# ----------------------------------------------------------------------------------------------
# features.json
# ----------------------------------------------------------------------------------------------


def features_to_json(features: dict) -> dict:
    """The features.json content of a dict of features, as TFDS writes it."""

    def one(feature) -> dict:
        if isinstance(feature, dict):
            return {"featuresDict": {"features": {k: one(v) for k, v in feature.items()}}, "pythonClassName": _FEATURES_DICT}
        if isinstance(feature, Sequence):
            length = "-1" if feature.length is None else str(feature.length)
            return {
                "pythonClassName": _DATASET if feature.dataset else _SEQUENCE,
                "sequence": {"feature": one(feature.feature), "length": length},
            }
        shape = {"dimensions": ["-1" if d is None else str(d) for d in feature.shape]} if feature.shape else {}
        return {
            "pythonClassName": _SCALAR if not feature.shape else _TENSOR,
            "tensor": {"dtype": feature.dtype, "encoding": feature.encoding, "shape": shape},
        }

    return one(features)


def features_from_json(content: dict) -> dict:
    """The dict of features a features.json holds (either form TFDS has written); ValueError on others."""

    def tensor(value: dict) -> Tensor:
        dims = value.get("shape", {})
        dims = dims.get("dimensions", []) if isinstance(dims, dict) else dims
        shape = tuple(None if d is None or int(d) < 0 else int(d) for d in dims)
        encoding = value.get("encoding") or "none"
        if encoding not in _ENCODINGS:
            raise ValueError(f"a tensor of encoding {encoding!r}")
        return Tensor(shape, str(value["dtype"]), encoding)

    def sequence(value: dict, class_name: str) -> Sequence:
        length = value.get("length")
        length = None if length is None or int(length) < 0 else int(length)
        return Sequence(one(value["feature"]), length, class_name.endswith(".Dataset"))

    def one(value: dict):
        if "type" in value:  # the earlier form: {"type": class name, "content": ...}
            class_name, content = value["type"], value["content"]
            if class_name.endswith(".FeaturesDict") and "proto_cls" not in value:  # {name: feature}
                return {k: one(v) for k, v in content.items()}
            return proto(class_name, content)  # a tensor's shape is then a list; the rest reads as in the current form
        class_name = value.get("pythonClassName", "")
        kind = next((k for k in ("featuresDict", "sequence", "tensor", "classLabel") if k in value), None)
        if kind is None:
            raise ValueError(f"a feature of class {class_name or '(unnamed)'}")
        return proto(class_name, value[kind])

    def proto(class_name: str, content: dict):
        if class_name.endswith(".FeaturesDict"):
            return {k: one(v) for k, v in content.get("features", {}).items()}
        if class_name.endswith((".Dataset", ".Sequence")):
            return sequence(content, class_name)
        if class_name.endswith((".Tensor", ".Scalar")):
            return tensor(content)
        if class_name.endswith(".ClassLabel"):
            return Tensor((), "int64")
        raise ValueError(f"a feature of class {class_name}")

    features = one(content)
    if not isinstance(features, dict):
        raise ValueError("the top-level feature is not a dict of features")
    _leaves(features)  # refuses what cannot be read
    return features


def _leaves(features: dict, prefix: str = "", sequence: str = "") -> list[tuple[str, Tensor, str]]:
    """(key in the Example, tensor, key of the sequence it is in or "") of every tensor of `features`, in key order."""
    leaves = []
    for name in sorted(features):
        key, feature = prefix + name, features[name]
        if isinstance(feature, dict):
            leaves += _leaves(feature, key + "/", sequence)
        elif isinstance(feature, Sequence):
            if sequence:
                raise ValueError(f"{key}: a sequence inside a sequence")
            leaves += _leaves(feature.feature, key + "/", key)
        else:
            unknown = [i for i, d in enumerate(feature.shape) if d is None]
            # TFDS parses an unencoded tensor with its first dimension unknown (outside sequences) as a
            # variable-length list; other unknown dimensions need a stored shape, which is not supported here.
            if unknown and (feature.encoding != "none" or sequence or unknown != [0]):
                raise ValueError(f"{key}: a tensor of shape {feature.shape} (encoding {feature.encoding})")
            leaves.append((key, feature, sequence))
    return leaves


# ----------------------------------------------------------------------------------------------
# Examples
# ----------------------------------------------------------------------------------------------


def _is_string(dtype: str) -> bool:
    return dtype in ("string", "str", "object", "bytes")


def encode(features: dict, example: dict) -> bytes:
    """One example (nested as `features`, numpy-convertible values) as a serialized tf.train.Example."""
    encoded = {}
    for key, feature, sequence in _leaves(features):
        in_sequence = bool(sequence)
        value = example
        for part in key.split("/"):
            value = value[part]
        if _is_string(feature.dtype):
            items = [value] if not in_sequence else list(value)
            encoded[key] = tfrecord.bytes_feature(v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in items)
            continue
        array = np.asarray(value, feature.dtype)
        expected = ((array.shape[0],) if in_sequence else ()) + tuple(feature.shape)
        if len(array.shape) != len(expected) or any(e is not None and a != e for a, e in zip(array.shape, expected)):
            raise ValueError(f"{key}: shape {array.shape}, the feature's is {expected}")
        if feature.encoding != "none":
            raw = [a.tobytes() for a in (array if in_sequence else [array])]
            encoded[key] = tfrecord.bytes_feature(zlib.compress(r) if feature.encoding == "zlib" else r for r in raw)
        elif array.dtype.kind == "f":
            encoded[key] = tfrecord.float_feature(array.reshape(-1))
        elif array.dtype.kind in "biu":
            encoded[key] = tfrecord.int64_feature(
                array.reshape(-1).view(np.int64) if array.dtype == np.uint64 else array.reshape(-1)
            )
        else:
            raise ValueError(f"{key}: dtype {array.dtype} cannot be stored in a tf.train.Example")
    return tfrecord.encode_example(encoded)


def decode(features: dict, record: bytes | memoryview) -> dict:
    """A serialized tf.train.Example -> the example nested as `features`: numpy arrays of the features'
    dtypes and shapes (a sequence's tensors stacked along a first axis), lists of bytes for strings."""
    return _decode(_leaves(features), record)


def _decode(leaves: list[tuple[str, Tensor, str]], record: bytes | memoryview) -> dict:
    flat = tfrecord.parse_example(record)
    example: dict[str, Any] = {}
    lengths: dict[str, int] = {}  # elements of each sequence
    for key, feature, sequence in leaves:
        values = flat.get(key)
        if values is None and not sequence:
            raise ValueError(f"the example has no feature {key}")
        value = _decode_tensor(feature, [] if values is None else values, bool(sequence), key)
        if sequence and lengths.setdefault(sequence, len(value)) != len(value):
            raise ValueError(f"{key}: {len(value)} elements, others of {sequence} have {lengths[sequence]}")
        node = example
        *parents, name = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value
    return example


def _decode_tensor(feature: Tensor, values, in_sequence: bool, key: str):
    if _is_string(feature.dtype):
        items = [bytes(v) for v in values]
        if not in_sequence and len(items) != 1:
            raise ValueError(f"{key}: {len(items)} values where one was expected")
        return items if in_sequence else items[0]
    dtype = np.dtype(feature.dtype)
    if feature.encoding != "none":
        if not isinstance(values, list):
            raise ValueError(f"{key}: numbers where encoded bytes were expected")
        raw = [zlib.decompress(v) if feature.encoding == "zlib" else bytes(v) for v in values]
        arrays = [np.frombuffer(r, dtype).reshape(feature.shape) for r in raw]
        if in_sequence:
            return np.stack(arrays) if arrays else np.zeros((0, *feature.shape), dtype)
        if len(arrays) != 1:
            raise ValueError(f"{key}: {len(arrays)} values where one was expected")
        return arrays[0]
    if isinstance(values, list):  # bytes, or an empty Feature
        if values:
            raise ValueError(f"{key}: bytes where numbers were expected")
        values = np.zeros(0, np.int64)
    shape = ((-1,) if in_sequence else ()) + tuple(-1 if d is None else d for d in feature.shape)
    if in_sequence and values.size == 0:
        shape = (0, *feature.shape)
    array = values.reshape(shape)  # ValueError when the count does not fit the shape
    if dtype == np.bool_:
        return array != 0
    if dtype == np.uint64:
        return array.view(np.uint64)
    return array.astype(dtype)


# ----------------------------------------------------------------------------------------------
# Builder directories
# ----------------------------------------------------------------------------------------------


def num_shards(total_size: int, num_examples: int) -> int:
    """How many shards TFDS writes `num_examples` serialized examples of `total_size` bytes into: the largest
    power of two from 2 to 512 that keeps shards between 64 MiB and 1 GiB (counting 16 bytes of framing per
    record), 1024 (or the smallest multiple that keeps shards under 1 GiB) for larger data, never more shards
    than examples; else one. (Over 1 TiB in fewer examples than that multiple, TFDS's own count does not
    terminate; one shard here.)"""
    total = total_size + 16 * num_examples
    most, least = total // (64 << 20), total // (1024 << 20)
    if least <= 1024 <= most and num_examples >= 1024:
        return 1024
    if least > 1024:
        count = 2048
        while count < least:
            count += 1024
        return count if num_examples >= count else 1
    return next((n for n in (512, 256, 128, 64, 32, 16, 8, 4, 2) if least <= n <= most and num_examples >= n), 1)


def shard_boundaries(num_examples: int, count: int) -> list[int]:
    """The end (exclusive) of each of `count` shards of `num_examples`, as TFDS splits them."""
    return [round(num_examples * index / count) for index in range(1, count + 1)]


def shard_name(template: str, dataset: str, split: str, file_format: str, index: int, count: int) -> str:
    """A shard's file name from a TFDS file-name template ({DATASET}, {SPLIT}, {FILEFORMAT}, {SHARD_INDEX},
    {NUM_SHARDS}, {SHARD_X_OF_Y}); shard numbers take at least 5 digits."""
    digits = max(len(str(count)), 5)
    x, y = f"{index:0{digits}d}", f"{count:0{digits}d}"
    return template.format(
        DATASET=dataset, SPLIT=split, FILEFORMAT=file_format, SHARD_INDEX=x, NUM_SHARDS=y, SHARD_X_OF_Y=f"{x}-of-{y}"
    )


def write_builder_dir(
    path: str | os.PathLike,
    name: str,
    version: str,
    features: dict,
    splits: dict[str, Iterable[dict]],
    description: str = DEFAULT_DESCRIPTION,
) -> None:
    """Write the examples of every split (in order) as a TFDS builder directory at `path` (created; its
    files are replaced). Each split's examples are serialized in memory, then written to its shards."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    split_infos = []
    for split, examples in splits.items():
        records = [encode(features, example) for example in examples]
        if not records:
            raise ValueError(f"split {split!r} has no examples")
        size = sum(len(r) for r in records)
        count = num_shards(size, len(records))
        bounds = [0, *shard_boundaries(len(records), count)]
        for index in range(count):
            shard = records[bounds[index] : bounds[index + 1]]
            tfrecord.write_tfrecord(path / shard_name(DEFAULT_TEMPLATE, name, split, "tfrecord", index, count), shard)
        lengths = [str(b - a) for a, b in zip(bounds[:-1], bounds[1:])]
        split_infos.append(
            {"filepathTemplate": DEFAULT_TEMPLATE, "name": split, "numBytes": str(size), "shardLengths": lengths}
        )
    info = {
        "description": description,
        "disableShuffling": True,
        "fileFormat": "tfrecord",
        "moduleName": MODULE_NAME,
        "name": name,
        "splits": split_infos,
        "version": version,
    }
    if not description:
        del info["description"]  # protobuf's JSON leaves out empty fields
    (path / FEATURES_FILE).write_text(json.dumps(features_to_json(features), indent=4, sort_keys=True))
    (path / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True))


def read_info(path: str | os.PathLike) -> dict:
    """dataset_info.json of the builder directory `path`."""
    return json.loads((Path(path) / INFO_FILE).read_text())


def read_features(path: str | os.PathLike, info: dict | None = None) -> dict:
    """The features of the builder directory `path` (features.json, else the copy in dataset_info.json)."""
    path = Path(path)
    if (path / FEATURES_FILE).is_file():
        return features_from_json(json.loads((path / FEATURES_FILE).read_text()))
    info = read_info(path) if info is None else info
    if "features" not in info:
        raise ValueError(f"no {FEATURES_FILE} and no features in {INFO_FILE}")
    return features_from_json(info["features"])


def shard_files(path: str | os.PathLike, info: dict | None = None) -> list[tuple[Path, int]]:
    """(file, examples it holds) of every shard of every split, in the order TFDS reads split="all"."""
    path = Path(path)
    info = read_info(path) if info is None else info
    file_format = info.get("fileFormat") or "tfrecord"
    if file_format != "tfrecord":
        raise ValueError(f"the shards are {file_format} files; only tfrecord files can be read")
    shards = []
    for split in info.get("splits", []):
        lengths = [int(n) for n in split.get("shardLengths", [])]
        template = split.get("filepathTemplate") or DEFAULT_TEMPLATE
        for index, length in enumerate(lengths):
            name = shard_name(template, info["name"], split["name"], file_format, index, len(lengths))
            shards.append((path / name, length))
    return shards


def num_examples(path: str | os.PathLike, info: dict | None = None) -> int:
    """The examples of every split, as dataset_info.json counts them."""
    return sum(length for _, length in shard_files(path, info))


def read_examples(path: str | os.PathLike) -> Iterator[dict]:
    """Every example of the builder directory `path` (see `decode`), split by split, shard by shard, in
    stored order. Raises ValueError on what cannot be read (with the file), OSError on a missing shard."""
    info = read_info(path)
    leaves = _leaves(read_features(path, info))
    for file, length in shard_files(path, info):
        count = 0
        try:
            for record in tfrecord.read_tfrecord(file.read_bytes()):
                try:
                    example = _decode(leaves, record)
                except (ValueError, zlib.error) as error:
                    raise ValueError(f"record {count}: {error}") from None
                count += 1
                yield example
        except (ValueError, zlib.error) as error:
            raise ValueError(f"{file.name}: {error}") from None
        if count != length:
            raise ValueError(f"{file.name} holds {count} examples, {INFO_FILE} says {length}")
