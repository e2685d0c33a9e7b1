"""Offline `prepare` and `keras-reuse data`: TFDS datasets built from original files.

Needs the Debian package `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist;
.ci/run installs it) and ../shared/tensorflow_datasets (TFDS_DATA_DIR in CI).
"""

import gzip
import json
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import flags
from locations import SHARED as SHARED_PATH
from tensorflow_datasets.image_classification import cifar as tfds_cifar

from keras_reuse import cli, data
from keras_reuse.data import offline

SHARED = os.environ.get("TFDS_DATA_DIR") or os.fspath(SHARED_PATH / "tensorflow_datasets")
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
IDX = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(scope="module")
def debian():
    assert all((DEBIAN / f"{name}.gz").is_file() for name in IDX), (
        f"The Fashion-MNIST files are not in {DEBIAN}: "
        "`apt-get install -y dataset-fashion-mnist` (.ci/run does)."
    )
    return DEBIAN


@pytest.fixture(scope="module")
def prepared(debian, tmp_path_factory):
    """fashion_mnist prepared from the Debian files, once for this module (about a minute)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    path = data.prepare("fashion_mnist", debian, data_dir=data_dir)
    return data_dir, Path(path)


@pytest.fixture
def source(debian, tmp_path):
    """A copy of the Debian files to damage."""
    copy = tmp_path / "source"
    shutil.copytree(debian, copy)
    return copy


def _cli(capsys, *args):
    """Runs `keras-reuse data ARGS` through the console script's entry point."""
    # absl keeps flag values between parses in one process.
    flags.FLAGS.unparse_flags()
    with pytest.raises(SystemExit) as exit_info:
        cli.run(["keras-reuse", "data", *map(str, args)])
    output = capsys.readouterr()
    return exit_info.value.code or 0, output.out, output.err


def _examples(path, split):
    """PNG bytes and labels of a prepared split's examples, in file order.

    Parsed rather than compared record by record: protobuf may write an
    Example's features in any order.
    """
    records = tf.data.TFRecordDataset(
        os.fspath(path / f"fashion_mnist-{split}.tfrecord-00000-of-00001")
    )
    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }
    parsed = records.batch(10_000).map(lambda r: tf.io.parse_example(r, spec))
    batches = list(parsed.as_numpy_iterator())
    return (
        np.concatenate([b["image"] for b in batches]),
        np.concatenate([b["label"] for b in batches]),
    )


# --- fashion_mnist from the Debian package ------------------------------------------------


def test_prepared_dataset_equals_tfds_own_example_for_example(prepared):
    data_dir, path = prepared
    assert path == data_dir / "fashion_mnist" / "3.0.1"
    reference = Path(SHARED) / "fashion_mnist" / "3.0.1"
    for split, count in (("test", 10_000), ("train", 60_000)):
        pngs, labels = _examples(path, split)
        expected_pngs, expected_labels = _examples(reference, split)
        assert len(labels) == len(expected_labels) == count
        np.testing.assert_array_equal(labels, expected_labels)
        # Another PNG encoder may store the same pixels differently.
        for i in np.flatnonzero(pngs != expected_pngs):
            np.testing.assert_array_equal(
                tf.io.decode_png(pngs[i]).numpy(), tf.io.decode_png(expected_pngs[i]).numpy()
            )
    for name in ("features.json", "label.labels.txt"):
        assert (path / name).read_text() == (reference / name).read_text()
    info = json.loads((path / "dataset_info.json").read_text())
    expected = json.loads((reference / "dataset_info.json").read_text())
    assert info["version"] == expected["version"] == "3.0.1"
    assert info["splits"] == expected["splits"]


def test_only_the_dataset_is_left_in_the_data_dir(prepared):
    data_dir, path = prepared
    assert sorted(os.listdir(data_dir)) == ["fashion_mnist"]
    assert sorted(os.listdir(data_dir / "fashion_mnist")) == ["3.0.1"]


def test_load_info_and_list_use_the_prepared_dataset(prepared):
    data_dir, _ = prepared
    info = data.info("fashion_mnist", data_dir=data_dir)
    assert info.splits == {"train": 60_000, "test": 10_000}
    images, labels = next(
        data.load("fashion_mnist", split="test[:64]", data_dir=data_dir).as_numpy_iterator()
    )
    assert images.shape == (64, 28, 28, 1) and labels.shape == (64,)
    statuses = {s.name: s for s in data.list_datasets(data_dir)}
    assert sorted(statuses) == ["cifar10", "cifar100", "fashion_mnist", "mnist"]
    assert statuses["fashion_mnist"].prepared
    assert statuses["fashion_mnist"].versions == ("3.0.1",)
    assert statuses["fashion_mnist"].splits == {"train": 60_000, "test": 10_000}
    assert not statuses["mnist"].prepared and statuses["mnist"].offline


def test_preparing_again_keeps_the_prepared_dataset(prepared, debian):
    data_dir, path = prepared
    record = path / "fashion_mnist-test.tfrecord-00000-of-00001"
    before = record.stat().st_mtime_ns
    assert data.prepare("fashion_mnist", debian, data_dir=data_dir) == os.fspath(path)
    assert record.stat().st_mtime_ns == before


