"""Full-integer quantization of a float32 `.tflite` file with Google's AI Edge Quantizer.

Owns `quantize`, behind `to_tflite(..., quantizer="ai_edge_quantizer")`:
the recipe (int8 per-channel weights; int8 activations, or int16 for all of
them or for the layers a regular expression names; the layers another one
names left in float32; float32 input and output, as in every file
`to_tflite` writes), the serving signature the quantizer's calibration
needs, and the calibration on representative images.

Why a second quantizer. The TFLite converter's int8 file of the published
Fashion-MNIST LruNet-10 agrees with Keras less often than the default
verification asks (docs/guides/export.md). The AI Edge Quantizer
(`ai_edge_quantizer`, an optional extra) quantizes the same float32 graph
closer to it, and lets some layers keep 16-bit activations or float32: in
stage 1 (the largest feature maps, ten reuses) 8 bits flip the most
decisions.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from keras_reuse.export import rewrite as litert_rewrite

SIGNATURE_KEY = "serving_default"
_INPUT_NAME, _OUTPUT_NAME = "images", "output"
INSTALL = 'pip install "keras-reuse[quantizer]" (or: pip install ai-edge-quantizer)'


def require() -> Any:
    """The `ai_edge_quantizer` module, or an ImportError that says how to install it."""
    try:
        # Optional: the `quantizer` extra.
        import ai_edge_quantizer
    except ImportError as error:
        raise ImportError(
            f"quantizer='ai_edge_quantizer' needs the AI Edge Quantizer: {INSTALL}"
        ) from error
    return ai_edge_quantizer


def layer_scope(names: Iterable[str]) -> str:
    """A regex that matches the LiteRT tensor names of ops the named layers created.

    The converter names each op's output after the TensorFlow name scopes it
    was traced in, `<model>/<layer>_<call>/<op>`, joined with ";" where ops
    were fused.

    Args:
        names: Keras layer names.

    Returns:
        A regular expression for `re.search`.
    """
    names = sorted(names)
    if not names:
        raise ValueError("layer_scope needs at least one layer name. Received: names=[]")
    alternatives = "|".join(re.escape(name) for name in names)
    return rf"(?:^|[/;])(?:{alternatives})(?:_\d+)?/"


def with_signature(flatbuffer: bytes) -> bytes:
    """`flatbuffer` with a `serving_default` signature over its one input and output.

    The converter's path from a concrete function (the one that keeps shared
    kernels single) writes no signature; the quantizer's calibration runs
    the model through one.
    """
    schema, model = litert_rewrite.read_model(flatbuffer)
    graph = model.subgraphs[0]

    def tensor_map(name: str, index: int) -> Any:
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, index
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SIGNATURE_KEY, 0
    signature.inputs = [tensor_map(_INPUT_NAME, graph.inputs[0])]
    signature.outputs = [tensor_map(_OUTPUT_NAME, graph.outputs[0])]
    model.signatureDefs = [signature]
    return litert_rewrite.write_model(model)


def recipe(
    activation_bits: int, int16_scope: str | None = None, float_scope: str | None = None
) -> list[dict[str, Any]]:
    """The quantizer's recipe: static int8 weights, 8- or 16-bit activations, float32 I/O.

    Args:
        activation_bits: 8 or 16, for every op.
        int16_scope: With 8: a regex (`layer_scope`) of ops that get 16-bit
            activations instead.
        float_scope: A regex of ops left in float32 (over `int16_scope`).

    Returns:
        A recipe list, later entries overriding earlier ones where both match.
    """
    aeq = require()
    (static,) = aeq.recipe.static_wi8_ai8()

    def entry(bits: int, regex: str = ".*") -> dict[str, Any]:
        config = copy.deepcopy(static)
        config["regex"] = regex
        activations = config["op_config"]["activation_tensor_config"]
        activations["num_bits"] = bits
        # LiteRT's 16-bit kernels take symmetric activations (zero point 0).
        activations["symmetric"] = bits == 16
        return config

    def keep_float(regex: str = ".*", operation: str = "*") -> dict[str, Any]:
        config = copy.deepcopy(static)
        config.update(regex=regex, operation=operation, algorithm_key="no_quantize")
        return config

    entries = [entry(activation_bits)]
    if int16_scope is not None:
        entries.append(entry(16, int16_scope))
    if float_scope is not None:
        entries.append(keep_float(float_scope))
    # The file's input and output stay float32; QUANTIZE and DEQUANTIZE ops
    # convert inside, as in the converter's files.
    entries += [keep_float(operation="INPUT"), keep_float(operation="OUTPUT")]
    return entries


def outputs_of_type(flatbuffer: bytes, scope: str, type_name: str) -> int:
    """How many op outputs whose names match `scope` are of LiteRT type `type_name`.

    Args:
        flatbuffer: A `.tflite` file.
        scope: A regex of tensor names (`layer_scope`).
        type_name: A `TensorType` name, e.g. "INT16" or "FLOAT32".

    Returns:
        The count over the main subgraph.
    """
    schema, model = litert_rewrite.read_model(flatbuffer)
    graph = model.subgraphs[0]
    wanted = getattr(schema.TensorType, type_name)
    return sum(
        graph.tensors[index].type == wanted
        and re.search(scope, graph.tensors[index].name.decode()) is not None
        for op in graph.operators
        for index in op.outputs
    )


def quantize(
    flatbuffer: bytes,
    calibration: np.ndarray,
    activation_bits: int = 8,
    int16_scope: str | None = None,
    float_scope: str | None = None,
) -> bytes:
    """Quantizes a float32 `.tflite` file to full integer with the AI Edge Quantizer.

    Args:
        flatbuffer: A float32 file with one input and one output (from
            `keras_reuse.export.litert`'s converter).
        calibration: Images `(N, *input_shape)` whose activation ranges set
            the activations' scales.
        activation_bits: 8 (int8) or 16 (int16 activations everywhere).
        int16_scope: With 8: a regex of ops (`layer_scope`) that get 16-bit
            activations.
        float_scope: A regex of ops left in float32.

    Returns:
        The quantized file, with float32 input and output and a
        `serving_default` signature.
    """
    aeq = require()
    signed = with_signature(flatbuffer)
    quantizer = aeq.Quantizer(bytearray(signed), recipe(activation_bits, int16_scope, float_scope))
    samples = [{_INPUT_NAME: image[None].astype(np.float32)} for image in calibration]
    ranges = quantizer.calibrate({SIGNATURE_KEY: samples}, num_threads=max(1, os.cpu_count() or 1))
    result = quantizer.quantize(ranges)
    # The buffers stored after the flatbuffer go inline (`read_model`), as
    # in the converter's files, which `compact_int8` and LiteRT read alike.
    return litert_rewrite.write_model(litert_rewrite.read_model(bytes(result.quantized_model))[1])
