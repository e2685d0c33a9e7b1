"""The published CIFAR-10 LruNets, as shipped, reproduce in Keras the accuracy of the authors' code.

Measured with the authors' PyTorch code on this exact test set (the lossy
`cifar10_jpeg` in ../shared; the papers' 89.34% and 83.91% are on the
original pixels); both figures live in the presets table. The weights are
the shipped files, run where `import torch` fails. The suite's longest
tests: tests/conftest.py collects this file first, so pytest-xdist starts
it at once rather than ending the run waiting for it.
"""

import pytest
from published import preset_accuracy_without_torch

from keras_reuse.applications.lrunet.presets import PRESETS


@pytest.mark.parametrize("name", ["lrunet14_cifar10", "lrunet1_cifar10"])
def test_shipped_preset_reproduces_the_published_accuracy(name):
    preset = PRESETS[name]
    result = preset_accuracy_without_torch(preset.name, preset.eval_dataset)
    assert result["keras"] == pytest.approx(preset.accuracy, abs=0.05)
