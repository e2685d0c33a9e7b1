"""For the published-accuracy tests: where the checkpoints are, and test-set accuracy."""

from pathlib import Path

import keras
import numpy as np

from keras_reuse import data

CHECKPOINTS = Path(__file__).resolve().parents[2] / "shared" / "pretrained" / "lrunet-pytorch"


def accuracy_percent(model: keras.Model, dataset_name: str) -> float:
    """Top-1 accuracy of `model` on the whole test split, through keras_reuse.data."""
    # Batches of 200: on this 2-core CPU larger ones run slower per image.
    test = data.load(dataset_name, split="test", batch_size=200, augment=False, shuffle=False)
    correct = total = 0
    for images, labels in test:
        predicted = np.argmax(model.predict_on_batch(images), axis=1)
        correct += int(np.sum(predicted == labels.numpy()))
        total += len(predicted)
    assert total == 10_000
    return 100.0 * correct / total
