"""Training on `model.fit`: the run specification, its recipes and builders, and the trainer.

`train(TrainConfig(...))` trains a registered model on a TFDS dataset and
writes the model, logs, metrics and results; `keras-reuse train` is the same
from the command line. The parts: `config` (the spec, `errors` its error),
`recipes` (named configurations), `builders` (model, data, compile and
callbacks from a spec), `trainer` (the run), `callbacks`, `optimizers` (the
papers' coupled SGD and compile recipe), `precision` and `distribute`. The
names below load on first use, so the command line reads a spec's flags
before the trainer and TFDS load.
"""

from keras_reuse.utils.lazy import attribute_loader

__all__ = [
    "MODEL_FIELDS",
    "ConfigError",
    "TrainConfig",
    "learning_rate_schedule",
    "load_config",
    "train",
    "validate",
]

__getattr__ = attribute_loader(
    __name__,
    {
        "MODEL_FIELDS": "keras_reuse.training.config",
        "ConfigError": "keras_reuse.training.errors",
        "TrainConfig": "keras_reuse.training.config",
        "learning_rate_schedule": "keras_reuse.training.builders",
        "load_config": "keras_reuse.training.config",
        "train": "keras_reuse.training.trainer",
        "validate": "keras_reuse.training.config",
    },
    globals(),
)
