"""Train LruNet on Fashion-MNIST with plain Keras `model.fit`.

    python examples/fit_lrunet.py --layer_reuse=10 --epochs=30

The command-line equivalent, with the paper's full recipe (step schedule,
crash-safe checkpoints, TensorBoard logs):

    keras-reuse train --model=lrunet --layer_reuse=10 --dataset=fashion_mnist --epochs=300
"""

import argparse

import keras

import keras_reuse
from keras_reuse.applications import LruNet
from keras_reuse.training.optimizers import CoupledSGD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--layer_reuse", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--train_examples", type=int, help="use the first N training images")
    parser.add_argument("--test_examples", type=int, help="use the first N test images")
    parser.add_argument("--output", default="lrunet.keras", help="where to save the model")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    info = keras_reuse.data.info(args.dataset)
    train_split = "train" if args.train_examples is None else f"train[:{args.train_examples}]"
    test_split = "test" if args.test_examples is None else f"test[:{args.test_examples}]"
    # Shuffled and augmented (crop, rotation, flip) because it is a train split.
    train_ds = keras_reuse.data.load(args.dataset, train_split, args.batch_size, seed=0)
    test_ds = keras_reuse.data.load(args.dataset, test_split, args.batch_size)

    model = LruNet(
        num_classes=info.num_classes,
        input_shape=info.input_shape,
        layer_reuse=args.layer_reuse,
        classifier_activation=None,
    )
    print(keras_reuse.reuse_summary(model))

    # The paper's learning rate steps: /10 after 2/3 and again after 5/6 of training.
    steps = len(train_ds)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [round(args.epochs * 2 / 3) * steps - 1, round(args.epochs * 5 / 6) * steps - 1],
        [args.learning_rate, args.learning_rate / 10, args.learning_rate / 100],
    )
    model.compile(
        # PyTorch's SGD(momentum=0.9, weight_decay=5e-4), as the authors trained.
        optimizer=CoupledSGD(schedule, momentum=0.9, l2=5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train_ds, epochs=args.epochs, validation_data=test_ds, verbose=2)
    _, accuracy = model.evaluate(test_ds, verbose=0)
    print(f"test accuracy: {accuracy:.4f}")
    model.save(args.output)
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
