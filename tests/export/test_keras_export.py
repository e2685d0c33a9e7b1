"""Keras's own `model.export(..., format="litert")` on our models gives a working file."""

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


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    model = LruNet(layer_reuse=2, input_shape=(28, 28, 1), classifier_activation=None)
    out = tmp_path_factory.mktemp("keras_export")
    model.export(str(out / "keras.tflite"), format="litert", verbose=False)
    return model, out / "keras.tflite"


def test_keras_export_computes_what_the_model_computes(exports):
    model, path = exports
    images = np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    expected = model.predict(images, verbose=0)
    got = _run(path, images)
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())


def test_keras_export_stores_the_shared_kernels_once(exports):
    model, path = exports
    summary = reuse_summary(model)
    # float32: 4 bytes a parameter. A kernel copy per call would put the file
    # near 4 * unrolled_params (961 KB here); it is 517 KB, near 4 * unique
    # (544 KB; to_tflite's file: 528 KB).
    size = path.stat().st_size
    assert size < 2 * (summary.unique_params + summary.unrolled_params)
    assert size < 1.05 * 4 * summary.unique_params
