"""`keras-reuse summary`: build a registered model and print its reuse table."""

from __future__ import annotations

from absl import app, flags

from keras_reuse.applications import get
from keras_reuse.cli.flags import define_config_flags, define_model_flags
from keras_reuse.reuse.summary import reuse_summary
from keras_reuse.training.config import ConfigError, check_model_args

FLAGS = flags.FLAGS
define_config_flags(only=("model",))
_MODEL_ARGS = define_model_flags()
flags.DEFINE_integer("num_classes", None, "Number of classes (default: the model's).")
flags.DEFINE_list(
    "input_shape", None, "Input shape as height,width,channels (default: the model's)."
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        constructor = get(FLAGS.model)
    except ValueError as error:
        raise app.UsageError(f"--model={FLAGS.model}: {error}") from error
    kwargs = {n: FLAGS[n].value for n in _MODEL_ARGS if FLAGS[n].value is not None}
    try:
        check_model_args(FLAGS.model, kwargs)
    except ConfigError as error:
        raise app.UsageError(error.flag_message()) from error
    if FLAGS.num_classes is not None:
        kwargs["num_classes"] = FLAGS.num_classes
    if FLAGS.input_shape is not None:
        try:
            kwargs["input_shape"] = tuple(int(v) for v in FLAGS.input_shape)
        except ValueError as error:
            raise app.UsageError(
                f"--input_shape must be integers, e.g. 32,32,3. Received: "
                f"{','.join(FLAGS.input_shape)}"
            ) from error
    try:
        model = constructor(**kwargs)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    print(reuse_summary(model))
