"""The published CIFAR-10 LruNets reproduce, in Keras, the accuracy of the authors' code.

Measured with the authors' PyTorch code on this exact test set (the lossy
`cifar10_jpeg` in ../shared; the papers' 89.34% and 83.91% are on the
original pixels). The suite's longest tests: files named test_accuracy_*
sort first, so pytest-xdist (`--dist loadfile` hands out files in
collection order) starts them at once on separate workers rather than
ending the run waiting for them.
"""

import pytest
from published import CHECKPOINTS, accuracy_percent

from keras_reuse.pretrained import load_lrunet_checkpoint


@pytest.mark.parametrize(
    "filename, expected",
    [("cifar10-lru14-ckpt-08934.t7", 84.35), ("cifar10-lru1-ckpt-08391.t7", 80.17)],
)
def test_converted_checkpoint_reproduces_the_published_accuracy(filename, expected):
    model = load_lrunet_checkpoint(CHECKPOINTS / filename)
    assert accuracy_percent(model, "cifar10_jpeg") == pytest.approx(expected, abs=0.05)
