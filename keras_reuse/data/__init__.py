"""Input data: TFDS image-classification datasets as fast `tf.data` pipelines, offline too.

`load(name, split)` returns batches of `(images, labels)` ready for
`model.fit`; `info(name)` tells a model what it needs (classes, input
shape, split sizes); `augment_images` is the papers' augmentation on its
own; `prepare(name, source_dir)` builds a TFDS dataset from original files
without network and `list_datasets()` shows what a data directory holds.
"""

from keras_reuse.utils.backends import require_installed

try:
    from keras_reuse.data.augment import augment_images
    from keras_reuse.data.loading import (
        OFFLINE_DATASETS,
        DatasetInfo,
        DatasetNotPreparedError,
        info,
        load,
        resolve_data_dir,
    )
    from keras_reuse.data.offline import DatasetStatus, SourceFileError, list_datasets, prepare
except ImportError:  # Optional: TensorFlow and TFDS; say so clearly where they are missing
    require_installed("keras_reuse.data", ("tensorflow", "tensorflow_datasets"))
    raise

__all__ = [
    "OFFLINE_DATASETS",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "DatasetStatus",
    "SourceFileError",
    "augment_images",
    "info",
    "list_datasets",
    "load",
    "prepare",
    "resolve_data_dir",
]