def test_cli_list_and_prepare(prepared, debian, tmp_path, capsys):
    data_dir, path = prepared
    code, out, err = _cli(capsys, "list", "--data_dir", data_dir)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"Datasets in {data_dir}:"
    assert any(
        line.split()[:3] == ["fashion_mnist", "prepared", "3.0.1"] and "train 60,000" in line
        for line in lines
    )
    assert any(
        line.split()[:3] == ["mnist", "not", "prepared"] and "data prepare mnist" in line
        for line in lines
    )

    code, out, err = _cli(
        capsys, "prepare", "fashion_mnist", "--from", debian, "--data_dir", data_dir
    )
    assert code == 0, err
    assert f"fashion_mnist is prepared in {path}" in out

    target = tmp_path / "out"
    nowhere = tmp_path / "nowhere"
    # Usage errors: exit code 2 and one line, before anything is written.
    code, _, err = _cli(capsys, "prepare", "fashion_mnist", "--from", nowhere, "--data_dir", target)
    assert code == 2
    assert err.strip() == f"keras-reuse data: error: --from={nowhere}: not a directory"
    assert not target.exists()
    code, _, err = _cli(capsys, "prepare", "fashion_mnist", "--data_dir", target)
    assert code == 2 and "needs --from DIR" in err
    code, _, err = _cli(capsys, "list", "--from", debian)
    assert code == 2 and "--from applies to `prepare` only" in err
    code, _, err = _cli(capsys, "frobnicate")
    assert code == 2 and "unknown command 'frobnicate'" in err


# --- Damaged, missing and bad sources -----------------------------------------------------


def _assert_nothing_written(out):
    assert not out.exists() or not any(out.iterdir())


