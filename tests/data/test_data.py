"""keras_reuse.data.load / info / augment_images on the shared TFDS datasets.

Reads ../shared/tensorflow_datasets (TFDS_DATA_DIR in CI): fashion_mnist
3.0.1 and cifar10_jpeg 1.0.0.
"""

import io
import os
import re
import socket

import keras
import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from locations import SHARED as SHARED_PATH

from keras_reuse import data
from keras_reuse.data import loading

SHARED = os.environ.get("TFDS_DATA_DIR") or os.fspath(SHARED_PATH / "tensorflow_datasets")

FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
DATASETS = [
    ("fashion_mnist", (28, 28, 1), {"train": 60_000, "test": 10_000}, FASHION_NAMES),
    ("cifar10_jpeg", (32, 32, 3), {"train": 50_000, "test": 10_000}, CIFAR_NAMES),
]


def _raw(name, split):
    """The split's uint8 images (decoded by PIL, the reference) and labels, in file order."""
    builder = tfds.builder(name, data_dir=SHARED)
    ds = builder.as_dataset(
        split=split, as_supervised=True, decoders={"image": tfds.decode.SkipDecoding()}
    )
    images, labels = [], []
    for encoded, label in tfds.as_numpy(ds):
        image = np.asarray(PIL.Image.open(io.BytesIO(encoded)))
        images.append(image.reshape(builder.info.features["image"].shape))
        labels.append(label)
    return np.stack(images), np.array(labels)


def _collect(ds):
    batches = list(ds.as_numpy_iterator())
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


@pytest.mark.parametrize("name, shape, splits, class_names", DATASETS)
def test_info_describes_the_dataset(name, shape, splits, class_names):
    info = data.info(name, data_dir=SHARED)
    assert info.name == name
    assert info.input_shape == shape
    assert info.splits == splits
    assert info.num_classes == 10
    assert info.class_names == class_names


@pytest.mark.parametrize("name, shape, splits, class_names", DATASETS)
def test_test_split_is_the_dataset_scaled_to_unit_range(name, shape, splits, class_names):
    ds = data.load(name, split="test[:2000]", batch_size=500, data_dir=SHARED)
    images_spec, labels_spec = ds.element_spec
    assert images_spec.shape.as_list() == [None, *shape]
    assert images_spec.dtype == tf.float32
    assert labels_spec.shape.as_list() == [None]
    assert labels_spec.dtype == tf.int64

    images, labels = _collect(ds)
    assert images.shape == (2000, *shape)
    raw_images, raw_labels = _raw(name, "test[:2000]")
    # Test data: no shuffling, no augmentation, only /255.
    np.testing.assert_array_equal(labels, raw_labels)
    np.testing.assert_array_equal(images, raw_images.astype(np.float32) / np.float32(255))
    assert images.min() == 0.0 and images.max() == 1.0
    assert set(np.unique(labels)) == set(range(10))


