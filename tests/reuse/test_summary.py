"""reuse_summary on our models and on a user's own functional model."""

import keras
import pytest

from keras_reuse import LruNet, reuse_summary


def test_lrunet14_summary_shows_each_stage_reused_14_times():
    summary = reuse_summary(LruNet(layer_reuse=14))
    reused = {row.name: row.calls for row in summary.reused}
    assert reused == {f"stage{s}_{k}": 14 for s in range(1, 5) for k in ("dw", "pw")}
    assert summary.unique_params == 206_282
    stage_params = sum(row.params for row in summary.reused)
    # Unrolling adds 13 more copies of every stage's dw and pw kernels.
    assert summary.unrolled_params == 206_282 + 13 * stage_params
    # About 36 M MACs per 32x32 image (issue 7's figure).
    assert 35e6 < summary.macs < 37e6
    text = str(summary)
    assert "stage4_pw" in text and "GroupedPointwiseConv" in text
    assert "206,282" in text and f"{summary.unrolled_params:,}" in text


def test_user_model_with_a_shared_dense_layer():
    inputs = keras.Input((8,))
    dense = keras.layers.Dense(8, name="shared")
    x = dense(inputs)
    x = dense(x)
    x = dense(x)
    outputs = keras.layers.Dense(2, name="out")(x)
    summary = reuse_summary(keras.Model(inputs, outputs))
    assert summary.calls == {"shared": 3, "out": 1}
    assert summary.unique_params == 72 + 18
    assert summary.unrolled_params == 3 * 72 + 18
    assert summary.macs == 3 * 64 + 16


def test_sequential_model_has_no_reuse():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    summary = reuse_summary(model)
    assert summary.reused == ()
    assert summary.unique_params == summary.unrolled_params == 15 + 8
    assert "no layer is called more than once" in str(summary)


def test_rejects_a_subclassed_model():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match=r"functional.*model=<"):
        reuse_summary(Net())
