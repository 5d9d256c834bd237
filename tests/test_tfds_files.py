"""TFDS builder directories and TFRecord files without TensorFlow (common/bsuite/tfds_files.py, common/tfrecord.py),
checked against TFDS itself where it is installed (requirements-dev.txt): what TFDS writes, the project reads,
and what the project writes, TFDS reads and would have written byte for byte."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import tfrecord
from common.bsuite import tfds_files
from common.bsuite.tfds_files import Sequence, Tensor

# A small RLDS dataset TFDS 4.9.10 wrote (`_write_with_tfds(root, "other_rlds", OTHER_RLDS_FEATURES, {"train":
# other_rlds_examples()})`, checked below where TFDS is installed): steps without discount or is_terminal, a
# zlib-compressed observation and float64 rewards, as data recorded by other tools may have them.
OTHER_RLDS = Path(__file__).parent / "data" / "other_rlds" / "1.0.0"
OTHER_RLDS_FEATURES = {
    "steps": Sequence(
        {
            "observation": Tensor((1, 3), "float32", "zlib"),
            "action": Tensor((), "int64"),
            "reward": Tensor((), "float64"),
            "is_first": Tensor((), "bool"),
            "is_last": Tensor((), "bool"),
        }
    )
}
# Every dtype and kind of feature the module writes, for the comparisons with TFDS.
MIXED_FEATURES = {
    "episode_id": Tensor((), "int64"),
    "label": Tensor((), "uint8"),
    "meta": {"seed": Tensor((), "int32"), "name": Tensor((), "string"), "weights": Tensor((None,), "float32")},
    "steps": Sequence(
        {
            "observation": Tensor((2, 3), "float32"),
            "pixels": Tensor((2, 2), "uint8", "zlib"),
            "raw": Tensor((2,), "int16", "bytes"),
            "action": Tensor((), "int64"),
            "reward": Tensor((), "float64"),
            "flags": Tensor((3,), "bool"),
            "big": Tensor((), "uint64"),
        }
    ),
}


def other_rlds_examples() -> list[dict]:
    """Two episodes of 3 and 5 steps; the last step is not padded."""
    examples = []
    for index, length in enumerate((3, 5)):
        steps = {
            "observation": np.arange(length * 3, dtype=np.float32).reshape(length, 1, 3) + 100 * index,
            "action": np.full(length, 2, np.int64),
            "reward": np.full(length, -1.0, np.float64),
            "is_first": np.arange(length) == 0,
            "is_last": np.arange(length) == length - 1,
        }
        examples.append({"steps": steps})
    return examples


def mixed_examples(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    examples = []
    for index in range(count):
        length = int(rng.integers(0, 6))  # an empty sequence too
        examples.append(
            {
                "episode_id": index - 2,  # negative int64s take ten-byte varints
                "label": np.uint8(rng.integers(0, 256)),
                "meta": {
                    "seed": np.int32(rng.integers(-(2**31), 2**31)),
                    "name": f"episode {index}",
                    "weights": rng.standard_normal(int(rng.integers(0, 4))).astype(np.float32),
                },
                "steps": {
                    "observation": rng.standard_normal((length, 2, 3)).astype(np.float32),
                    "pixels": rng.integers(0, 256, (length, 2, 2)).astype(np.uint8),
                    "raw": rng.integers(-(2**15), 2**15, (length, 2)).astype(np.int16),
                    "action": rng.integers(-(2**62), 2**62, length).astype(np.int64),
                    "reward": rng.standard_normal(length).astype(np.float32).astype(np.float64),  # exact in float32
                    "flags": rng.random((length, 3)) < 0.5,
                    "big": rng.integers(0, 2**63, length).astype(np.uint64) * np.uint64(2),
                },
            }
        )
    return examples


def assert_same(got, expected, where="example"):
    """Nested dicts of arrays (or bytes) equal in structure, dtype, shape and value."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), (where, got.keys(), expected.keys())
        for key in expected:
            assert_same(got[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, (str, bytes)):
        assert got == (expected.encode() if isinstance(expected, str) else expected), where
    else:
        expected = np.asarray(expected)
        got = np.asarray(got)
        assert got.dtype == expected.dtype and got.shape == expected.shape, (where, got.dtype, got.shape, expected.dtype)
        np.testing.assert_array_equal(got, expected, err_msg=where)


# ----------------------------------------------------------------------------------------------
# TFDS, where installed
# ----------------------------------------------------------------------------------------------


def _tfds():
    tfds = pytest.importorskip("tensorflow_datasets")
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")  # TensorFlow takes no accelerator memory from JAX
    return tfds


def _tf():
    _tfds()
    import tensorflow as tf

    return tf


def _tfds_features(features: dict):
    """The TFDS features of a dict of tfds_files features."""
    tfds = _tfds()

    def one(feature):
        if isinstance(feature, dict):
            return tfds.features.FeaturesDict({k: one(v) for k, v in feature.items()})
        if isinstance(feature, Sequence):
            return tfds.features.Dataset({k: one(v) for k, v in feature.feature.items()})
        dtype = np.object_ if feature.dtype == "string" else np.dtype(feature.dtype)
        if not feature.shape:
            return tfds.features.Scalar(dtype=dtype)
        return tfds.features.Tensor(shape=feature.shape, dtype=dtype, encoding=feature.encoding)

    return one(features)


def _write_with_tfds(root: Path, name: str, features: dict, splits: dict, description: str = "") -> Path:
    tfds = _tfds()
    tfds.dataset_builders.store_as_tfds_dataset(
        name=name,
        version="1.0.0",
        features=_tfds_features(features),
        split_datasets={split: enumerate(examples) for split, examples in splits.items()},
        data_dir=str(root),
        description=description or None,
        disable_shuffling=True,
    )
    return root / name / "1.0.0"


def _read_with_tfds(path: Path, features: dict) -> list[dict]:
    """Every example as TFDS reads split="all" in stored order, as numpy, each sequence's elements stacked."""
    tfds = _tfds()
    read_config = tfds.ReadConfig(interleave_cycle_length=1)
    ds = tfds.builder_from_directory(str(path)).as_dataset(split="all", shuffle_files=False, read_config=read_config)

    def stacked(value, feature):
        if isinstance(feature, dict):
            return {k: stacked(value[k], f) for k, f in feature.items()}
        if isinstance(feature, Sequence):  # a nested tf.data dataset of dicts
            items = list(value)
            return {
                k: [i[k] for i in items]
                if f.dtype == "string"
                else np.asarray([i[k] for i in items], f.dtype).reshape(-1, *f.shape)
                for k, f in feature.feature.items()
            }
        return value

    return [stacked(example, features) for example in tfds.as_numpy(ds)]


def _as_written(example: dict, features: dict) -> dict:
    """`example` as TFDS decodes it: numpy arrays of the feature dtypes, strings as bytes."""
    out = {}
    for key, feature in features.items():
        value = example[key]
        if isinstance(feature, dict):
            out[key] = _as_written(value, feature)
        elif isinstance(feature, Sequence):
            out[key] = _as_written(value, feature.feature)
        elif feature.dtype == "string":
            out[key] = value.encode() if isinstance(value, str) else value
        else:
            out[key] = np.asarray(value, feature.dtype)
    return out


def _records(path: Path) -> dict[str, list[bytes]]:
    return {p.name: [bytes(r) for r in tfrecord.read_tfrecord(p.read_bytes())] for p in path.glob("*.tfrecord-*")}


def test_the_writer_writes_what_tfds_writes_byte_for_byte(tmp_path):
    tf = _tf()
    splits = {"train": mixed_examples(7), "test": mixed_examples(3, seed=1)}
    theirs = _write_with_tfds(tmp_path / "tfds", "mixed", MIXED_FEATURES, splits, "Mixed features.")
    ours = tmp_path / "ours" / "mixed" / "1.0.0"
    tfds_files.write_builder_dir(ours, "mixed", "1.0.0", MIXED_FEATURES, splits, "Mixed features.")
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
    for name in (tfds_files.INFO_FILE, tfds_files.FEATURES_FILE):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    our_records, their_records = _records(ours), _records(theirs)
    assert our_records.keys() == their_records.keys() and sum(map(len, our_records.values())) == 10
    for name, records in their_records.items():
        # TFDS's serializer orders the feature map differently in every process; protobuf's deterministic
        # serialization sorts it, as the project's writer does.
        deterministic = [tf.train.Example.FromString(r).SerializeToString(deterministic=True) for r in records]
        assert our_records[name] == deterministic, name


def test_tfds_reads_what_the_project_writes(tmp_path):
    splits = {"train": mixed_examples(6), "test": mixed_examples(2, seed=1)}
    path = tmp_path / "mixed" / "1.0.0"
    tfds_files.write_builder_dir(path, "mixed", "1.0.0", MIXED_FEATURES, splits)
    expected = [_as_written(e, MIXED_FEATURES) for e in splits["train"] + splits["test"]]
    got = _read_with_tfds(path, MIXED_FEATURES)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert_same(a, b)


def test_the_project_reads_what_tfds_writes_in_the_order_tfds_reads_it(tmp_path):
    splits = {"train": mixed_examples(6), "test": mixed_examples(2, seed=1), "valid": mixed_examples(1, seed=2)}
    path = _write_with_tfds(tmp_path, "mixed", MIXED_FEATURES, splits)
    got = list(tfds_files.read_examples(path))
    tfds_read = _read_with_tfds(path, MIXED_FEATURES)
    assert len(got) == len(tfds_read) == 9
    for a, b in zip(got, tfds_read):
        assert_same(a, b)
    assert [e["meta"]["name"] for e in got] == [e["meta"]["name"].encode() for s in splits.values() for e in s]


def test_the_committed_tfds_fixture_is_what_tfds_writes(tmp_path):
    """Where TFDS is installed: rewriting tests/data/other_rlds with TFDS gives the same files."""
    tf = _tf()
    path = _write_with_tfds(tmp_path, "other_rlds", OTHER_RLDS_FEATURES, {"train": other_rlds_examples()})
    for name in (tfds_files.INFO_FILE, tfds_files.FEATURES_FILE):
        assert (path / name).read_bytes() == (OTHER_RLDS / name).read_bytes(), name
    committed, fresh = _records(OTHER_RLDS), _records(path)
    assert committed.keys() == fresh.keys()
    for name in fresh:
        canonical = [
            [tf.train.Example.FromString(r).SerializeToString(deterministic=True) for r in rs]
            for rs in (committed[name], fresh[name])
        ]
        assert canonical[0] == canonical[1]


def test_shard_count_follows_tfds():
    shard_utils = pytest.importorskip("tensorflow_datasets.core.utils.shard_utils")
    for total_size in (0, 100 << 20, 130 << 20, 9 << 30, 70 << 30, 2 << 40, 5 << 40):
        for num_examples in (1, 3, 1024, 5000, 100_000):
            least = (total_size + 16 * num_examples) // (1024 << 20)  # shards of at most 1 GiB
            if least > 1024 and num_examples < max(2048, -(-least // 1024) * 1024):
                continue  # TFDS's count never returns here (over 1 TiB in too few examples)
            expected = shard_utils.ShardConfig.calculate_number_shards(total_size, num_examples)
            assert tfds_files.num_shards(total_size, num_examples) == expected, (total_size, num_examples)


# ----------------------------------------------------------------------------------------------
# Without TFDS
# ----------------------------------------------------------------------------------------------


def test_the_project_reads_the_committed_tfds_fixture():
    got = list(tfds_files.read_examples(OTHER_RLDS))
    expected = [_as_written(e, OTHER_RLDS_FEATURES) for e in other_rlds_examples()]
    assert len(got) == 2
    for a, b in zip(got, expected):
        assert_same(a, b)
    assert tfds_files.read_features(OTHER_RLDS) == OTHER_RLDS_FEATURES
    assert tfds_files.num_examples(OTHER_RLDS) == 2


def test_write_then_read_gives_the_examples_back_across_several_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_files, "num_shards", lambda size, count: 3)
    examples = mixed_examples(8)
    tfds_files.write_builder_dir(tmp_path, "mixed", "1.0.0", MIXED_FEATURES, {"train": examples})
    names = sorted(p.name for p in tmp_path.glob("*.tfrecord-*"))
    assert names == [f"mixed-train.tfrecord-0000{i}-of-00003" for i in range(3)]
    info = tfds_files.read_info(tmp_path)
    assert info["splits"][0]["shardLengths"] == ["3", "2", "3"]  # round(8 * i / 3): 3, 5, 8
    assert int(info["splits"][0]["numBytes"]) == sum(len(tfds_files.encode(MIXED_FEATURES, e)) for e in examples)
    for got, example in zip(tfds_files.read_examples(tmp_path), examples, strict=True):
        assert_same(got, _as_written(example, MIXED_FEATURES))


def test_shard_count_on_hand_computed_sizes():
    assert tfds_files.num_shards(1000, 10) == 1
    assert tfds_files.num_shards(127 << 20, 1000) == 1  # below two 64 MiB shards
    assert tfds_files.num_shards(128 << 20, 1000) == 2
    assert tfds_files.num_shards(128 << 20, 1) == 1  # never more shards than examples
    assert tfds_files.num_shards(600 << 20, 1000) == 8  # the largest power of two with shards >= 64 MiB
    assert tfds_files.shard_boundaries(8, 3) == [3, 5, 8]
    template = tfds_files.DEFAULT_TEMPLATE
    assert tfds_files.shard_name(template, "d", "train", "tfrecord", 7, 12) == "d-train.tfrecord-00007-of-00012"
    assert tfds_files.shard_name(template, "d", "train", "tfrecord", 7, 123456) == "d-train.tfrecord-000007-of-123456"


def test_the_earlier_features_json_form_reads_as_the_current_one():
    legacy = {
        "type": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
        "content": {
            "episode_id": {
                "type": "tensorflow_datasets.core.features.feature.Tensor",
                "content": {"shape": [], "dtype": "int64"},
            },
            "steps": {
                "type": "tensorflow_datasets.core.features.dataset_feature.Dataset",
                "content": {
                    "feature": {
                        "type": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
                        "content": {
                            "observation": {
                                "type": "tensorflow_datasets.core.features.feature.Tensor",
                                "content": {"shape": [10, 5], "dtype": "float32", "encoding": "none"},
                            },
                            "action": {
                                "type": "tensorflow_datasets.core.features.class_label_feature.ClassLabel",
                                "content": {"num_classes": 3},
                            },
                        },
                    },
                    "length": None,
                },
            },
        },
    }
    expected = {
        "episode_id": Tensor((), "int64"),
        "steps": Sequence({"observation": Tensor((10, 5), "float32"), "action": Tensor((), "int64")}),
    }
    assert tfds_files.features_from_json(legacy) == expected
    assert tfds_files.features_from_json(tfds_files.features_to_json(expected)) == expected


def test_features_that_cannot_be_read_are_named():
    image = {"pythonClassName": "tensorflow_datasets.core.features.image_feature.Image", "image": {"shape": {}}}
    content = tfds_files.features_to_json({"x": Tensor((), "int64")})
    content["featuresDict"]["features"]["frame"] = image
    with pytest.raises(ValueError, match="image_feature.Image"):
        tfds_files.features_from_json(content)
    nested = {"steps": Sequence({"inner": Sequence({"x": Tensor((), "int64")})})}
    with pytest.raises(ValueError, match="steps/inner: a sequence inside a sequence"):
        tfds_files.features_from_json(tfds_files.features_to_json(nested))
    with pytest.raises(ValueError, match="steps/x: a tensor of shape"):
        tfds_files.features_from_json(tfds_files.features_to_json({"steps": Sequence({"x": Tensor((None,), "int64")})}))


def test_damaged_files_are_errors_naming_the_file(tmp_path):
    path = tmp_path / "copy"
    shutil.copytree(OTHER_RLDS, path)
    (shard,) = path.glob("*.tfrecord-*")
    data = shard.read_bytes()
    for damaged, message in (
        (data[:-3], "record 1: the file ends inside the record"),
        (data[:20] + bytes([data[20] ^ 1]) + data[21:], "record 0: its payload fails its CRC32C check"),
        (data + data[:100], "record 2: the file ends inside the record"),
    ):
        shard.write_bytes(damaged)
        with pytest.raises(ValueError, match=f"^{re.escape(shard.name)}: {message}$"):
            list(tfds_files.read_examples(path))
    shard.write_bytes(data)
    info = json.loads((path / tfds_files.INFO_FILE).read_text())
    info["splits"][0]["shardLengths"] = ["3"]
    (path / tfds_files.INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(ValueError, match="holds 2 examples, dataset_info.json says 3"):
        list(tfds_files.read_examples(path))
    info["fileFormat"] = "riegeli"
    (path / tfds_files.INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(ValueError, match="riegeli"):
        list(tfds_files.read_examples(path))


def test_an_example_that_does_not_fit_its_features_is_an_error():
    features = {"x": Tensor((2,), "float32"), "steps": Sequence({"a": Tensor((), "int64"), "b": Tensor((), "int64")})}
    good = {"x": [1.0, 2.0], "steps": {"a": [1, 2, 3], "b": [4, 5, 6]}}
    assert_same(tfds_files.decode(features, tfds_files.encode(features, good)), _as_written(good, features))
    with pytest.raises(ValueError, match="x: shape"):
        tfds_files.encode(features, {**good, "x": [1.0, 2.0, 3.0]})
    uneven = tfrecord.encode_example(
        {
            "x": tfrecord.float_feature([1, 2]),
            "steps/a": tfrecord.int64_feature([1, 2]),
            "steps/b": tfrecord.int64_feature([1]),
        }
    )
    with pytest.raises(ValueError, match="steps/b: 1 elements, others of steps have 2"):
        tfds_files.decode(features, uneven)
    with pytest.raises(ValueError, match="the example has no feature x"):
        tfds_files.decode(features, tfrecord.encode_example({}))
    # A sequence a record leaves out is empty, as TFDS reads it.
    empty = tfds_files.decode(features, tfrecord.encode_example({"x": tfrecord.float_feature([1, 2])}))
    assert empty["steps"]["a"].shape == (0,) and empty["steps"]["a"].dtype == np.int64


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50))
def test_int64_lists_round_trip_through_the_wire_format(values):
    record = tfrecord.encode_example({"v": tfrecord.int64_feature(values)})
    np.testing.assert_array_equal(tfrecord.parse_example(record)["v"], np.asarray(values, np.int64))


def test_a_tfrecord_file_round_trips_and_each_record_is_checked(tmp_path):
    records = [b"", b"a", bytes(range(256)) * 40]
    tfrecord.write_tfrecord(tmp_path / "f", records)
    assert [bytes(r) for r in tfrecord.read_tfrecord((tmp_path / "f").read_bytes())] == records
    data = bytearray((tmp_path / "f").read_bytes())
    data[8] ^= 1  # the first record's length CRC
    with pytest.raises(ValueError, match="record 0: its length fails its CRC32C check"):
        list(tfrecord.read_tfrecord(bytes(data)))
    with pytest.raises(ValueError, match="record 0: the file ends inside its length"):
        list(tfrecord.read_tfrecord(b"\x00" * 5))
