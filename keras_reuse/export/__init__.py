"""TFLite (LiteRT) export that keeps shared weights stored once, verified with LiteRT.

`to_tflite(model, path, ...)` (in `litert`) converts, checks the written file
with the LiteRT interpreter against Keras and writes it atomically;
`options` holds the export options and the rules on which go together
(without TensorFlow, so the command line checks its flags first); `rewrite`
edits a converted int8 file into the compact layout, and `edge_quantizer`
quantizes with Google's AI Edge Quantizer. The conversion needs TensorFlow,
which loads when `to_tflite` is first used.
"""

from keras_reuse.export.options import (
    CALIBRATED,
    FLOAT32_RTOL,
    INT8_LAYOUTS,
    MAX_CALIBRATION_SAMPLES,
    MIN_TOP1_AGREEMENT,
    QUANTIZATIONS,
    QUANTIZERS,
    TFLITE_INSTEAD,
    OptionError,
)
from keras_reuse.utils.lazy import attribute_loader

__all__ = [
    "CALIBRATED",
    "FLOAT32_RTOL",
    "INT8_LAYOUTS",
    "MAX_CALIBRATION_SAMPLES",
    "MIN_TOP1_AGREEMENT",
    "QUANTIZATIONS",
    "QUANTIZERS",
    "TFLITE_INSTEAD",
    "ExportReport",
    "OptionError",
    "VerificationError",
    "to_tflite",
]

__getattr__ = attribute_loader(
    __name__,
    {
        name: "keras_reuse.export.litert"
        for name in ("ExportReport", "VerificationError", "to_tflite")
    },
    globals(),
)
