"""Train a model with the keras-reuse flags, e.g. the LruNet paper's recipe.

    python examples/train.py --model=lrunet --layer_reuse=10 --dataset=fashion_mnist \
        --epochs=300 --output_dir=runs/lrunet10

is the same as `keras-reuse train ...` (TensorFlow's start-up settings included:
`keras_reuse_cli`).
See examples/fit_lrunet.py for the same training in plain Keras.
"""

import sys

from keras_reuse_cli import run

if __name__ == "__main__":
    run([sys.argv[0], "train", *sys.argv[1:]])
