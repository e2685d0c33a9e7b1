"""`keras-reuse convert CKPT.t7 OUT.keras`: an authors' LruNet checkpoint to Keras.

Reads a PyTorch checkpoint published by the LruNet authors (needs the
`torch` extra), builds the Keras LruNet it describes and saves it as a
`.keras` file, written atomically: a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

from absl import app

if TYPE_CHECKING:
    import keras

USAGE = "usage: keras-reuse convert CKPT.t7 OUT.keras"


def save_atomically(model: keras.Model, path: str) -> None:
    """Saves `model` to the `.keras` file `path` through a temporary sibling.

    Args:
        model: The `keras.Model` to save.
        path: Destination ending in `.keras`; its directory must exist.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=".keras", prefix=".convert-", dir=directory)
    os.close(fd)
    try:
        model.save(tmp)
        # mkstemp creates the file private (0600); give it the mode a plain
        # open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main(argv: list[str]) -> None:
    args = argv[1:]
    if len(args) != 2:
        raise app.UsageError(f"{USAGE} (expected 2 arguments, received {len(args)})", exitcode=2)
    checkpoint, output = args
    if not os.path.isfile(checkpoint):
        raise app.UsageError(f"CKPT: no such file: {checkpoint!r}", exitcode=2)
    if not output.endswith(".keras"):
        raise app.UsageError(f"OUT must end in .keras. Received: {output!r}", exitcode=2)
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise app.UsageError(f"OUT's directory does not exist: {out_dir!r}", exitcode=2)

    from keras_reuse.pretrained import load_lrunet_checkpoint

    try:
        model = load_lrunet_checkpoint(checkpoint)
    except (ValueError, ImportError) as error:
        raise app.UsageError(str(error), exitcode=2) from error
    save_atomically(model, output)
    print(
        f"wrote {output}: {model.name}, {model.count_params():,} parameters, "
        f"input {model.input_shape[1:]}, {model.output_shape[-1]} classes (logits)"
    )
