"""Which Keras backend runs, and a clear error where a feature needs TensorFlow.

The models and layers run on every Keras backend (TensorFlow, JAX,
PyTorch), with or without TensorFlow installed. TFLite export and
`tf.distribute` strategies are TensorFlow programs: under another backend
they fail early with `require_tensorflow`'s message, naming the backend and
what to use instead; where TensorFlow (or TFDS) is not installed, the parts
that need it fail when imported with `require_installed`'s message.
"""

from __future__ import annotations

import importlib.util
import sys

import keras


def require_installed(feature: str, modules: tuple[str, ...] = ("tensorflow",)) -> None:
    """Raises ImportError naming `feature` unless every module in `modules` is installed.

    Args:
        feature: What needs them, e.g. "keras_reuse.data".
        modules: Importable names, e.g. `("tensorflow", "tensorflow_datasets")`.

    Raises:
        ImportError: naming `feature`, the missing modules and how to install them.
    """
    missing = [m for m in modules if _missing(m)]
    if missing:
        raise ImportError(
            f"{feature} needs {' and '.join(missing)}, which this environment lacks. "
            "The models and layers run without it (on KERAS_BACKEND=jax or torch); for this, "
            'install the package\'s default dependencies: pip install "keras-reuse".'
        )


def _missing(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is None  # blocked
    return importlib.util.find_spec(module) is None


def require_tensorflow(feature: str, instead: str) -> None:
    """Raises ValueError unless Keras runs on the TensorFlow backend.

    Args:
        feature: What needs TensorFlow, as the user asked for it.
        instead: What to do instead, one or two sentences.

    Raises:
        ValueError: naming the backend (`KERAS_BACKEND`), `feature` and `instead`.
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            f"{feature} needs the TensorFlow Keras backend, but this process runs "
            f"KERAS_BACKEND={backend!r} (Keras picks its backend at import). {instead}"
        )


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its CPU kernels through oneDNN in this process (TensorFlow only)."""
    try:
        # Optional: TensorFlow, on its backend's path only (no public query of oneDNN).
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow without it: its stock kernels
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def check_data_format_runs(data_format: str) -> None:
    """Raises ValueError where this backend cannot run `data_format` on this machine's devices.

    TensorFlow's own CPU convolution kernels (`Conv2D`) take channels_last
    (NHWC) input only: with channels_first they fail when called ("The Conv2D
    op currently only supports the NHWC tensor format on the CPU"). oneDNN's
    CPU kernels and the GPU's take both, as do JAX's and PyTorch's on every
    device. So channels_first is refused on the TensorFlow backend in a
    process with no GPU and oneDNN off, before a model is built.

    Args:
        data_format: "channels_last" or "channels_first" (checked).

    Raises:
        ValueError: naming the format, the backend and what to do instead.
    """
    if data_format != "channels_first" or keras.backend.backend() != "tensorflow":
        return
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU") or onednn_enabled():
        return
    raise ValueError(
        "data_format='channels_first' cannot run here on the TensorFlow backend: "
        "TensorFlow's CPU convolutions take channels_last (NHWC) input only unless oneDNN "
        "runs them, and this process has no GPU and started TensorFlow with oneDNN off "
        "(TF_ENABLE_ONEDNN_OPTS=0, or a CPU where it is off by default). Build with "
        "data_format='channels_last' (or keras.config.set_image_data_format('channels_last'); "
        "the weights are the same in both formats), start TensorFlow with "
        "TF_ENABLE_ONEDNN_OPTS=1, or use KERAS_BACKEND='torch' or 'jax', which run "
        "channels_first on CPU."
    )


def gpu_available() -> bool:
    """Whether the running Keras backend sees a GPU.

    TensorFlow's, JAX's or PyTorch's own device list, whichever runs Keras:
    a TensorFlow installed beside JAX is neither asked nor imported.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        # Optional: TensorFlow, imported on its backend's path only.
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        # Optional: JAX, imported on its backend's path only.
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        # Optional: PyTorch, imported on its backend's path only.
        import torch

        return bool(torch.cuda.is_available())
    return False
