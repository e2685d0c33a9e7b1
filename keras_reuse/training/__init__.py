"""Training on `model.fit`: the run specification, its recipes and builders, and the trainer.

`train(TrainConfig(...))` trains a registered model on a TFDS dataset and
writes the model, logs, metrics and results; `keras-reuse train` is the same
from the command line. The parts: `config` (the spec), `recipes` (named
configurations), `builders` (model, data, compile and callbacks from a
spec), `trainer` (the run), `callbacks`, `optimizers` (the papers' coupled
SGD and compile recipe), `precision` and `distribute`.
"""

from keras_reuse.training.builders import learning_rate_schedule
from keras_reuse.training.config import (
    MODEL_FIELDS,
    ConfigError,
    TrainConfig,
    load_config,
    validate,
)
from keras_reuse.training.trainer import train

__all__ = [
    "MODEL_FIELDS",
    "ConfigError",
    "TrainConfig",
    "learning_rate_schedule",
    "load_config",
    "train",
    "validate",
]
