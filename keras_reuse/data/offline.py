"""`prepare`: build a TFDS dataset offline from the original files a user copied in.

TFDS can only download. `prepare` verifies the user's copy of the original
files against their known digests (`keras_reuse.data.originals`), then runs
TFDS's own registered builder for the dataset with a download manager that
hands it those local files, so the result is what `tfds.load(name)` would
have built online: same version, splits, features and example order.
Nothing reaches the data directory until the whole dataset is built: it is
generated in a temporary directory beside it and renamed into place.
`list_datasets` tells which datasets a data directory holds.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from keras_reuse.data.loading import OFFLINE_DATASETS, resolve_data_dir
from keras_reuse.data.originals import CIFAR, IDX_FILES, CifarRelease, OriginalFile
from keras_reuse.utils import atomic

_log = logging.getLogger(__name__)

_VERSION_DIR = re.compile(r"^\d+\.\d+\.\d+$")


class SourceFileError(ValueError):
    """A source file is not the original: wrong content, truncated or unreadable."""


# --- Reading and verifying the originals --------------------------------------------------


def _digests(data: bytes) -> tuple[str, str]:
    return hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()


def _matches(data: bytes, original: OriginalFile) -> bool:
    if original.size is not None and len(data) != original.size:
        return False
    md5, sha256 = _digests(data)
    return md5 == original.md5 and (original.sha256 is None or sha256 == original.sha256)


def _mismatch(path: Path, original: OriginalFile, data: bytes, what: str) -> SourceFileError:
    md5, _ = _digests(data)
    expected = f"md5 {original.md5}"
    if original.size is not None:
        expected = f"{original.size:,} bytes, {expected}"
    return SourceFileError(
        f"{path} is not the original {original.name}: its {what} has {len(data):,} bytes, "
        f"md5 {md5}; expected {expected}. It is truncated, corrupted or another file: "
        f"copy the original again."
    )


def _registered_sha256(builder: tfds.core.DatasetBuilder) -> dict[str, str]:
    """File name -> SHA-256 TFDS registers for the archive it downloads."""
    infos = builder.url_infos or {}
    return {url.rsplit("/", 1)[-1]: info.checksum for url, info in infos.items()}


def _read_idx(name: str, source: Path, builder: tfds.core.DatasetBuilder) -> dict[str, bytes]:
    originals = IDX_FILES[name]
    found: dict[str, Path] = {}
    for original in originals:
        candidates = [source / f"{original.name}.gz", source / original.name]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(
                f"{name}: {candidates[0]} is missing (nor is the decompressed "
                f"{original.name} there). Expected the four original files in {source}: "
                f"{', '.join(o.name + '.gz' for o in originals)}."
            )
        found[original.name] = path
    registered = _registered_sha256(builder)
    contents = {}
    for original in originals:
        path = found[original.name]
        raw = path.read_bytes()
        if path.suffix != ".gz":
            if not _matches(raw, original):
                raise _mismatch(path, original, raw, "content")
            contents[original.name] = raw
            continue
        try:
            data = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as error:
            raise SourceFileError(
                f"{path} is truncated or not a gzip file ({error}). Expected the original "
                f"{original.name}.gz: copy it again."
            ) from None
        # The archive exactly as TFDS downloads it is the original by TFDS's
        # own checksum; anything else must match in its decompressed content.
        as_published = hashlib.sha256(raw).hexdigest() == registered.get(path.name)
        if not (as_published or _matches(data, original)):
            raise _mismatch(path, original, data, "decompressed content")
        contents[original.name] = data
    return contents


def _cifar_members(name: str, release: CifarRelease, source: Path) -> dict[str, tuple[Path, bytes]]:
    """Returns member name -> (where it was read, bytes) from the folder or the archive."""
    members = [*release.train, *release.test, release.meta]
    folders = [source / release.folder, source]
    folder = next((f for f in folders if (f / release.meta.name).is_file()), None)
    if folder is not None:
        result = {}
        for member in members:
            path = folder / member.name
            if not path.is_file():
                raise FileNotFoundError(
                    f"{name}: {path} is missing. Expected the extracted {release.folder} "
                    f"folder with {', '.join(m.name for m in members)}."
                )
            result[member.name] = (path, path.read_bytes())
        return result
    archive = source / release.archive
    if not archive.is_file():
        raise FileNotFoundError(
            f"{name}: {archive} is missing (nor is there an extracted {source / release.folder} "
            f"folder). Expected the original {release.archive} or its extracted folder in "
            f"{source}."
        )
    wanted = {f"{release.folder}/{m.name}": m.name for m in members}
    result = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for info in tar:
                if info.name in wanted and info.isfile():
                    result[wanted[info.name]] = (archive, tar.extractfile(info).read())
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise SourceFileError(
            f"{archive} is truncated or not a tar.gz archive ({error}). Expected the "
            f"original {release.archive} (md5 {release.archive_md5}): copy it again."
        ) from None
    missing = [m for m in wanted if wanted[m] not in result]
    if missing:
        raise SourceFileError(
            f"{archive} is not the original {release.archive}: it lacks {', '.join(missing)}. "
            f"Expected md5 {release.archive_md5}: copy it again."
        )
    return result


def _cifar_records(batch: dict, label_keys: tuple[bytes, ...]) -> bytes:
    """A python-version batch in the binary version's layout: labels, then 3072 pixels."""
    pixels = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = [np.asarray(batch[k], dtype=np.uint8)[:, None] for k in label_keys]
    return np.concatenate([*labels, pixels], axis=1).tobytes()


