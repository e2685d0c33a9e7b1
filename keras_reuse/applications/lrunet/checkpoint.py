"""The LruNet authors' published PyTorch checkpoints, converted to Keras.

`load_lrunet_checkpoint(path)` reads one of the checkpoints published with
"Convolutional Neural Networks with Layer Reuse" (Köpüklü et al., 2019),
works out the network it describes from the tensors themselves (classes,
reuse count, width, input channels), builds that `LruNet` and copies every
tensor into it. Nothing is guessed: each checkpoint tensor must land in
exactly one Keras weight of the right shape and every Keras weight must be
filled, otherwise a ValueError names the file and the mismatch.

Reading the checkpoints needs torch, the optional extra
`pip install "keras-reuse[torch]"`; it is imported only when a checkpoint is
read, so this module imports without it. Checkpoints are unpickled with
`torch.load(..., weights_only=True)`, which only rebuilds tensors and plain
containers and never runs code from the file. Before torch reads anything,
a file larger than `MAX_CHECKPOINT_BYTES` (the published ones are 0.5-3.4
MB) and a zip-format checkpoint whose end, the zip's directory, is missing
(a truncated copy) are refused with an error naming the file.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_reuse.applications.common import check_runs, image_shape, resolve_data_format
from keras_reuse.applications.lrunet.model import PLANES, LruNet, convert_reuse_weights
from keras_reuse.applications.lrunet.stage import resolve_reuse_loop

TORCH_MISSING_MESSAGE = (
    "Reading PyTorch checkpoints needs torch, an optional dependency of "
    'keras-reuse: pip install "keras-reuse[torch]" (on a CPU-only machine, '
    "install the CPU wheel first: pip install torch==2.13.0 --index-url "
    "https://download.pytorch.org/whl/cpu)."
)

# Input sizes of the datasets the authors trained on, by input channels.
_INPUT_SHAPES = {3: (32, 32, 3), 1: (28, 28, 1)}
_STAGES = (1, 2, 3, 4)
# BatchNorm2d buffers and parameters -> Keras BatchNormalization attributes.
_BATCH_NORM = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
_MAX_LISTED_KEYS = 6
# Hundreds of times the largest published checkpoint (3.4 MB): a larger
# file is not an LruNet checkpoint, and is refused before torch reads it.
MAX_CHECKPOINT_BYTES = 1 << 30
_ZIP_MAGIC = b"PK\x03\x04"


def _import_torch() -> Any:
    try:
        # Optional: torch (the `torch` extra), only to read a checkpoint.
        import torch
    except ImportError as error:
        raise ImportError(TORCH_MISSING_MESSAGE) from error
    return torch


def _load_failure(path: str, error: Exception) -> str:
    """Why `torch.load` failed, in words that fit a damaged file."""
    message = str(error).strip()
    if os.path.getsize(path) == 0:
        return "the file is empty"
    if isinstance(error, EOFError) or "unexpected EOF" in message:
        return f"the file ends early, it is truncated ({type(error).__name__}: {message})"
    if "Weights only load failed" in message:
        # torch's own advice (weights_only=False) would run code from a
        # file that is at best damaged; do not repeat it.
        return (
            "the file is corrupted or is not a checkpoint of tensors: unpickling it "
            "with weights_only=True met data other than tensors and plain containers"
        )
    first_line = message.splitlines()[0][:200] if message else ""
    return (
        f"the file is corrupted or not a PyTorch checkpoint ({type(error).__name__}: {first_line})"
    )


def _check_file(path: str) -> None:
    """Refuses, from the size and the first and last bytes only, what cannot be a checkpoint."""
    size = os.path.getsize(path)
    if size > MAX_CHECKPOINT_BYTES:
        raise ValueError(
            f"Cannot read the PyTorch checkpoint {path!r}: it is {size:,} bytes, more than "
            f"any LruNet checkpoint (limit {MAX_CHECKPOINT_BYTES:,} bytes); not read"
        )
    with open(path, "rb") as f:
        magic = f.read(len(_ZIP_MAGIC))
    # torch.save's zip format keeps its directory at the end of the file.
    if magic == _ZIP_MAGIC and not zipfile.is_zipfile(path):
        raise ValueError(
            f"Cannot read the PyTorch checkpoint {path!r}: the file ends early, it is "
            f"truncated (a zip-format checkpoint of {size:,} bytes without its end record)"
        )


def _read_state_dict(path: str) -> dict[str, np.ndarray]:
    """Unpickles `path` and returns its state_dict as float32 numpy arrays.

    Accepts the authors' `{"net": state_dict, "acc": ..., "epoch": ...}`
    and a bare state_dict; strips DataParallel's `module.` prefix and drops
    BatchNorm's `num_batches_tracked` (a training counter inference never
    reads; the published checkpoints predate it).
    """
    torch = _import_torch()
    _check_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises a zoo of types for bad files.
        raise ValueError(
            f"Cannot read the PyTorch checkpoint {path!r}: {_load_failure(path, error)}"
        ) from error
    state = checkpoint.get("net", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise ValueError(
            f"{path!r} is not an LruNet checkpoint: expected a state_dict or a dict "
            f"with a 'net' state_dict, found {type(checkpoint).__name__}"
        )
    arrays = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{path!r} is not an LruNet checkpoint: its state_dict maps "
                f"{key!r} to a {type(value).__name__}, not a tensor"
            )
        key = key.removeprefix("module.")
        if key.endswith(".num_batches_tracked"):
            continue
        if not value.is_floating_point():
            raise ValueError(
                f"{path!r} is not an LruNet checkpoint: tensor {key!r} has dtype "
                f"{value.dtype}, LruNet weights are floating point"
            )
        array = value.detach().to(torch.float32).numpy()
        if not np.isfinite(array).all():
            raise ValueError(
                f"The checkpoint {path!r} is corrupted: tensor {key!r} holds NaN or infinite values"
            )
        arrays[key] = array
    return arrays


def _require(path: str, state: dict[str, np.ndarray], key: str, ndim: int) -> tuple:
    if key not in state:
        listed = ", ".join(sorted(state)[:_MAX_LISTED_KEYS])
        raise ValueError(
            f"{path!r} is not an LruNet checkpoint: it has no tensor {key!r} "
            f"(its keys begin: {listed})"
        )
    shape = state[key].shape
    if len(shape) != ndim:
        raise ValueError(
            f"{path!r} is not an LruNet checkpoint: {key!r} has shape {shape}, "
            f"an LruNet has a {ndim}-D tensor there"
        )
    return shape


def _infer_config(path: str, state: dict[str, np.ndarray]) -> dict[str, Any]:
    """The `LruNet` keyword arguments the checkpoint's tensors imply."""
    in_channels = _require(path, state, "features.0.weight", 4)[1]
    if in_channels not in _INPUT_SHAPES:
        raise ValueError(
            f"{path!r} is not a supported LruNet checkpoint: its stem takes "
            f"{in_channels} input channels; the published models take 3 (CIFAR, "
            "32x32) or 1 (Fashion-MNIST, 28x28)"
        )
    stage1_planes = _require(path, state, "stage1.pw.weight", 4)[0]
    width = stage1_planes / PLANES[0]
    num_classes = _require(path, state, "classifier.4.weight", 4)[0]
    pattern = re.compile(r"stage1\.dw_bn_list\.(\d+)\.weight")
    iterations = sorted(int(m.group(1)) for k in state if (m := pattern.fullmatch(k)))
    if not iterations or iterations != list(range(len(iterations))):
        raise ValueError(
            f"{path!r} is not an LruNet checkpoint: expected BatchNorms "
            "'stage1.dw_bn_list.0' ... 'stage1.dw_bn_list.{N-1}', found indices "
            f"{iterations}"
        )
    return {
        "num_classes": int(num_classes),
        "layer_reuse": len(iterations),
        "width_multiplier": int(width) if width == int(width) else width,
        "input_shape": _INPUT_SHAPES[in_channels],
    }


