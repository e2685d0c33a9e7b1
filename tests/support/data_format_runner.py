"""The both-formats model check (model_test_case.run_data_format_test) in a process of its own.

Keras fixes its backend at import, and TensorFlow's CPU kernels do not run
channels-first convolutions where oneDNN is off (the test processes'
setting), so tests/applications/test_data_format.py runs this under
`KERAS_BACKEND=torch`: `python tests/support/data_format_runner.py DIR NAME...`
prints one JSON line, name -> the relative errors measured, or the failure
(the name "presets": the published Fashion-MNIST LruNets).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import keras
from model_test_case import run_data_format_test, run_preset_data_format_test


def main(argv: list[str]) -> None:
    directory, names = Path(argv[1]), argv[2:]
    results: dict = {"backend": keras.backend.backend()}
    for name in names:
        try:
            if name == "presets":
                results[name] = run_preset_data_format_test()
            else:
                results[name] = run_data_format_test(name, directory)
        except Exception:  # reported to the test, which fails on it
            results[name] = {"error": traceback.format_exc()[-3000:]}
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main(sys.argv)
