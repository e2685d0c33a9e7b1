"""Convert an LruNet checkpoint published by the authors to Keras and check its accuracy.

    python examples/convert_pretrained.py fashionmnist-lru10-ckpt-09346.t7

The checkpoints are in the authors' repository (github.com/okankop/CNN-layer-reuse,
folder `pretrained/`, MIT licence). Reading them needs torch:
`pip install "keras-reuse[torch]"`. The network (classes, reuse count, width,
input channels) is read from the checkpoint itself; the converted model is
saved as `.keras` and evaluated on the test split of the dataset it was
trained on. The command-line equivalent of the conversion:

    keras-reuse convert fashionmnist-lru10-ckpt-09346.t7 lrunet10_fashion_mnist.keras
"""

import argparse
import os

import keras
import numpy as np

import keras_reuse

# Test data of each published checkpoint, by its (input channels, classes).
DATASETS = {(1, 10): "fashion_mnist", (3, 10): "cifar10", (3, 100): "cifar100"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a .t7 checkpoint of the LruNet authors")
    parser.add_argument("--output", help="the .keras file (default: next to the checkpoint)")
    parser.add_argument("--dataset", help="test data (default: from the checkpoint's shape)")
    parser.add_argument("--test_examples", type=int, help="default: the whole test split")
    args = parser.parse_args()

    model = keras_reuse.load_lrunet_checkpoint(args.checkpoint)
    print(keras_reuse.reuse_summary(model))
    output = args.output or os.path.splitext(os.path.basename(args.checkpoint))[0] + ".keras"
    model.save(output)
    print(f"saved {output}")

    channels, classes = model.input_shape[-1], model.output_shape[-1]
    dataset = args.dataset or DATASETS[channels, classes]
    split = "test" if args.test_examples is None else f"test[:{args.test_examples}]"
    test_ds = keras_reuse.data.load(dataset, split, batch_size=256)
    labels = np.concatenate([y.numpy() for _, y in test_ds])
    # The saved file gives the same predictions as the converted model.
    reloaded = keras.models.load_model(output)
    accuracy = np.mean(reloaded.predict(test_ds, verbose=0).argmax(-1) == labels)
    print(f"{dataset} {split}: {accuracy:.2%} ({len(labels)} images)")


if __name__ == "__main__":
    main()
