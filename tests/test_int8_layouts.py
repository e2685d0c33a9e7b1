"""The int8_layouts benchmark's flatbuffer rewrites on a small int8 LruNet (no speed asserted)."""

import numpy as np
import pytest

from benchmarks import tflite_rewrites as int8_layouts
from keras_reuse import applications, to_tflite
from keras_reuse.litert_rewrite import kernel_ops, read_model

N = 2  # reuses per stage
STAGES = 4


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    model = applications.LruNet(
        layer_reuse=N, width_multiplier=0.125, input_shape=(28, 28, 1), classifier_activation=None
    )
    rng = np.random.default_rng(0)
    # Each reuse's BatchNorm its own statistics, some gammas negative: a fresh
    # model's identical BatchNorms would fold into identical copies, which
    # the converter already stores once.
    for layer in model.layers:
        if "bn" in layer.name and layer.weights:
            gamma, beta, mean, variance = (w.numpy() for w in layer.weights)
            signs = np.where(rng.random(gamma.shape) < 0.3, -1.0, 1.0)
            layer.set_weights(
                [
                    signs * rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.1, mean.shape),
                    rng.uniform(0.5, 2.0, variance.shape),
                ]
            )
    images = rng.random((16, 28, 28, 1), dtype=np.float32)
    made = {}
    for name, fold in (("default", False), ("folded", True)):
        path = out / f"{name}.tflite"
        to_tflite(
            model,
            path,
            quantization="int8",
            representative_data=images,
            fold_batchnorm=fold,
            verify=False,
        )
        made[name] = path.read_bytes()
    return made, out, images


def _outputs(path, images, xnnpack):
    return int8_layouts.litert_outputs(str(path), images, xnnpack)


def test_folded_copies_of_a_shared_kernel_become_one_buffer(files):
    made, _, _ = files
    shared, counts = int8_layouts.share_folded_kernels(made["folded"])
    # Every reuse after the first of each stage's depthwise and pointwise kernels.
    assert counts["shared"] == STAGES * 2 * (N - 1)
    # The int8 values of the copies are the first copy's up to a sign per channel.
    assert counts["off_by_one_values"] <= 0.01 * counts["shared"] * 8 * 9
    assert len(shared) < len(made["folded"])


def test_per_tensor_affines_keep_the_values_within_half_a_step(files):
    made, out, images = files
    rewritten, counts = int8_layouts.per_tensor_batchnorm_affines(made["default"])
    assert counts["affines_requantized"] == STAGES * 2 * N
    assert len(rewritten) < len(made["default"])
    schema, before = read_model(made["default"])
    _, after = read_model(rewritten)
    ops_before = kernel_ops(schema, before)
    ops_after = kernel_ops(schema, after)
    assert len(ops_before) == len(ops_after)
    for op_before, op_after in zip(ops_before, ops_after, strict=True):
        t_before = before.subgraphs[0].tensors[op_before.inputs[1]]
        t_after = after.subgraphs[0].tensors[op_after.inputs[1]]
        if list(t_after.shape[:3]) != [1, 1, 1]:
            continue
        assert len(t_after.quantization.scale) == 1
        real = np.frombuffer(bytes(bytearray(before.buffers[t_before.buffer].data)), np.int8)
        real = real * np.asarray(t_before.quantization.scale)
        new = np.frombuffer(bytes(bytearray(after.buffers[t_after.buffer].data)), np.int8)
        step = t_after.quantization.scale[0]
        np.testing.assert_array_less(np.abs(new * step - real), 0.5001 * step)
    path = out / "per_tensor.tflite"
    path.write_bytes(rewritten)
    assert np.isfinite(_outputs(path, images, xnnpack=True)).all()


def test_the_reference_kernels_do_not_read_the_bias_quantization(files):
    made, out, images = files
    stripped, counts = int8_layouts.drop_bias_quantization(made["default"])
    assert counts["bias_entries_removed"] > 0
    assert int8_layouts.quantization_bytes(stripped) < int8_layouts.quantization_bytes(
        made["default"]
    )
    path, original = out / "stripped.tflite", out / "default.tflite"
    path.write_bytes(stripped)
    np.testing.assert_array_equal(
        _outputs(path, images, xnnpack=False), _outputs(original, images, xnnpack=False)
    )
