"""`keras-reuse data`: prepare TFDS datasets offline from original files, list what is prepared.

  keras-reuse data prepare NAME --from DIR [--data_dir OUT]
  keras-reuse data list [--data_dir OUT]

NAME is one of cifar10, cifar100, fashion_mnist, mnist. The data directory
defaults to $TFDS_DATA_DIR, else ~/tensorflow_datasets. Bad arguments end
with a one-line error and exit code 2 before anything is read or written;
source files that are not the originals, or a write the OS refuses, exit 1.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from keras_reuse.data import OFFLINE_DATASETS, list_datasets, prepare, resolve_data_dir

FLAGS = flags.FLAGS


def _define_string(name: str, help_text: str) -> None:
    # `train` declares --data_dir too. When both modules share a process
    # (tests), the flag is one and the same, whichever is imported first.
    if name not in FLAGS:
        flags.DEFINE_string(name, None, help_text, allow_override=True)


flags.DEFINE_string("from", None, "prepare: directory holding the original dataset files.")
_define_string("data_dir", "TFDS data directory (default: $TFDS_DATA_DIR).")

_USAGE = (
    "expected `prepare NAME --from DIR [--data_dir OUT]` or `list [--data_dir OUT]`, "
    f"NAME one of {', '.join(OFFLINE_DATASETS)}"
)


def _fail(command: str, error: Exception) -> None:
    print(f"keras-reuse data {command}: error: {error}", file=sys.stderr)
    sys.exit(1)


def _prepare(args: list[str]) -> None:
    if len(args) != 1:
        raise app.UsageError(f"prepare takes one dataset name; received {args}. {_USAGE}")
    if args[0] not in OFFLINE_DATASETS:
        raise app.UsageError(
            f"NAME={args[0]}: prepare builds {', '.join(OFFLINE_DATASETS)} only. {_USAGE}"
        )
    source = FLAGS["from"].value
    if source is None:
        raise app.UsageError(f"prepare needs --from DIR. {_USAGE}")
    if not os.path.isdir(source):
        raise app.UsageError(f"--from={source}: not a directory")
    _check_data_dir()
    try:
        path = prepare(args[0], source, FLAGS.data_dir)
    except (ValueError, OSError) as error:
        _fail("prepare", error)
    print(f"{args[0]} is prepared in {path}")


def _check_data_dir() -> None:
    data_dir = FLAGS.data_dir
    if data_dir is not None and os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise app.UsageError(f"--data_dir={data_dir}: exists and is not a directory")


def _format_splits(splits: dict[str, int]) -> str:
    return " / ".join(f"{name} {count:,}" for name, count in splits.items())


def _list(args: list[str]) -> None:
    if args:
        raise app.UsageError(f"list takes no arguments; received {args}. {_USAGE}")
    if FLAGS["from"].present:
        raise app.UsageError("--from applies to `prepare` only.")
    _check_data_dir()
    try:
        data_dir = resolve_data_dir(FLAGS.data_dir)
        statuses = list_datasets(data_dir)
    except (ValueError, OSError) as error:
        _fail("list", error)
    print(f"Datasets in {data_dir}:")
    width = max(len(s.name) for s in statuses)
    for status in statuses:
        if status.prepared:
            state = f"prepared {', '.join(status.versions):<8} {_format_splits(status.splits)}"
        else:
            state = f"not prepared   keras-reuse data prepare {status.name} --from DIR"
        print(f"  {status.name:<{width}}  {state}")


def main(argv: list[str]) -> None:
    args = argv[1:]
    if not args:
        raise app.UsageError(_USAGE)
    command, rest = args[0], args[1:]
    if command == "prepare":
        _prepare(rest)
    elif command == "list":
        _list(rest)
    else:
        raise app.UsageError(f"unknown command {command!r}; {_USAGE}")
