"""Train a ShaResNet (shared 3x3 convolutions) on CIFAR-10 with Keras `model.fit`.

    python examples/sharesnet_cifar.py --depth=16 --width=4 --epochs=30
    python examples/sharesnet_cifar.py --depth=16 --width=4 --epochs=30 --noshare  # baseline

Builds the pre-activation Wide ShaResNet WRN-depth-width (blocks 2..n of a
stage share their second 3x3 conv) and prints what sharing saves. The
command-line equivalent, with the papers' recipe:

    keras-reuse train --model=wide_sharesnet --depth=16 --width=4 --dataset=cifar10 --epochs=200
"""

import argparse

import keras

import keras_reuse
from keras_reuse.applications import WideShaResNet
from keras_reuse.training.optimizers import CoupledSGD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--depth", type=int, default=16, help="6n + 4")
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--noshare", action="store_true", help="train the plain ResNet")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--train_examples", type=int, help="use the first N training images")
    parser.add_argument("--test_examples", type=int, help="use the first N test images")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    info = keras_reuse.data.info(args.dataset)
    train_split = "train" if args.train_examples is None else f"train[:{args.train_examples}]"
    test_split = "test" if args.test_examples is None else f"test[:{args.test_examples}]"
    train_ds = keras_reuse.data.load(args.dataset, train_split, args.batch_size, seed=0)
    test_ds = keras_reuse.data.load(args.dataset, test_split, args.batch_size)

    def build(share: bool) -> keras.Model:
        return WideShaResNet(
            depth=args.depth,
            width=args.width,
            share=share,
            num_classes=info.num_classes,
            input_shape=info.input_shape,
            classifier_activation=None,
        )

    params = {s: keras_reuse.reuse_summary(build(s)).unique_params for s in (True, False)}
    print(
        f"WRN-{args.depth}-{args.width}: {params[True]:,} parameters shared, "
        f"{params[False]:,} unshared ({1 - params[True] / params[False]:.0%} saved)"
    )

    model = build(share=not args.noshare)
    steps = len(train_ds)
    model.compile(
        optimizer=CoupledSGD(
            keras.optimizers.schedules.CosineDecay(args.learning_rate, args.epochs * steps),
            momentum=0.9,
            l2=5e-4,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train_ds, epochs=args.epochs, validation_data=test_ds, verbose=2)
    _, accuracy = model.evaluate(test_ds, verbose=0)
    print(f"{'ResNet' if args.noshare else 'ShaResNet'} test accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
