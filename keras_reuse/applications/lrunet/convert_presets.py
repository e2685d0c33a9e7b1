"""Converts the LruNet authors' checkpoints into the weights files this package ships.

    pip install -e ".[torch]"
    python -m keras_reuse.applications.lrunet.convert_presets --checkpoints=DIR

For every preset of `keras_reuse.applications.lrunet.presets` it converts
the authors' PyTorch checkpoint with `keras_reuse.load_lrunet_checkpoint`,
checks that the network it holds is the one the table describes, writes
`keras_reuse/applications/lrunet/weights/<preset>.weights.h5` (atomically) and
writes the file's SHA-256 into the table. Run it again and compare: anyone
can regenerate the shipped weights from the published files.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import re
import sys

import numpy as np

from keras_reuse.applications.lrunet.checkpoint import load_lrunet_checkpoint
from keras_reuse.applications.lrunet.presets import PRESETS
from keras_reuse.utils import atomic

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = os.path.join(HERE, "presets.py")
WEIGHTS = os.path.join(HERE, "weights")


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(checkpoints: str) -> dict[str, str]:
    """Writes every preset's weights file; returns `{preset name: sha256}`."""
    digests = {}
    for preset in PRESETS.values():
        model = load_lrunet_checkpoint(os.path.join(checkpoints, preset.checkpoint))
        params = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        got = (tuple(model.input_shape[1:]), int(model.output_shape[-1]), params)
        want = (preset.input_shape, preset.num_classes, preset.trainable_params)
        if got != want:
            raise SystemExit(f"{preset.checkpoint}: (input shape, classes, params) {got} != {want}")
        target = os.path.join(WEIGHTS, preset.file)
        atomic.write_file(target, functools.partial(model.save_weights, overwrite=True))
        digests[preset.name] = sha256(target)
        print(
            f"{preset.name}: {preset.file} {os.path.getsize(target):,} bytes "
            f"sha256 {digests[preset.name]}",
            flush=True,
        )
    return digests


def write_digests(digests: dict[str, str]) -> None:
    with open(TABLE) as file:
        text = file.read()
    for name, digest in digests.items():
        pattern = re.compile(rf'(name="{re.escape(name)}",.*?sha256=")[^"]*(")', re.S)
        text, count = pattern.subn(rf"\g<1>{digest}\g<2>", text, count=1)
        if count != 1:
            raise SystemExit(f"preset {name!r} not found in {TABLE}")
    atomic.write_text(TABLE, text)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoints",
        required=True,
        help="Directory of the authors' .t7 checkpoints.",
    )
    args = parser.parse_args(argv)
    if not os.path.isdir(args.checkpoints):
        parser.error(f"--checkpoints: no such directory: {args.checkpoints!r}")
    os.makedirs(WEIGHTS, exist_ok=True)
    write_digests(convert(args.checkpoints))


if __name__ == "__main__":
    main(sys.argv[1:])