@pytest.mark.parametrize("name, shape, splits, class_names", DATASETS)
def test_batches_cover_each_split(name, shape, splits, class_names):
    ds = data.load(name, data_dir=SHARED)
    # Training drops the last partial batch, so batches have a static size.
    assert ds.element_spec[0].shape.as_list() == [128, *shape]
    assert int(ds.cardinality()) == splits["train"] // 128
    test = data.load(name, split="test", batch_size=128, data_dir=SHARED)
    assert int(test.cardinality()) == -(-splits["test"] // 128)
    assert sum(len(labels) for _, labels in test.as_numpy_iterator()) == splits["test"]


def test_sliced_splits_and_the_last_batch():
    def sizes(**kwargs):
        ds = data.load("fashion_mnist", data_dir=SHARED, batch_size=128, seed=0, **kwargs)
        return [len(labels) for _, labels in ds.as_numpy_iterator()]

    assert sizes(split="train[:300]") == [128, 128]
    assert sizes(split="train[:300]", drop_remainder=False) == [128, 128, 44]
    assert sizes(split="test[:300]") == [128, 128, 44]
    # A split smaller than one batch still yields it rather than nothing.
    assert sizes(split="train[:100]") == [100]
    assert sizes(split="train[:10%]+test[:50]", drop_remainder=False)[-1] == 6050 % 128


def test_seed_makes_batches_reproducible_and_epochs_differ():
    kwargs = dict(split="train[:512]", batch_size=128, data_dir=SHARED, seed=3)
    first = data.load("cifar10_jpeg", **kwargs)
    second = data.load("cifar10_jpeg", **kwargs)
    epoch1 = list(first.as_numpy_iterator())
    again = list(second.as_numpy_iterator())
    assert len(epoch1) == 4
    for (xa, ya), (xb, yb) in zip(epoch1, again, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # Each epoch reshuffles and re-augments.
    epoch2 = list(first.as_numpy_iterator())
    assert not np.array_equal(epoch1[0][1], epoch2[0][1])
    other = next(data.load("cifar10_jpeg", **{**kwargs, "seed": 4}).as_numpy_iterator())
    assert not np.array_equal(epoch1[0][0], other[0])


def test_augmentation_changes_train_images_but_not_test_images():
    common = dict(batch_size=256, shuffle=False, data_dir=SHARED, seed=0)
    plain_x, plain_y = next(
        data.load("cifar10_jpeg", split="train[:256]", augment=False, **common).as_numpy_iterator()
    )
    aug_x, aug_y = next(
        data.load("cifar10_jpeg", split="train[:256]", **common).as_numpy_iterator()
    )
    np.testing.assert_array_equal(plain_y, aug_y)
    changed = np.any(plain_x != aug_x, axis=(1, 2, 3))
    assert changed.mean() > 0.9
    assert aug_x.min() >= 0.0 and aug_x.max() <= 1.0
    # Nearest-neighbour crop/rotate/flip moves pixels, it never blends them.
    for before, after in zip(plain_x, aug_x, strict=True):
        assert np.isin(after, np.append(before, 0.0)).all()

    test_x, _ = next(data.load("cifar10_jpeg", split="test[:256]", **common).as_numpy_iterator())
    raw_x, _ = _raw("cifar10_jpeg", "test[:256]")
    np.testing.assert_array_equal(test_x, raw_x.astype(np.float32) / np.float32(255))


def test_cache_survives_partial_reads():
    # fit(steps_per_epoch=...), take() and a broken-off loop all stop a pass
    # early; the in-memory cache must not keep that truncated pass. The
    # truncation was a race (about 1 pipeline in 6 under load), so several
    # fresh pipelines go through it.
    raw_images, raw_labels = _raw("fashion_mnist", "test[:1000]")
    for _ in range(8):
        ds = data.load("fashion_mnist", split="test[:1000]", batch_size=100, data_dir=SHARED)
        for _ in ds.take(3):
            pass
        for i, _ in enumerate(ds):
            if i == 2:
                break
        images, labels = _collect(ds)
        np.testing.assert_array_equal(labels, raw_labels)
        np.testing.assert_array_equal(images, raw_images.astype(np.float32) / np.float32(255))


def test_shuffle_defaults_to_train_only():
    _, raw_labels = _raw("fashion_mnist", "train[:512]")
    ds = data.load("fashion_mnist", split="train[:512]", batch_size=512, data_dir=SHARED, seed=1)
    _, labels = next(ds.as_numpy_iterator())
    assert not np.array_equal(labels, raw_labels)
    assert sorted(labels) == sorted(raw_labels)


def test_model_fit_consumes_the_dataset():
    ds = data.load("fashion_mnist", split="train[:256]", batch_size=64, data_dir=SHARED, seed=0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# --- augment_images ---------------------------------------------------------------------


def _images(n=64, size=32, channels=3):
    return np.random.default_rng(0).random((n, size, size, channels), dtype=np.float32) + 0.01


def test_crop_is_a_shift_within_the_padding():
    x = _images()
    y = data.augment_images(x, tf.constant([1, 2]), max_rotation=0.0, flip=False).numpy()
    shifts = set()
    for before, after in zip(x, y, strict=True):
        padded = np.pad(before, ((4, 4), (4, 4), (0, 0)))
        found = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if np.array_equal(padded[dy : dy + 32, dx : dx + 32], after)
        ]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 20


def test_flip_mirrors_about_half_the_images():
    x = _images()
    y = data.augment_images(x, tf.constant([5, 6]), padding=0, max_rotation=0.0).numpy()
    same = [np.array_equal(a, b) for a, b in zip(x, y, strict=True)]
    mirrored = [np.array_equal(a[:, ::-1], b) for a, b in zip(x, y, strict=True)]
    assert all(s != m for s, m in zip(same, mirrored, strict=True))
    assert 16 < sum(mirrored) < 48


def test_rotation_turns_about_the_centre_within_the_limit():
    ones = np.ones((64, 32, 32, 1), np.float32)

    def zeros_per_image(max_rotation):
        y = data.augment_images(
            ones, tf.constant([7, 8]), padding=0, max_rotation=max_rotation, flip=False
        ).numpy()
        np.testing.assert_array_equal(y[:, 15:17, 15:17], 1.0)
        return (y == 0).sum(axis=(1, 2, 3))

    small = zeros_per_image(10.0)
    # Rotating a 32x32 square by 10 degrees uncovers about 90 pixels at most.
    assert small.max() <= 100 and (small > 0).mean() > 0.8
    assert zeros_per_image(45.0).max() > 150
    assert zeros_per_image(0.0).max() == 0


def test_augment_images_is_deterministic_per_seed():
    x = _images(8)
    a = data.augment_images(x, tf.constant([1, 1])).numpy()
    b = data.augment_images(x, tf.constant([1, 1])).numpy()
    c = data.augment_images(x, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(padding=-1), "padding=-1"),
        (dict(max_rotation=200), "max_rotation=200"),
        (dict(flip="yes"), "flip='yes'"),
        (dict(interpolation="cubic"), r"'nearest', 'bilinear'.*interpolation='cubic'"),
    ],
)
def test_augment_images_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.augment_images(_images(2), tf.constant([1, 1]), **kwargs)