def _read_cifar(name: str, source: Path) -> dict[str, bytes]:
    """Returns the files of the binary version (what TFDS's builder reads), from the python one."""
    release = CIFAR[name]
    members = _cifar_members(name, release, source)
    for original in (*release.train, *release.test, release.meta):
        path, data = members[original.name]
        if not _matches(data, original):
            where = path if path.name == original.name else f"{path}:{original.name}"
            raise _mismatch(Path(where), original, data, "content")
    # Unpickling runs code from the file: only ever done on verified originals.
    batches = {m: pickle.loads(members[m][1], encoding="bytes") for m in members}
    return _cifar_binary_files(name, batches)


def _cifar_binary_files(name: str, batches: dict[str, dict]) -> dict[str, bytes]:
    """Converts the python version's unpickled files into the binary version's files."""
    release = CIFAR[name]
    meta = batches[release.meta.name]
    if name == "cifar10":
        files = {
            f"{m.name}.bin": _cifar_records(batches[m.name], (b"labels",))
            for m in (*release.train, *release.test)
        }
        files["batches.meta.txt"] = _names_file(meta[b"label_names"])
        return {f"cifar-10-batches-bin/{k}": v for k, v in files.items()}
    files = {
        f"{m.name}.bin": _cifar_records(batches[m.name], (b"coarse_labels", b"fine_labels"))
        for m in (*release.train, *release.test)
    }
    files["coarse_label_names.txt"] = _names_file(meta[b"coarse_label_names"])
    files["fine_label_names.txt"] = _names_file(meta[b"fine_label_names"])
    return {f"cifar-100-binary/{k}": v for k, v in files.items()}


def _names_file(names: list[bytes]) -> bytes:
    return b"".join(n + b"\n" for n in names)


# --- Running TFDS's builder on local files ------------------------------------------------


def _map_urls(fn: Callable[[str], Any], urls: Any) -> Any:
    if isinstance(urls, dict):
        return {k: _map_urls(fn, v) for k, v in urls.items()}
    if isinstance(urls, (list, tuple)):
        return type(urls)(_map_urls(fn, v) for v in urls)
    return fn(getattr(urls, "url", urls))