# Converters from a PyTorch tensor to a Keras weight of shape `shape`; each
# comes with the PyTorch shape that Keras shape requires.
def _conv(shape: tuple) -> tuple[tuple, Callable]:
    kh, kw, cin, cout = shape
    return (cout, cin, kh, kw), lambda w: w.transpose(2, 3, 1, 0)


def _depthwise(shape: tuple) -> tuple[tuple, Callable]:
    # PyTorch output channel c * mult + m is Keras kernel[..., c, m].
    kh, kw, cin, mult = shape
    return (cin * mult, 1, kh, kw), lambda w: w.reshape(cin, mult, kh, kw).transpose(2, 3, 0, 1)


def _grouped_pointwise(shape: tuple) -> tuple[tuple, Callable]:
    # PyTorch output channel g * (cout/groups) + j reads group g's inputs.
    groups, cin_g, cout_g = shape
    return (
        (groups * cout_g, cin_g, 1, 1),
        lambda w: w.reshape(groups, cout_g, cin_g).transpose(0, 2, 1),
    )


def _same(shape: tuple) -> tuple[tuple, Callable]:
    return tuple(shape), lambda w: w


def _weight_map(model: keras.Model, layer_reuse: int) -> list[tuple[str, Any, Callable]]:
    """(checkpoint key, Keras variable, converter factory) for every weight."""
    entries = []

    def layer(name):
        return model.get_layer(name)

    def batch_norm(torch_prefix, keras_name):
        bn = layer(keras_name)
        for torch_name, attribute in _BATCH_NORM.items():
            entries.append((f"{torch_prefix}.{torch_name}", getattr(bn, attribute), _same))

    entries.append(("features.0.weight", layer("stem_conv").kernel, _conv))
    batch_norm("features.1", "stem_bn")
    for s in _STAGES:
        entries.append((f"stage{s}.dw.weight", layer(f"stage{s}_dw").kernel, _depthwise))
        entries.append((f"stage{s}.pw.weight", layer(f"stage{s}_pw").kernel, _grouped_pointwise))
        for i in range(layer_reuse):
            batch_norm(f"stage{s}.dw_bn_list.{i}", f"stage{s}_reuse{i + 1}_dw_bn")
            batch_norm(f"stage{s}.pw_bn_list.{i}", f"stage{s}_reuse{i + 1}_pw_bn")
    entries.append(("classifier.0.weight", layer("head_pw").kernel, _grouped_pointwise))
    batch_norm("classifier.1", "head_bn")
    entries.append(("classifier.4.weight", layer("head_logits_conv").kernel, _conv))
    entries.append(("classifier.4.bias", layer("head_logits_conv").bias, _same))
    return entries