# --- Bad input and faults -----------------------------------------------------------------


def test_unknown_dataset_name_lists_what_is_valid():
    with pytest.raises(ValueError, match=r"name='cifar11'") as error:
        data.load("cifar11", data_dir=SHARED)
    message = str(error.value)
    assert re.search(r"Did you mean [^?]*'cifar10'", message)
    assert f"prepared in {os.path.abspath(SHARED)}: cifar10_jpeg, fashion_mnist" in message
    with pytest.raises(ValueError, match=r"name='cifar11'"):
        data.info("cifar11", data_dir=SHARED)
    # A name both prepared and a TFDS builder is suggested once.
    with pytest.raises(ValueError) as error:
        data.load("fashion_mnistt", data_dir=SHARED)
    hint = str(error.value).split("Did you mean ")[1].split("?")[0]
    assert hint.count("'fashion_mnist'") == 1, hint


@pytest.mark.parametrize("split", ["validation", "train[:abc]", "TRAIN"])
def test_unknown_split_lists_the_splits(split):
    with pytest.raises(ValueError, match=r"split=.*Valid splits: \['test', 'train'\]"):
        data.load("fashion_mnist", split=split, data_dir=SHARED)


def test_rejects_datasets_that_are_not_fixed_size_image_classification():
    # Registered builders know their features before any data is there.
    with pytest.raises(ValueError, match=r"name='imdb_reviews' is not an image-classification"):
        data.load("imdb_reviews", data_dir=SHARED)
    with pytest.raises(ValueError, match=r"name='imdb_reviews' is not an image-classification"):
        data.info("imdb_reviews", data_dir=SHARED)
    with pytest.raises(ValueError, match=r"name='cats_vs_dogs' has images of varying size"):
        data.load("cats_vs_dogs", data_dir=SHARED)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=0), "batch_size=0"),
        (dict(batch_size=-3), "batch_size=-3"),
        (dict(batch_size=2.5), "batch_size=2.5"),
        (dict(batch_size=True), "batch_size=True"),
        (dict(augment="yes"), "augment='yes'"),
        (dict(shuffle=1), "shuffle=1"),
        (dict(seed=-1), "seed=-1"),
        (dict(seed=1.5), "seed=1.5"),
        (dict(cache=None), "cache=None"),
        (dict(drop_remainder="no"), "drop_remainder='no'"),
        (dict(data_dir=5), "data_dir=5"),
        (dict(split=5), "split=5"),
        (dict(split="train[:10]", drop_remainder=True), "drop_remainder=True.*10 examples"),
        (dict(split="train[:0]"), "selects no examples"),
    ],
)
def test_load_rejects_bad_arguments(kwargs, message):
    kwargs.setdefault("data_dir", SHARED)
    with pytest.raises(ValueError, match=message):
        data.load("fashion_mnist", **kwargs)


@pytest.mark.parametrize("name", [7, "", None])
def test_rejects_a_name_that_is_not_a_string(name):
    with pytest.raises(ValueError, match=r"`name` must be a TFDS dataset name"):
        data.load(name, data_dir=SHARED)


def test_missing_dataset_without_network_fails_fast_with_the_fix(tmp_path, monkeypatch):
    probed = []

    def offline(url, timeout=3.0):
        probed.append(url)
        return False

    monkeypatch.setattr(loading, "network_reachable", offline)
    with pytest.raises(data.DatasetNotPreparedError) as error:
        data.load("mnist", data_dir=tmp_path)
    message = str(error.value)
    assert "'mnist' is not prepared" in message
    assert str(tmp_path) in message
    assert "TFDS_DATA_DIR" in message
    assert f"keras-reuse data prepare mnist --from DIR --data_dir {tmp_path}" in message
    # It probed the host TFDS would download from, and wrote nothing.
    assert probed == [
        "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-images-idx3-ubyte.gz"
    ]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(data.DatasetNotPreparedError, match="'cifar10' is not prepared"):
        data.info("cifar10", data_dir=tmp_path)
    assert isinstance(error.value, FileNotFoundError)


def test_network_probe_answers_within_its_timeout(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert loading.network_reachable(f"http://127.0.0.1:{port}/file.gz", timeout=2.0)
    # The port is closed now: refused.
    assert not loading.network_reachable(f"http://127.0.0.1:{port}/file.gz", timeout=2.0)
    assert not loading.network_reachable("not a url")


def test_tfds_data_dir_is_the_default_and_data_dir_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", SHARED)
    assert data.info("cifar10_jpeg").splits == {"train": 50_000, "test": 10_000}
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=f"prepared in {tmp_path}: none"):
        data.info("cifar10_jpeg")
    assert data.info("cifar10_jpeg", data_dir=SHARED).input_shape == (32, 32, 3)