class _LocalFiles(tfds.download.DownloadManager):
    """A TFDS download manager that hands out verified local files instead of downloading."""

    def __init__(self, local: dict[str, Path], sizes: dict[str, int], download_dir: Path):
        super().__init__(download_dir=download_dir)
        self._local = local
        self._sizes = sizes
        self._used: set[str] = set()

    def _path(self, url: str) -> Path:
        if url not in self._local:
            raise RuntimeError(
                f"The TFDS builder asked for {url}, which keras_reuse.data.prepare does not "
                "provide; this TFDS version's builder differs from the one prepare knows."
            )
        self._used.add(url)
        return self._local[url]

    def download_and_extract(self, url_or_urls: Any) -> Any:
        return _map_urls(self._path, url_or_urls)

    def download(self, url_or_urls: Any) -> Any:
        raise RuntimeError(f"prepare provides only extracted files; asked for {url_or_urls}")

    def extract(self, path_or_paths: Any) -> Any:
        raise RuntimeError(f"prepare provides only extracted files; asked for {path_or_paths}")

    @property
    def downloaded_size(self) -> int:
        # What an online run records: the size of the archives TFDS downloads.
        return sum(self._sizes.get(url, 0) for url in self._used)


def _write_files(root: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _local_urls(name: str, builder: tfds.core.DatasetBuilder, extracted: Path) -> dict[str, Path]:
    urls = list(builder.url_infos or ())
    if name in IDX_FILES:
        # mnist.py reads the decompressed file that download_and_extract(url.gz) returns.
        return {url: extracted / url.rsplit("/", 1)[-1].removesuffix(".gz") for url in urls}
    # cifar.py joins its prefix folder to the extraction directory of the archive.
    return {url: extracted for url in urls}


def _move_into_place(built: Path, target: Path) -> None:
    created_parent = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic.replace_directory(built, target)
    except OSError:
        if created_parent and not any(target.parent.iterdir()):
            target.parent.rmdir()
        raise


def _build(name: str, files: dict[str, bytes], data_dir: str) -> str:
    """Runs TFDS's builder for `name` on `files` (relative path -> bytes) into `data_dir`."""
    try:
        os.makedirs(data_dir, exist_ok=True)
        # In the data directory itself, so the final rename stays on one file system.
        scratch = Path(tempfile.mkdtemp(prefix=f".prepare-{name}-", dir=data_dir))
    except OSError as error:
        raise atomic.AtomicWriteError(data_dir, error) from error
    try:
        builder = tfds.builder(name, data_dir=os.fspath(scratch / "data"))
        built = Path(builder.data_dir)
        target = Path(data_dir) / built.relative_to(scratch / "data")
        extracted = scratch / "extracted"
        sizes = {url: int(info.size) for url, info in (builder.url_infos or {}).items()}
        manager = _LocalFiles(_local_urls(name, builder, extracted), sizes, scratch / "downloads")
        # TFDS has no public hook for the download manager; replacing this
        # factory on the instance is the one seam between downloading and
        # generating. tests/data/test_prepare.py catches a TFDS that moves it.
        builder._make_download_manager = lambda **_: manager
        try:
            _write_files(extracted, files)
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False)
            )
        except OSError as error:  # a full disk, most likely: name the destination
            raise atomic.AtomicWriteError(os.fspath(target), error) from error
        _move_into_place(built, target)
        return os.fspath(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def prepare(name: str, source_dir: Any, data_dir: Any = None) -> str:
    """Builds the TFDS dataset `name` from the original files in `source_dir`, offline.

    Accepted originals: for `mnist` and `fashion_mnist` the four IDX files
    (`train-images-idx3-ubyte.gz`, ..., gzipped or not, gzip headers may
    differ from upstream); for `cifar10` / `cifar100` the python version,
    `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz` or the folder it
    extracts to. Their content is checked against the known digests first;
    then TFDS's registered builder turns them into the same dataset
    `tfds.load(name)` builds online.

    Args:
        name: One of `"cifar10"`, `"cifar100"`, `"fashion_mnist"`, `"mnist"`.
        source_dir: Directory holding the original files.
        data_dir: Data directory to prepare into; defaults to
            `TFDS_DATA_DIR`, else TFDS's default.

    Returns:
        The prepared dataset's directory, e.g. `<data_dir>/fashion_mnist/3.0.1`.
        If the dataset is already prepared there, that directory, without
        reading `source_dir`.

    Raises:
        ValueError: for an unknown `name` or a `source_dir` that is not a directory.
        FileNotFoundError: if an original file is missing from `source_dir`.
        SourceFileError: if a file is truncated or is not the original.
        keras_reuse.utils.atomic.AtomicWriteError: (an OSError) naming the
            destination, if the OS refuses a write (full disk, read-only
            directory); nothing is left in the data directory.
    """
    if name not in OFFLINE_DATASETS:
        raise ValueError(
            f"prepare() cannot build name={name!r} from local files. Valid names: "
            f"{', '.join(OFFLINE_DATASETS)}."
        )
    if not isinstance(source_dir, (str, os.PathLike)) or not os.path.isdir(source_dir):
        raise ValueError(
            f"`source_dir` must be a directory holding the original {name} files. "
            f"Received: source_dir={source_dir!r}"
        )
    data_dir = resolve_data_dir(data_dir)
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        _log.info("%s is already prepared in %s", name, builder.data_dir)
        return os.fspath(builder.data_dir)
    source = Path(source_dir)
    if name in IDX_FILES:
        files = _read_idx(name, source, builder)
    else:
        files = _read_cifar(name, source)
    return _build(name, files, data_dir)


# --- What a data directory holds ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DatasetStatus:
    """Whether one dataset is prepared in a data directory.

    Attributes:
        name: TFDS name (with `/config` when it has one).
        prepared: Whether a prepared version is there.
        versions: Prepared versions found, oldest first.
        splits: Examples per split of the newest prepared version.
        offline: Whether `prepare` can build it from original files.
    """

    name: str
    prepared: bool
    versions: tuple[str, ...] = ()
    splits: dict[str, int] = dataclasses.field(default_factory=dict)
    offline: bool = False


def _splits_of(version_dir: Path) -> dict[str, int]:
    try:
        info = json.loads((version_dir / "dataset_info.json").read_text())
    except (OSError, ValueError):
        return {}
    return {
        s["name"]: sum(int(n) for n in s.get("shardLengths", ())) for s in info.get("splits", ())
    }


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def list_datasets(data_dir: Any = None) -> list[DatasetStatus]:
    """Lists the datasets prepared in a data directory, and the offline ones that are not.

    Args:
        data_dir: Data directory; defaults to `TFDS_DATA_DIR`, else TFDS's default.

    Returns:
        One `DatasetStatus` per dataset, sorted by name.

    Raises:
        ValueError: if `data_dir` is not a path.
    """
    root = Path(resolve_data_dir(data_dir))
    found: dict[str, list[Path]] = {}
    if root.is_dir():
        for info_file in [
            *root.glob("*/*/dataset_info.json"),
            *root.glob("*/*/*/dataset_info.json"),
        ]:
            version_dir = info_file.parent
            dataset = version_dir.parent.relative_to(root).as_posix()
            # Hidden entries are `prepare`'s scratch directories.
            if (
                not dataset.startswith((".", "downloads/"))
                and _VERSION_DIR.match(version_dir.name)
                and (version_dir / "features.json").is_file()
            ):
                found.setdefault(dataset, []).append(version_dir)
    statuses = []
    for name in sorted(set(found) | set(OFFLINE_DATASETS)):
        dirs = sorted(found.get(name, ()), key=lambda d: _version_key(d.name))
        statuses.append(
            DatasetStatus(
                name=name,
                prepared=bool(dirs),
                versions=tuple(d.name for d in dirs),
                splits=_splits_of(dirs[-1]) if dirs else {},
                offline=name in OFFLINE_DATASETS,
            )
        )
    return statuses
