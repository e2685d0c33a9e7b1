"""Which Keras backend runs, and a clear error where a feature needs TensorFlow.

The models and layers run on every Keras backend (TensorFlow, JAX,
PyTorch). TFLite export and `tf.distribute` strategies are TensorFlow
programs: under another backend they fail early with `require_tensorflow`'s
message, naming the backend and what to use instead.
"""

from __future__ import annotations

import keras


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