def _model_name(config: dict[str, Any]) -> str:
    # The paper's "N-LruNet-kx", as a Keras-friendly identifier.
    return f"lrunet_{config['layer_reuse']}_{config['width_multiplier']}x"


def _listed(keys: set[str]) -> str:
    shown = sorted(keys)[:_MAX_LISTED_KEYS]
    more = len(keys) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def load_lrunet_checkpoint(
    path: str | os.PathLike, reuse_loop: bool | None = None, data_format: str | None = None
) -> keras.Model:
    """Builds a Keras `LruNet` holding the weights of an authors' checkpoint.

    The configuration comes from the checkpoint's tensors: classes from the
    classifier, `layer_reuse` from the number of per-iteration BatchNorms,
    `width_multiplier` from the stage widths, and the input shape from the
    stem's input channels ((32, 32, 3) for CIFAR, (28, 28, 1) for
    Fashion-MNIST). The model, named after the paper's N-LruNet-kx (e.g.
    `lrunet_14_1x`), outputs the reference network's logits
    (`classifier_activation=None`); add a softmax for probabilities.

    Args:
        path: A PyTorch checkpoint published by the LruNet authors
            (`{"net": state_dict, "acc": ..., "epoch": ...}`, keys with or
            without the `module.` prefix) or a bare LruNet state_dict.
        reuse_loop: The layout of the returned network, as `LruNet`'s
            argument (None: `keras_reuse.applications.lrunet.stage.default_reuse_loop()`).
            The checkpoint is read into the unrolled network, converted
            with `convert_reuse_weights` for a looped one.
        data_format: The returned network's image data format, as `LruNet`'s
            argument (None: `keras.config.image_data_format()`); its input
            is `(1, 28, 28)` channels first for Fashion-MNIST, say.

    Returns:
        A `keras.Model` whose logits equal the PyTorch network's.

    Raises:
        FileNotFoundError: if `path` is not a file.
        ImportError: if torch is not installed (names the `torch` extra).
        ValueError: naming the file, if it is corrupted or truncated, is
            larger than `MAX_CHECKPOINT_BYTES`, is not a PyTorch checkpoint of
            tensors (a pickle that would run code is refused unrun), or holds
            a network other than an LruNet (missing, extra or wrongly shaped
            tensors).
    """
    path = os.fspath(path)
    looped = resolve_reuse_loop(reuse_loop)
    data_format = resolve_data_format(data_format)
    check_runs(data_format)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LruNet checkpoint not found: path={path!r}")
    state = _read_state_dict(path)
    config = _infer_config(path, state)
    config["input_shape"] = image_shape(config["input_shape"], data_format)
    try:
        model = LruNet(
            **config,
            classifier_activation=None,
            name=_model_name(config),
            data_format=data_format,
            reuse_loop=False,
        )
    except ValueError as error:
        raise ValueError(
            f"{path!r} is not a supported LruNet checkpoint: its tensors imply {config}, "
            f"which LruNet rejects: {error}"
        ) from error

    entries = _weight_map(model, config["layer_reuse"])
    expected = {key for key, _, _ in entries}
    missing, unexpected = expected - state.keys(), state.keys() - expected
    if missing or unexpected:
        details = []
        if missing:
            details.append(f"missing tensors: {_listed(missing)}")
        if unexpected:
            details.append(f"unexpected tensors: {_listed(unexpected)}")
        raise ValueError(
            f"{path!r} does not match the LruNet its tensors imply ({config}); "
            + "; ".join(details)
        )
    values = []
    for key, variable, converter in entries:
        torch_shape, convert = converter(tuple(variable.shape))
        if state[key].shape != torch_shape:
            raise ValueError(
                f"{path!r} does not match the LruNet its tensors imply ({config}): "
                f"tensor {key!r} has shape {state[key].shape}, expected {torch_shape}"
            )
        values.append((variable, convert(state[key])))
    assigned = {id(variable) for variable, _ in values}
    unfilled = [v.path for v in model.weights if id(v) not in assigned]
    if unfilled or len(assigned) != len(values):
        # A bug of this module, not of the file: the map must cover the model.
        raise RuntimeError(f"LruNet weights without a checkpoint tensor: {unfilled}")
    for variable, value in values:
        variable.assign(value)
    if looped:
        target = LruNet(
            **config,
            classifier_activation=None,
            name=_model_name(config),
            data_format=data_format,
            reuse_loop=True,
        )
        return convert_reuse_weights(model, target)
    return model
