"""`load` and `info`: TFDS image-classification datasets as `tf.data` input.

Owns the way from a dataset name to a batched, prefetched `tf.data.Dataset`
of `(images, labels)`: resolving the data directory, checking the request,
making sure the dataset is prepared (TFDS downloads it when a network is
there; without one we fail fast with what to do), decoding, caching,
shuffling, augmenting and scaling to [0, 1].
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import socket
import threading
import urllib.parse
from typing import Any

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_reuse.data.augment import augment_images
from keras_reuse.utils.checks import check_bool

# What `keras_reuse.data.prepare` builds from original files; named in errors.
OFFLINE_DATASETS = ("cifar10", "cifar100", "fashion_mnist", "mnist")

# A full-split shuffle buffer is the correct one, but it holds a copy of the
# split; past this many examples the (already key-shuffled) TFDS files make
# a smaller window good enough.
_MAX_SHUFFLE_BUFFER = 60_000
_PROBE_TIMEOUT_S = 3.0
_PROBE_FALLBACK_HOST = "storage.googleapis.com"


class DatasetNotPreparedError(FileNotFoundError):
    """The dataset is not in the data directory and cannot be downloaded."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about an image-classification dataset.

    Attributes:
        name: TFDS name of the dataset (with `/config` when it has one).
        num_classes: Number of label classes.
        class_names: Name of each class, indexed by label.
        input_shape: `(height, width, channels)` of the images.
        splits: Number of examples of each split, e.g. `{"train": 60000}`.
        version: TFDS version of the prepared data.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    splits: dict[str, int]
    version: str = ""


def resolve_data_dir(data_dir: Any = None) -> str:
    """Returns the data directory TFDS reads: `data_dir`, `TFDS_DATA_DIR` or TFDS's default.

    Args:
        data_dir: Explicit directory, or None.

    Returns:
        The directory as an absolute path (it need not exist).

    Raises:
        ValueError: if `data_dir` is neither None nor a path.
    """
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(f"`data_dir` must be a path or None. Received: data_dir={data_dir!r}")
    if data_dir is not None and not os.fspath(data_dir):
        raise ValueError(f"`data_dir` must not be empty. Received: data_dir={data_dir!r}")
    # Read the variable at call time: TFDS reads it once, at import.
    chosen = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.abspath(os.path.expanduser(os.fspath(chosen)))


def _prepared_names(data_dir: str) -> list[str]:
    if not os.path.isdir(data_dir):
        return []
    return sorted(
        entry.name
        for entry in os.scandir(data_dir)
        if entry.is_dir() and not entry.name.startswith((".", "downloads"))
    )


def _unknown_name_error(name: str, data_dir: str) -> ValueError:
    prepared = _prepared_names(data_dir)
    candidates = sorted({*tfds.list_builders(with_community_datasets=False), *prepared})
    close = difflib.get_close_matches(name, candidates, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"Unknown dataset name={name!r}.{hint} Valid names: a TFDS image-classification "
        f"dataset (see `tfds.list_builders()`; e.g. {', '.join(OFFLINE_DATASETS)}) or one "
        f"prepared in {data_dir}: {', '.join(prepared) or 'none'}."
    )


def _builder(name: Any, data_dir: str) -> tfds.core.DatasetBuilder:
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"`name` must be a TFDS dataset name such as 'cifar10'. Received: name={name!r}"
        )
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise _unknown_name_error(name, data_dir) from None


def _image_label_keys(builder: tfds.core.DatasetBuilder, name: str) -> tuple[str, str]:
    features = builder.info.features
    keys = builder.info.supervised_keys
    if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)):
        keys = ("image", "label")
    image_key, label_key = keys
    feature_dict = dict(features) if isinstance(features, tfds.features.FeaturesDict) else {}
    image = feature_dict.get(image_key)
    label = feature_dict.get(label_key)
    if not (isinstance(image, tfds.features.Image) and isinstance(label, tfds.features.ClassLabel)):
        raise ValueError(
            f"name={name!r} is not an image-classification dataset: load() needs an Image "
            f"feature and a ClassLabel label as its supervised keys; its features are "
            f"{sorted(feature_dict)} with supervised keys {builder.info.supervised_keys}. "
            f"Valid: image-classification datasets such as {', '.join(OFFLINE_DATASETS)}."
        )
    if None in image.shape or len(image.shape) != 3:
        raise ValueError(
            f"name={name!r} has images of varying size (shape {image.shape}); load() "
            "batches images as they are, so it needs a fixed-size dataset such as "
            f"{', '.join(OFFLINE_DATASETS)}."
        )
    return image_key, label_key


def _probe_address(host: str, port: int) -> tuple[str, int]:
    """The address a download would connect to first: the proxy, if one is set."""
    scheme = "https" if port == 443 else "http"
    for var in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        proxy = os.environ.get(var)
        if proxy:
            parsed = urllib.parse.urlsplit(proxy if "//" in proxy else f"//{proxy}")
            if parsed.hostname:
                return parsed.hostname, parsed.port or 80
    return host, port


