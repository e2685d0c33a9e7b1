"""`python -m keras_reuse.train [flags]`: the same as `keras-reuse train`."""

import sys

from keras_reuse.cli import run

if __name__ == "__main__":
    run([sys.argv[0], "train", *sys.argv[1:]])
