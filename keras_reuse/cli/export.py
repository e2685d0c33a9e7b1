"""`keras-reuse export`: a saved Keras model -> a verified `.tflite` file.

  keras-reuse export MODEL.keras OUT.tflite [--quantization=none|float16|dynamic|int8|int16x8]
      [--dataset=fashion_mnist] [--fold_batchnorm] [--int8_layout=auto|converter|compact]
      [--quantizer=auto|converter|ai_edge_quantizer [--int16_layers=REGEX]
      [--float_layers=auto|none|REGEX]] [--noverify] [--min_agreement=0.98]

--dataset names a TFDS dataset read through `keras_reuse.data`: int8 and
int16x8 calibrate on the first --num_calibration training images, and the file is
verified against Keras on the test split (all of it by default). Without
--dataset a float32 export is verified on random images; quantized ones need
the dataset (or --noverify). The int8 recipe defaults to `to_tflite`'s
(--quantizer, --int8_layout and --float_layers "auto": the AI Edge
Quantizer, stage 1 in float32, the compact layout). Bad arguments end the program with a one-line
usage error (exit code 2) before anything is written; a file that fails
verification is not written either (exit code 1).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from keras_reuse.export.options import CALIBRATED, OptionError, check_combinations

FLAGS = flags.FLAGS

_QUANTIZATION = {
    "none": None,
    "float16": "float16",
    "dynamic": "dynamic",
    "int8": "int8",
    "int16x8": "int16x8",
}

flags.DEFINE_enum("quantization", "none", list(_QUANTIZATION), "Weight/activation quantization.")
flags.DEFINE_string("dataset", None, "TFDS dataset for calibration and verification.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: $TFDS_DATA_DIR).")
flags.DEFINE_integer(
    "num_calibration", 500, "int8, int16x8: calibrate on this many training images."
)
flags.DEFINE_integer(
    "num_verification", None, "Verify on at most this many test images (default: all)."
)
flags.DEFINE_boolean(
    "fold_batchnorm", False, "Fold BatchNorms into kernels (shared kernels stored per call)."
)
flags.DEFINE_enum(
    "int8_layout",
    "auto",
    ["auto", "converter", "compact"],
    "int8: the file as the quantizer writes it, or compact (per-tensor BatchNorm affines, "
    "one zero bias per shared kernel, no intermediate tensor names; under a third of the size). "
    "auto: compact for int8.",
)
flags.DEFINE_enum(
    "quantizer",
    "auto",
    ["auto", "converter", "ai_edge_quantizer"],
    "int8, int16x8: quantize with the TFLite converter or the AI Edge Quantizer "
    '(pip install "keras-reuse[quantizer]"). auto: the AI Edge Quantizer for int8.',
)
flags.DEFINE_string(
    "int16_layers",
    None,
    "int8 with --quantizer=ai_edge_quantizer: a regex of layer names whose ops get 16-bit "
    "activations (e.g. stage1_).",
)
flags.DEFINE_string(
    "float_layers",
    "auto",
    "int8 with --quantizer=ai_edge_quantizer: a regex of layer names whose ops stay float32 "
    "(e.g. stage1_); none: every layer int8; auto: an LruNet's stage 1 (stage1_) for int8.",
)
flags.DEFINE_boolean("verify", True, "Run the file with LiteRT and compare it with Keras.")
flags.DEFINE_float(
    "min_agreement", None, "Quantized: required top-1 agreement (default 0.99, int8 0.98)."
)


class _Usage(app.UsageError):
    """A bad argument: absl prints the usage and this one-line message, exit code 2."""

    def __init__(self, message: str):
        super().__init__(message, exitcode=2)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _fail(message: str) -> None:
    print(f"keras-reuse export: error: {message}", file=sys.stderr)
    sys.exit(1)


def _float_layers() -> str | None:
    """--float_layers as `to_tflite` takes it: "none" is None."""
    return None if FLAGS.float_layers == "none" else FLAGS.float_layers


def _check_args(argv: list[str]) -> tuple[str, str]:
    if len(argv) != 3:
        raise _Usage(
            f"expected MODEL.keras OUT.tflite; received {len(argv) - 1} argument(s): "
            f"{' '.join(argv[1:]) or '(none)'}"
        )
    model_path, out_path = argv[1], argv[2]
    if not model_path.endswith(".keras") or not os.path.isfile(model_path):
        raise _Usage(f"MODEL must be an existing .keras file; received {model_path!r}")
    if not out_path.endswith(".tflite"):
        raise _Usage(f"OUT must end with .tflite; received {out_path!r}")
    out_dir = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(out_dir):
        raise _Usage(f"the directory of OUT does not exist: {out_dir!r}")
    for name in ("num_calibration", "num_verification"):
        value = FLAGS[name].value
        if value is not None and value < 1:
            raise _Usage(f"--{name}={value}: must be an integer >= 1")
    minimum = FLAGS.min_agreement
    float_layers = _float_layers()
    if minimum is not None and not 0 < minimum <= 1:
        raise _Usage(f"--min_agreement={minimum:g}: must be in (0, 1]")
    dataset = FLAGS.dataset if FLAGS["dataset"].present else None
    quantization = _QUANTIZATION[FLAGS.quantization]
    try:
        # The rules of `to_tflite`, before TensorFlow starts: --dataset
        # gives the calibration images (where they are used) and the
        # verification images.
        check_combinations(
            quantization=quantization,
            fold_batchnorm=FLAGS.fold_batchnorm,
            int8_layout=FLAGS.int8_layout,
            quantizer=FLAGS.quantizer,
            int16_layers=FLAGS.int16_layers,
            float_layers=float_layers,
            verify=FLAGS.verify,
            min_top1_agreement=minimum,
            representative_data=dataset is not None and quantization in CALIBRATED,
            verification_data=dataset is not None and FLAGS.verify,
        )
    except OptionError as error:
        raise _Usage(error.flag_message()) from None
    return model_path, out_path


def main(argv: list[str]) -> None:
    model_path, out_path = _check_args(argv)
    # Lazy: TensorFlow starts only after the flags have parsed.
    from keras_reuse.export.options import TFLITE_INSTEAD
    from keras_reuse.utils.backends import require_tensorflow

    try:
        require_tensorflow("keras-reuse export", TFLITE_INSTEAD)
    except ValueError as error:
        _fail(_one_line(error))
    quantization = _QUANTIZATION[FLAGS.quantization]
    dataset = FLAGS.dataset if FLAGS["dataset"].present else None

    # Lazy: TensorFlow starts only after the flags have parsed.
    import keras

    from keras_reuse import data
    from keras_reuse.export import VerificationError, to_tflite

    calibration = verification = None
    if dataset is not None:
        data_dir = FLAGS.data_dir if FLAGS["data_dir"].present else None
        try:
            if quantization in CALIBRATED:
                calibration = data.load(
                    dataset,
                    split=f"train[:{FLAGS.num_calibration}]",
                    augment=False,
                    shuffle=False,
                    data_dir=data_dir,
                )
            if FLAGS.verify:
                count = FLAGS.num_verification
                split = "test" if count is None else f"test[:{count}]"
                verification = data.load(dataset, split=split, data_dir=data_dir)
        except (ValueError, OSError) as error:
            raise _Usage(f"--dataset={dataset}: {_one_line(error)}") from error
    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for an unreadable file.
        raise _Usage(f"cannot load MODEL {model_path!r}: {_one_line(error)}") from error
    try:
        report = to_tflite(
            model,
            out_path,
            quantization=quantization,
            representative_data=calibration,
            fold_batchnorm=FLAGS.fold_batchnorm,
            int8_layout=FLAGS.int8_layout,
            quantizer=FLAGS.quantizer,
            int16_layers=FLAGS.int16_layers,
            float_layers=_float_layers(),
            verify=FLAGS.verify,
            verification_data=verification,
            max_verification_samples=FLAGS.num_verification,
            min_top1_agreement=FLAGS.min_agreement,
        )
    except ValueError as error:
        raise _Usage(_one_line(error)) from error
    except (VerificationError, OSError, ImportError) as error:
        _fail(str(error))
    print(report)