def network_reachable(url: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Returns whether a TCP connection to `url`'s host opens within `timeout` seconds.

    Name resolution cannot be given a timeout, so the attempt runs in a
    daemon thread: this returns within `timeout` whatever the network does.

    Args:
        url: The address a download would fetch, e.g. `https://host/path`.
        timeout: Seconds to wait.

    Returns:
        True if the host (or the configured proxy) accepted a connection.
    """
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    address = _probe_address(parsed.hostname, port)
    result: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _download_url(builder: tfds.core.DatasetBuilder) -> str:
    try:
        urls = sorted(builder.url_infos or ())
    except Exception:  # noqa: BLE001 - a missing checksums file only means "unknown".
        urls = []
    return urls[0] if urls else f"https://{_PROBE_FALLBACK_HOST}/"


def _ensure_prepared(builder: tfds.core.DatasetBuilder, name: str, data_dir: str) -> None:
    if builder.is_prepared():
        return
    url = _download_url(builder)
    if not network_reachable(url):
        offline = (
            f" Without a network, build it from the original files: "
            f"`keras-reuse data prepare {builder.name} --from DIR --data_dir {data_dir}`."
            if builder.name in OFFLINE_DATASETS
            else ""
        )
        raise DatasetNotPreparedError(
            f"Dataset {name!r} is not prepared in the data directory {data_dir} "
            f"(looked for {builder.data_dir}) and it cannot be downloaded: "
            f"{urllib.parse.urlsplit(url).hostname} is unreachable. Point `data_dir=` or "
            f"the TFDS_DATA_DIR environment variable at a directory where it is prepared."
            f"{offline}"
        )
    # Downloading is TFDS's job; it writes into a temporary directory and
    # renames it into place, so a failure leaves no half-written dataset.
    builder.download_and_prepare()


def _dataset_info(builder: tfds.core.DatasetBuilder, image_key: str, label_key: str) -> DatasetInfo:
    features = builder.info.features
    label = features[label_key]
    name = builder.name
    if builder.builder_config is not None:
        name = f"{name}/{builder.builder_config.name}"
    return DatasetInfo(
        name=name,
        num_classes=int(label.num_classes),
        class_names=tuple(label.names),
        input_shape=tuple(int(d) for d in features[image_key].shape),
        splits={s: int(i.num_examples) for s, i in builder.info.splits.items()},
        version=str(builder.info.version),
    )


def info(name: str, data_dir: Any = None) -> DatasetInfo:
    """Returns the metadata of an image-classification dataset.

    Reads the prepared dataset, so it works without network once the
    dataset is in the data directory; otherwise TFDS downloads and prepares
    it first, as `load` does.

    Args:
        name: TFDS dataset name, e.g. `"cifar10"` or `"fashion_mnist"`.
        data_dir: Data directory; defaults to `TFDS_DATA_DIR`, else TFDS's default.

    Returns:
        A `DatasetInfo`.

    Raises:
        ValueError: for an unknown name or a dataset that is not image classification.
        DatasetNotPreparedError: if the dataset is not prepared and cannot be downloaded.
    """
    data_dir = resolve_data_dir(data_dir)
    builder = _builder(name, data_dir)
    keys = _image_label_keys(builder, name)
    _ensure_prepared(builder, name, data_dir)
    return _dataset_info(builder, *keys)


def _check_args(batch_size: Any, augment: Any, shuffle: Any, seed: Any, cache: Any, drop: Any):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}"
        )
    check_bool("augment", augment, optional=True)
    check_bool("shuffle", shuffle, optional=True)
    check_bool("drop_remainder", drop, optional=True)
    if not isinstance(cache, bool):
        raise ValueError(f"`cache` must be True or False. Received: cache={cache!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"`seed` must be a non-negative integer or None. Received: seed={seed!r}")


def _split_names(split: str) -> list[str]:
    """Base split names of a TFDS split spec: "train[:10%]+test" -> [train, test]."""
    return [re.sub(r"\[.*$", "", part).strip() for part in split.split("+")]


def _num_examples(builder: tfds.core.DatasetBuilder, split: Any, name: str) -> int:
    valid = sorted(builder.info.splits)
    if not isinstance(split, str) or not split:
        raise ValueError(
            f"`split` must be a split name such as 'train' or 'train[:512]'. "
            f"Received: split={split!r}. Valid splits of {name!r}: {valid}"
        )
    try:
        count = builder.info.splits[split].num_examples
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"Unknown split={split!r} for dataset {name!r}. Valid splits: {valid}, "
            f"optionally sliced (e.g. 'train[:512]', 'test[:10%]') or joined with '+'. "
            f"TFDS says: {error}"
        ) from None
    if count == 0:
        raise ValueError(f"split={split!r} of dataset {name!r} selects no examples.")
    return int(count)


def _decode_image(encoded: tf.Tensor, shape: tuple[int, int, int]) -> tf.Tensor:
    """Decodes PNG or JPEG bytes to uint8 of the dataset's fixed `shape`.

    JPEGs are decoded with libjpeg's accurate integer IDCT, as PIL does:
    TensorFlow's default fast IDCT differs by about 1/255 per pixel, enough
    to move the published checkpoints' cifar10_jpeg accuracy by 0.15 points.
    """
    channels = shape[-1]
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=channels, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_png(encoded, channels=channels),
    )
    # tf.cond forgets the height and width; models and batching need them static.
    return tf.ensure_shape(image, shape)


def _scale(images: tf.Tensor) -> tf.Tensor:
    return tf.cast(images, tf.float32) / 255.0


def load(
    name: str,
    split: str = "train",
    batch_size: int = 128,
    augment: bool | None = None,
    shuffle: bool | None = None,
    data_dir: Any = None,
    seed: int | None = None,
    cache: bool = True,
    drop_remainder: bool | None = None,
) -> tf.data.Dataset:
    """Returns a batched, prefetched `tf.data.Dataset` of `(images, labels)` for `model.fit`.

    Images are float32 in [0, 1] with shape `(batch, height, width, channels)`
    as the dataset has them (no other normalisation: the model owns that);
    labels are int64 class indices of shape `(batch,)`.

    Args:
        name: TFDS image-classification dataset, e.g. `"cifar10"`,
            `"fashion_mnist"`, or one prepared in the data directory such as
            `"cifar10_jpeg"`.
        split: TFDS split spec: `"train"`, `"test"`, a slice such as
            `"train[:512]"` or `"train[:90%]"`, or splits joined with `+`.
        batch_size: Examples per batch.
        augment: Apply the papers' augmentation (random crop after 4-pixel
            zero padding, rotation within ±10 degrees, horizontal flip).
            Defaults to True for the train split, False otherwise.
        shuffle: Shuffle the examples every epoch. Defaults like `augment`.
        data_dir: Data directory; defaults to `TFDS_DATA_DIR`, else TFDS's default.
        seed: Makes shuffling and augmentation reproducible: two pipelines
            with the same seed yield identical batches (each epoch differs).
        cache: Keep the decoded images in memory after the first epoch.
        drop_remainder: Drop the last, smaller batch. Defaults to True for
            the train split (when it holds at least one full batch), else False.

    Returns:
        A `tf.data.Dataset` yielding `(images, labels)` batches.

    Raises:
        ValueError: for an unknown dataset or split, a dataset that is not
            fixed-size image classification, or an invalid argument.
        DatasetNotPreparedError: if the dataset is not prepared and cannot be downloaded.
    """
    _check_args(batch_size, augment, shuffle, seed, cache, drop_remainder)
    data_dir = resolve_data_dir(data_dir)
    builder = _builder(name, data_dir)
    image_key, label_key = _image_label_keys(builder, name)
    _ensure_prepared(builder, name, data_dir)
    num_examples = _num_examples(builder, split, name)

    is_train = all(base == "train" for base in _split_names(split))
    augment = is_train if augment is None else augment
    shuffle = is_train if shuffle is None else shuffle
    if drop_remainder is None:
        drop_remainder = is_train and num_examples >= batch_size
    elif drop_remainder and num_examples < batch_size:
        raise ValueError(
            f"drop_remainder=True with batch_size={batch_size} leaves no batch: split "
            f"{split!r} of {name!r} has {num_examples} examples."
        )

    autotune = tf.data.AUTOTUNE
    read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
    shape = tuple(builder.info.features[image_key].shape)
    ds = builder.as_dataset(
        split=split,
        shuffle_files=shuffle,
        read_config=read_config,
        decoders={image_key: tfds.decode.SkipDecoding()},
    )
    ds = ds.map(
        lambda ex: (_decode_image(ex[image_key], shape), ex[label_key]),
        num_parallel_calls=autotune,
    )
    if cache:
        # An iterator torn down early (take(), a break, fit's steps_per_epoch)
        # can end its input early while it is cancelled, and tf.data's memory
        # cache then completes with that truncated pass (seen: 304 of 1,000
        # images under load). With the cardinality asserted the short pass is
        # an error in the dying iterator instead, and the cache completes at
        # exactly `num_examples` elements.
        ds = ds.apply(tf.data.experimental.assert_cardinality(num_examples))
        # Decoded uint8 images: a quarter of the float32 size.
        ds = ds.cache()
    if shuffle:
        buffer = min(num_examples, _MAX_SHUFFLE_BUFFER)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=autotune)
    if augment:
        # One stateless seed per batch from a seeded stream that changes
        # every epoch: reproducible runs, fresh augmentation each epoch.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))
        ds = ds.map(
            lambda batch, s: (augment_images(_scale(batch[0]), s), batch[1]),
            num_parallel_calls=autotune,
        )
    else:
        ds = ds.map(lambda images, labels: (_scale(images), labels), num_parallel_calls=autotune)
    return ds.prefetch(autotune)
