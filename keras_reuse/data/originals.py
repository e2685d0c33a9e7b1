"""Known digests of the original dataset files that `prepare` accepts, and where they come from.

`prepare` checks the *content* a user copied in against these, not only the
archive bytes: a distribution may recompress a file (Debian's
`dataset-fashion-mnist` ships .gz files whose gzip headers differ from
upstream while the decompressed IDX files are identical), so for each
original we record the size and digests of the decompressed file.

Sources:
- MNIST and Fashion-MNIST: the four IDX files, decompressed. The MD5s are the
  published values of the uncompressed originals (yann.lecun.com/exdb/mnist
  and github.com/zalandoresearch/fashion-mnist; they are repeated in many
  public projects). The Fashion-MNIST SHA-256s were computed here from the
  Debian package `dataset-fashion-mnist` 0.0~git20200523.55506a9-1, whose
  decompressed files have exactly those MD5s, and `prepare` turns them into a
  TFDS dataset equal example for example to one TFDS built from the upstream
  files (whose .gz SHA-256s equal TFDS's registered checksums). The .gz files
  as published are accepted too when their SHA-256 equals the checksum TFDS
  registers for its download URL (`tensorflow_datasets/url_checksums`).
- CIFAR-10 and CIFAR-100 (python version): the MD5s of the archive members
  (`cifar-10-batches-py/data_batch_1`, ...) as torchvision's `CIFAR10` and
  `CIFAR100` datasets record them, and the archive MD5s published on
  https://www.cs.toronto.edu/~kriz/cifar.html.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class OriginalFile:
    """One original file, decompressed.

    Attributes:
        name: File name as published, without any `.gz`.
        md5: MD5 of the content.
        size: Size of the content in bytes, or None where not recorded.
        sha256: SHA-256 of the content, where recorded.
    """

    name: str
    md5: str
    size: int | None = None
    sha256: str | None = None


# IDX files: (images train, labels train, images test, labels test).
IDX_FILES: dict[str, tuple[OriginalFile, ...]] = {
    "mnist": (
        OriginalFile("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb", 47_040_016),
        OriginalFile("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624", 60_008),
        OriginalFile("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea", 7_840_016),
        OriginalFile("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637", 10_008),
    ),
    "fashion_mnist": (
        OriginalFile(
            "train-images-idx3-ubyte",
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            47_040_016,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        OriginalFile(
            "train-labels-idx1-ubyte",
            "9018921c3c673c538a1fc5bad174d6f9",
            60_008,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        OriginalFile(
            "t10k-images-idx3-ubyte",
            "8181f5470baa50b63fa0f6fddb340f0a",
            7_840_016,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        OriginalFile(
            "t10k-labels-idx1-ubyte",
            "15d484375f8d13e6eb1aabb0c3f46965",
            10_008,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    ),
}


@dataclasses.dataclass(frozen=True)
class CifarRelease:
    """The python version of a CIFAR release.

    Attributes:
        archive: Archive file name as published.
        archive_md5: MD5 of the archive as published.
        folder: Folder the archive extracts to.
        train: Training batches (pickles), in order.
        test: Test batches.
        meta: The pickle holding the label names.
    """

    archive: str
    archive_md5: str
    folder: str
    train: tuple[OriginalFile, ...]
    test: tuple[OriginalFile, ...]
    meta: OriginalFile


CIFAR: dict[str, CifarRelease] = {
    "cifar10": CifarRelease(
        archive="cifar-10-python.tar.gz",
        archive_md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train=(
            OriginalFile("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            OriginalFile("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            OriginalFile("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            OriginalFile("data_batch_4", "634d18415352ddfa80567beed471001a"),
            OriginalFile("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        ),
        test=(OriginalFile("test_batch", "40351d587109b95175f43aff81a1287e"),),
        meta=OriginalFile("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
    ),
    "cifar100": CifarRelease(
        archive="cifar-100-python.tar.gz",
        archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train=(OriginalFile("train", "16019d7e3df5f24257cddd939b257f8d"),),
        test=(OriginalFile("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
        meta=OriginalFile("meta", "7973b15100ade9c7d40fb424638fde48"),
    ),
}
