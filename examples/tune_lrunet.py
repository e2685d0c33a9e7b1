"""Search LruNet's hyperparameters with keras-tuner on Fashion-MNIST.

    python examples/tune_lrunet.py --max_trials=10 --epochs=5

`LruNetHyperModel` works with any keras-tuner tuner; here RandomSearch,
scored on images held out of the training split. The command-line
equivalent (which also writes best.json and trials.csv):

    keras-reuse tune --model=lrunet --dataset=fashion_mnist --max_trials=10 --epochs=5 \
        --layer_reuse=1,2,4,8,10 --width_multiplier=0.5,1 --output_dir=runs/tune
"""

import argparse

import keras_tuner

import keras_reuse
from keras_reuse.experiments.tuning import LruNetHyperModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--layer_reuse", default="1,2,4,8,10", help="choices, comma-separated")
    parser.add_argument("--width_multiplier", default="0.5,1", help="choices, comma-separated")
    parser.add_argument("--train_examples", type=int, default=55_000)
    parser.add_argument("--validation_examples", type=int, default=5_000)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--directory", default="runs/tune_lrunet_example")
    args = parser.parse_args()

    info = keras_reuse.data.info("fashion_mnist")
    hypermodel = LruNetHyperModel(
        num_classes=info.num_classes,
        input_shape=info.input_shape,
        layer_reuse=[int(v) for v in args.layer_reuse.split(",")],
        width_multiplier=[float(v) for v in args.width_multiplier.split(",")],
        dropout=(0.0, 0.5),
        learning_rate=(0.01, 0.2),
    )
    n, v = args.train_examples, args.validation_examples
    train_ds = keras_reuse.data.load("fashion_mnist", f"train[:{n}]", args.batch_size, seed=0)
    # Trials are scored on training images they did not train on; the test set stays unseen.
    val_ds = keras_reuse.data.load(
        "fashion_mnist", f"train[{n}:{n + v}]", args.batch_size, augment=False, shuffle=False
    )

    tuner = keras_tuner.RandomSearch(
        hypermodel,
        objective="val_accuracy",
        max_trials=args.max_trials,
        seed=0,
        directory=args.directory,
        project_name="lrunet",
        overwrite=True,
    )
    tuner.search_space_summary()
    tuner.search(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=2)
    tuner.results_summary(num_trials=3)

    best = tuner.get_best_hyperparameters(1)[0]
    print("best hyperparameters:", best.values)
    print("retrain with: keras-reuse train " + " ".join(hypermodel.train_flags(best.values)))


if __name__ == "__main__":
    main()
