"""`keras-reuse convert CKPT.t7 OUT.keras`: an authors' LruNet checkpoint to Keras.

Reads a PyTorch checkpoint published by the LruNet authors (needs the
`torch` extra), builds the Keras LruNet it describes and saves it as a
`.keras` file, written atomically: a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import os
import sys

from absl import app

from keras_reuse.utils import atomic

USAGE = "usage: keras-reuse convert CKPT.t7 OUT.keras"


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

    # Lazy: TensorFlow starts only after the flags have parsed.
    from keras_reuse.applications.lrunet.checkpoint import load_lrunet_checkpoint

    try:
        model = load_lrunet_checkpoint(checkpoint)
    except (ValueError, ImportError) as error:
        raise app.UsageError(str(error), exitcode=2) from error
    try:
        atomic.save_model(model, output)
    except OSError as error:
        print(f"keras-reuse convert: error: {error}", file=sys.stderr)
        sys.exit(1)
    print(
        f"wrote {output}: {model.name}, {model.count_params():,} parameters, "
        f"input {model.input_shape[1:]}, {model.output_shape[-1]} classes (logits)"
    )
