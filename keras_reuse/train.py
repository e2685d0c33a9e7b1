"""`python -m keras_reuse.train [flags]`: `keras-reuse train` once TensorFlow has started.

Python imports the `keras_reuse` package, and so TensorFlow, before this
module runs, so the console script's start-up settings (`keras_reuse_cli`:
quiet start, oneDNN on x86-64) are not made here; `keras-reuse train` and
`python -m keras_reuse_cli train` make them.
"""

import sys

from keras_reuse.cli import run

if __name__ == "__main__":
    run([sys.argv[0], "train", *sys.argv[1:]])
