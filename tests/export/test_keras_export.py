"""Keras's own `model.export(..., format="litert")` on our models.

It computes what the model computes. It stores a shared kernel once only
while every call's BatchNorm is the identity (an untrained model): TFLite's
converter folds each call's BatchNorm into its copy of the kernel, so once
the statistics differ per call (any trained model) every call gets a kernel
of its own and the file holds about 4 bytes per *unrolled* parameter.
`to_tflite` keeps them shared (tests/export/test_export.py).
"""

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from keras_reuse import LruNet, reuse_summary


def _run(path, images):
    interpreter = Interpreter(str(path))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"])[0])
    return np.stack(outputs)


def _randomise_batch_norms(model, seed=0):
    """Gives every BatchNorm statistics and an affine map of its own, as training does."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                    rng.normal(0, 0.1, beta.shape).astype(np.float32),
                    rng.normal(0, 0.1, mean.shape).astype(np.float32),
                    rng.uniform(0.5, 1.5, variance.shape).astype(np.float32),
                ]
            )


@pytest.fixture(scope="module", params=["untrained", "trained"])
def exports(request, tmp_path_factory):
    model = LruNet(layer_reuse=2, input_shape=(28, 28, 1), classifier_activation=None)
    if request.param == "trained":
        _randomise_batch_norms(model)
    out = tmp_path_factory.mktemp("keras_export")
    model.export(str(out / "keras.tflite"), format="litert", verbose=False)
    return request.param, model, out / "keras.tflite"


def test_keras_export_computes_what_the_model_computes(exports):
    _, model, path = exports
    images = np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    expected = model.predict(images, verbose=0)
    got = _run(path, images)
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())


def test_keras_export_keeps_shared_kernels_once_only_while_batch_norm_is_the_identity(exports):
    state, model, path = exports
    summary = reuse_summary(model)
    assert summary.unrolled_params > 1.5 * summary.unique_params
    # float32: 4 bytes a parameter, plus a few percent of graph.
    bytes_per_param = path.stat().st_size / 4
    if state == "untrained":
        assert bytes_per_param < 1.05 * summary.unique_params
    else:
        assert bytes_per_param > 0.95 * summary.unrolled_params
