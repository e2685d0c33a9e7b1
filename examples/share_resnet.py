"""Share the 3x3 convolutions of your own Keras ResNet, then train both on CIFAR-10.

    python examples/share_resnet.py --epochs=3 --train_examples=10000

Builds a small CIFAR ResNet (ResNet-20: three stages of three basic blocks,
16/32/64 channels) the way a user would, with keras.applications' layer names
(`conv3_block2_2_conv`), makes it a ShaResNet with
`keras_reuse.share(model, resnet_stage_rule)` (in each stage the second 3x3
conv of every block that keeps the resolution is one shared layer), and
trains the two side by side with the same seed, data and recipe. It prints
the parameters and the test accuracy of each, and checks that `unshare`
gives back a network computing exactly what the shared one computes.
"""

import argparse

import keras
import numpy as np

import keras_reuse
from keras_reuse.reuse.sharing import resnet_stage_rule


def small_resnet(input_shape: tuple, num_classes: int, blocks: int = 3) -> keras.Model:
    """A CIFAR ResNet-(6 * blocks + 2) with basic blocks, named like keras.applications."""
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1_conv")(inputs)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.ReLU(name="conv1_relu")(x)
    for stage, filters in enumerate((16, 32, 64)):
        for b in range(1, blocks + 1):
            name = f"conv{stage + 2}_block{b}"
            stride = 2 if stage and b == 1 else 1
            shortcut = x
            if stride > 1:
                shortcut = layers.Conv2D(
                    filters, 1, strides=stride, use_bias=False, name=f"{name}_0_conv"
                )(x)
                shortcut = layers.BatchNormalization(name=f"{name}_0_bn")(shortcut)
            for i, s in ((1, stride), (2, 1)):
                x = layers.Conv2D(
                    filters, 3, strides=s, padding="same", use_bias=False, name=f"{name}_{i}_conv"
                )(x)
                x = layers.BatchNormalization(name=f"{name}_{i}_bn")(x)
                if i == 1:
                    x = layers.ReLU(name=f"{name}_1_relu")(x)
            x = layers.Add(name=f"{name}_add")([shortcut, x])
            x = layers.ReLU(name=f"{name}_out")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, outputs, name=f"resnet{6 * blocks + 2}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10_jpeg")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--train_examples", type=int, help="use the first N training images")
    parser.add_argument("--test_examples", type=int, help="use the first N test images")
    args = parser.parse_args()

    info = keras_reuse.data.info(args.dataset)
    train_split = "train" if args.train_examples is None else f"train[:{args.train_examples}]"
    test_split = "test" if args.test_examples is None else f"test[:{args.test_examples}]"
    train_ds = keras_reuse.data.load(args.dataset, train_split, args.batch_size, seed=0)
    test_ds = keras_reuse.data.load(args.dataset, test_split, args.batch_size)

    keras.utils.set_random_seed(0)
    resnet = small_resnet(info.input_shape, info.num_classes)
    sharesnet = keras_reuse.share(resnet, resnet_stage_rule, init="first")
    # unshare gives every call its own copy: the same function, unrolled.
    images = next(iter(test_ds))[0][:8]
    unrolled = keras_reuse.unshare(sharesnet)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(unrolled(images)),
        keras.ops.convert_to_numpy(sharesnet(images)),
        rtol=1e-5,
        atol=1e-5,
    )

    results = {}
    for model in (resnet, sharesnet):
        keras.utils.set_random_seed(0)
        schedule = keras.optimizers.schedules.CosineDecay(
            args.learning_rate, args.epochs * len(train_ds)
        )
        keras_reuse.compile_for_training(model, learning_rate=schedule)
        model.fit(train_ds, epochs=args.epochs, verbose=2)
        _, accuracy = model.evaluate(test_ds, verbose=0)
        results[model] = accuracy

    for label, model in (("ResNet", resnet), ("ShaResNet", sharesnet)):
        summary = keras_reuse.reuse_summary(model)
        print(f"{label}: {summary.unique_params:,} parameters, test accuracy {results[model]:.4f}")


if __name__ == "__main__":
    main()
