"""TFLite (LiteRT) export that keeps shared weights stored once, verified with LiteRT.

`to_tflite(model, path, ...)` (in `litert`) converts, checks the written file
with the LiteRT interpreter against Keras and writes it atomically;
`rewrite` edits a converted int8 file into the compact layout, and
`edge_quantizer` quantizes with Google's AI Edge Quantizer. Needs TensorFlow.
"""

from keras_reuse.export.litert import (
    CALIBRATED,
    FLOAT32_RTOL,
    INT8_LAYOUTS,
    MAX_CALIBRATION_SAMPLES,
    MIN_TOP1_AGREEMENT,
    QUANTIZATIONS,
    QUANTIZERS,
    TFLITE_INSTEAD,
    ExportReport,
    VerificationError,
    to_tflite,
)

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
    "VerificationError",
    "to_tflite",
]