def test_corrupted_file_is_named_with_what_was_expected(source, tmp_path):
    labels = bytearray(gzip.decompress((source / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[100] = (labels[100] + 1) % 10
    (source / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    out = tmp_path / "out"
    with pytest.raises(data.SourceFileError) as error:
        data.prepare("fashion_mnist", source, data_dir=out)
    message = str(error.value)
    assert f"{source / 't10k-labels-idx1-ubyte.gz'} is not the original" in message
    assert "expected 10,008 bytes, md5 15d484375f8d13e6eb1aabb0c3f46965" in message
    _assert_nothing_written(out)


def test_truncated_gzip_file(source, tmp_path):
    path = source / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:10_000])
    out = tmp_path / "out"
    with pytest.raises(data.SourceFileError, match=rf"{path} is truncated or not a gzip file"):
        data.prepare("fashion_mnist", source, data_dir=out)
    _assert_nothing_written(out)


def test_truncated_decompressed_file(source, tmp_path):
    content = gzip.decompress((source / "t10k-images-idx3-ubyte.gz").read_bytes())
    (source / "t10k-images-idx3-ubyte.gz").unlink()
    (source / "t10k-images-idx3-ubyte").write_bytes(content[:-784])
    out = tmp_path / "out"
    with pytest.raises(data.SourceFileError) as error:
        data.prepare("fashion_mnist", source, data_dir=out)
    assert "t10k-images-idx3-ubyte is not the original" in str(error.value)
    assert "has 7,839,232 bytes" in str(error.value)
    assert "expected 7,840,016 bytes" in str(error.value)
    _assert_nothing_written(out)


def test_missing_file(source, tmp_path):
    (source / "t10k-images-idx3-ubyte.gz").unlink()
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\.gz is missing"):
        data.prepare("fashion_mnist", source, data_dir=out)
    _assert_nothing_written(out)


def test_decompressed_originals_are_accepted(source, debian):
    for name in IDX:
        gz = source / f"{name}.gz"
        (source / name).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    builder = tfds.builder("fashion_mnist", data_dir=SHARED)
    contents = offline._read_idx("fashion_mnist", source, builder)
    for name in IDX:
        assert contents[name] == gzip.decompress((debian / f"{name}.gz").read_bytes())


def test_a_failure_while_building_leaves_no_dataset_behind(source, tmp_path, monkeypatch):
    def wrong_paths(name, builder, extracted):
        return {url: extracted / "nowhere" for url in builder.url_infos}

    monkeypatch.setattr(offline, "_local_urls", wrong_paths)
    out = tmp_path / "out"
    with pytest.raises(Exception, match="nowhere"):
        data.prepare("fashion_mnist", source, data_dir=out)
    # Verification passed and TFDS started; its scratch directory is gone.
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["cifar11", "cifar10_jpeg", None])
def test_prepare_rejects_other_datasets(name, debian):
    with pytest.raises(ValueError, match=r"cifar10, cifar100, fashion_mnist, mnist") as error:
        data.prepare(name, debian)
    assert f"name={name!r}" in str(error.value)


@pytest.mark.parametrize("source_dir", ["/nonexistent/keras-reuse", None, 3])
def test_prepare_rejects_a_source_that_is_not_a_directory(source_dir, tmp_path):
    with pytest.raises(ValueError, match=rf"source_dir={source_dir!r}"):
        data.prepare("fashion_mnist", source_dir, data_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- CIFAR: the python version, converted for TFDS's builder ------------------------------


CIFAR_NAMES = tuple("airplane automobile bird cat deer dog frog horse ship truck".split())


def _cifar_batches(name, per_batch, rng):
    """Unpickled python-version files of a small synthetic CIFAR release."""
    fine = 10 if name == "cifar10" else 100

    def batch(n):
        labels = [int(v) for v in rng.integers(0, fine, n)]
        content = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        if name == "cifar10":
            return {**content, b"labels": labels}
        return {**content, b"fine_labels": labels, b"coarse_labels": [v // 5 for v in labels]}

    if name == "cifar10":
        batches = {f"data_batch_{i}": batch(per_batch) for i in range(1, 6)}
        batches["test_batch"] = batch(per_batch)
        batches["batches.meta"] = {b"label_names": [n.encode() for n in CIFAR_NAMES]}
        return batches
    return {
        "train": batch(5 * per_batch),
        "test": batch(per_batch),
        "meta": {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    }


def test_cifar_records_are_what_tfds_reads(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 3072), dtype=np.uint8)
    batch = {b"data": pixels, b"coarse_labels": [1, 2, 3, 4, 5], b"fine_labels": [9, 8, 7, 6, 5]}
    path = tmp_path / "train.bin"
    path.write_bytes(offline._cifar_records(batch, (b"coarse_labels", b"fine_labels")))
    # TFDS's own reader of the binary version.
    records = list(tfds_cifar._load_data(os.fspath(path), 2))
    assert [tuple(labels) for labels, _ in records] == [(1, 9), (2, 8), (3, 7), (4, 6), (5, 5)]
    for (_, image), row in zip(records, pixels, strict=True):
        np.testing.assert_array_equal(image, row.reshape(3, 32, 32).transpose(1, 2, 0))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_tfds_cifar_builder_runs_on_converted_files(name, tmp_path):
    batches = _cifar_batches(name, 4, np.random.default_rng(1))
    files = offline._cifar_binary_files(name, batches)
    path = Path(offline._build(name, files, os.fspath(tmp_path)))
    assert path == tmp_path / name / "3.0.2"
    assert sorted(os.listdir(tmp_path)) == [name]
    info = data.info(name, data_dir=tmp_path)
    assert info.splits == {"train": 20, "test": 4}
    if name == "cifar10":
        assert info.class_names == CIFAR_NAMES
        train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
        test = batches["test_batch"]
        label_key = b"labels"
    else:
        assert info.class_names == tuple(f"fine{i}" for i in range(100))
        train, test, label_key = [batches["train"]], batches["test"], b"fine_labels"
    expected = {
        "train": (
            np.concatenate([b[b"data"] for b in train]),
            [v for b in train for v in b[label_key]],
        ),
        "test": (test[b"data"], test[label_key]),
    }
    builder = tfds.builder(name, data_dir=os.fspath(tmp_path))
    for split, (pixels, labels) in expected.items():
        seen = set()
        for example in tfds.as_numpy(builder.as_dataset(split=split)):
            index = int(example["id"].decode().split("_")[1])
            seen.add(index)
            image = pixels[index].reshape(3, 32, 32).transpose(1, 2, 0)
            np.testing.assert_array_equal(example["image"], image)
            assert example["label"] == labels[index]
            if name == "cifar100":
                assert example["coarse_label"] == labels[index] // 5
        assert seen == set(range(len(labels)))


def _write_cifar_folder(folder, batches):
    folder.mkdir(parents=True)
    for name, content in batches.items():
        (folder / name).write_bytes(pickle.dumps(content))


def test_cifar_sources_are_verified(tmp_path):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"cifar-10-python\.tar\.gz is missing"):
        data.prepare("cifar10", empty, data_dir=out)

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "cifar-100-python.tar.gz").write_bytes(os.urandom(4096))
    with pytest.raises(data.SourceFileError, match=r"truncated or not a tar\.gz archive"):
        data.prepare("cifar100", garbage, data_dir=out)

    # Right layout, wrong content: an extracted folder, then an archive.
    fake = tmp_path / "fake"
    _write_cifar_folder(
        fake / "cifar-10-batches-py", _cifar_batches("cifar10", 2, np.random.default_rng(2))
    )
    with pytest.raises(data.SourceFileError) as error:
        data.prepare("cifar10", fake, data_dir=out)
    assert "data_batch_1 is not the original data_batch_1" in str(error.value)
    assert "md5 c99cafc152244af753f735de768cd75f" in str(error.value)

    archive = tmp_path / "archive"
    archive.mkdir()
    with tarfile.open(archive / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(fake / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with pytest.raises(data.SourceFileError, match=r"tar\.gz:data_batch_1 is not the original"):
        data.prepare("cifar10", archive, data_dir=out)

    (fake / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match=r"test_batch is missing"):
        data.prepare("cifar10", fake, data_dir=out)
    _assert_nothing_written(out)
