"""The options of a TFLite export and the rules on which go together; no TensorFlow.

`to_tflite` checks its arguments here before any work, and `keras-reuse
export` checks its flags with the same rules before TensorFlow starts: a
broken rule is an `OptionError` that each names in its own terms
(`python_message()`: "`int8_layout='compact'` needs quantization='int8'...";
`flag_message()`: "--int8_layout=compact: needs --quantization=int8 ...").

`resolve_recipe` turns the "auto" defaults of `quantizer`, `int8_layout`
and `float_layers` into the recipe they stand for. For "int8" that is the
AI Edge Quantizer with the first stage of a layer-reuse network left in
float32, in the compact layout: the converter's plain int8 file of the
published LruNets agrees with Keras less often than `MIN_TOP1_AGREEMENT`
asks, and its layout stores several times the quantization vectors
(docs/guides/export.md has the measurements).
"""

from __future__ import annotations

from typing import Any

QUANTIZATIONS = (None, "float16", "dynamic", "int8", "int16x8")
# The full-integer modes, calibrated on representative images.
CALIBRATED = ("int8", "int16x8")
# float32 must reproduce Keras to this fraction of the largest |output|.
FLOAT32_RTOL = 1e-5
# Quantized files must pick Keras's top-1 class on this share of the samples.
MIN_TOP1_AGREEMENT = {"float16": 0.99, "dynamic": 0.99, "int8": 0.98, "int16x8": 0.99}
# An int8 file as the converter writes it, or with its quantization vectors
# rewritten (`keras_reuse.export.rewrite.compact_int8`; under a third of the size).
INT8_LAYOUTS = ("converter", "compact")
# The default of `quantizer`, `int8_layout` and `float_layers`: the recipe that
# `resolve_recipe` picks for the quantization mode.
AUTO = "auto"
# The layers `float_layers="auto"` leaves in float32 in an int8 file, where
# the exported graph has layers of that name: an LruNet's first stage (the
# largest feature maps, reused most), where 8-bit activations flip the most
# decisions.
FIRST_STAGE = "stage1_"
# Who quantizes "int8" and "int16x8": the TFLite converter, or Google's AI Edge
# Quantizer (`keras_reuse.export.edge_quantizer`; the `quantizer` extra), which also
# gives 16-bit activations to the layers `int16_layers` names.
QUANTIZERS = ("converter", "ai_edge_quantizer")
# Calibration beyond this many images costs time and changes little.
MAX_CALIBRATION_SAMPLES = 1000


def hold_out(count: int) -> int:
    """Where `representative_data` splits when it is also what a file is verified on.

    A file scored on its own calibration images is scored on the inputs its
    activation ranges were fitted to; so without `verification_data` the
    first half of the `count` representative images (rounded up) calibrates
    and the rest, held out, verifies, as `keras-reuse export` calibrates on
    training images and verifies on the test split.

    Args:
        count: How many representative images there are (at least 2).

    Returns:
        How many of the first images calibrate.
    """
    return (count + 1) // 2


# Every backend saves .keras files that TensorFlow loads.
TFLITE_INSTEAD = (
    "Save the model with model.save('model.keras') and export that file with "
    "KERAS_BACKEND=tensorflow: keras-reuse export model.keras model.tflite."
)

# `to_tflite` argument -> `keras-reuse export` flag, where they differ.
FLAGS = {
    "representative_data": "dataset",
    "verification_data": "dataset",
    "min_top1_agreement": "min_agreement",
    "max_verification_samples": "num_verification",
}


class OptionError(ValueError):
    """An option that does not go with the others.

    Attributes:
        argument: The `to_tflite` argument at fault.
        value: Its value.
        needs: The other arguments and the value each needs (a tuple: one
            of them; None: not given).
        received: The values they have.
        why: What the option does, the reason for the rule.
    """

    def __init__(
        self, argument: str, value: Any, needs: dict[str, Any], received: dict[str, Any], why: str
    ):
        self.argument, self.value, self.needs, self.received, self.why = (
            argument,
            value,
            needs,
            received,
            why,
        )
        super().__init__(self.python_message())

    def __reduce__(self):  # pickles (multiprocessing, subprocess tests)
        return (type(self), (self.argument, self.value, self.needs, self.received, self.why))

    def python_message(self) -> str:
        """The message in `to_tflite`'s terms."""

        def wanted(name: str, value: Any) -> str:
            if isinstance(value, tuple):
                return f"{name} in {value}"
            return f"{name} given" if value is _GIVEN else f"{name}={value!r}"

        needs = " and ".join(wanted(k, v) for k, v in self.needs.items())
        received = ", ".join(f"{k}={v!r}" for k, v in self.received.items())
        return (
            f"`{self.argument}={self.value!r}` {self.why}: it needs {needs}. Received: {received}"
        )

    def flag_message(self) -> str:
        """The message in `keras-reuse export`'s terms: `--flag=value: needs ...`."""

        def flag(name: str, value: Any) -> str:
            name = FLAGS.get(name, name)
            if value is _GIVEN:
                return f"--{name}"
            if isinstance(value, bool):
                return f"--{name}" if value else f"--no{name}"
            if isinstance(value, tuple):
                return f"--{name}=" + " or ".join("none" if v is None else str(v) for v in value)
            return f"--{name}={'none' if value is None else value}"

        needs = " and ".join(flag(k, v) for k, v in self.needs.items())
        received = " ".join(
            flag(k, v) for k, v in self.received.items() if not isinstance(v, _Data)
        )
        head = flag(self.argument, self.value)
        return f"{head}: {self.why}: needs {needs}" + (
            f" (received {received})" if received else ""
        )


class _Given:
    def __repr__(self) -> str:
        return "given"


# A requirement that an argument be given (images), whatever its value.
_GIVEN = _Given()


class _Data:
    """Stands for images in a message: given or not."""

    def __init__(self, given: bool):
        self.given = given

    def __repr__(self) -> str:
        return "given" if self.given else "None"


def resolve_recipe(
    quantization: str | None,
    fold_batchnorm: bool = False,
    int8_layout: str = AUTO,
    quantizer: str = AUTO,
    int16_layers: str | None = None,
    float_layers: str | None = AUTO,
) -> tuple[str, str, str | None]:
    """The recipe that "auto" values stand for; other values are kept as given.

    For quantization="int8" (without `fold_batchnorm`, which the compact
    layout and the AI Edge Quantizer refuse): the AI Edge Quantizer, the
    compact layout and `FIRST_STAGE` left in float32 (unless `int16_layers`
    is given, which would then be overridden where both match). Otherwise
    the TFLite converter, its layout and no float32 layers.

    Args:
        quantization, fold_batchnorm, int8_layout, quantizer, int16_layers,
            float_layers: As `to_tflite`.

    Returns:
        `(int8_layout, quantizer, float_layers)`. `float_layers` may be
        `FIRST_STAGE`, which `to_tflite` drops for a graph without such layers.
    """
    recipe = quantization == "int8" and not fold_batchnorm
    if quantizer == AUTO:
        quantizer = "ai_edge_quantizer" if recipe else "converter"
    if int8_layout == AUTO:
        int8_layout = "compact" if recipe else "converter"
    if float_layers == AUTO:
        auto_float = recipe and quantizer == "ai_edge_quantizer" and int16_layers is None
        float_layers = FIRST_STAGE if auto_float else None
    return int8_layout, quantizer, float_layers


def check_combinations(
    quantization: str | None = None,
    fold_batchnorm: bool = False,
    int8_layout: str = AUTO,
    quantizer: str = AUTO,
    int16_layers: str | None = None,
    float_layers: str | None = AUTO,
    verify: bool = True,
    min_top1_agreement: float | None = None,
    representative_data: bool = False,
    verification_data: bool = False,
) -> None:
    """Checks which export options go together.

    Values are checked one by one by their users (`to_tflite`, absl's flag
    types); this checks their combinations, after `resolve_recipe` (an
    "auto" value never breaks a rule). Images are only said to be given or
    not.

    Args:
        quantization, fold_batchnorm, int8_layout, quantizer, int16_layers,
            float_layers, verify, min_top1_agreement: As `to_tflite`.
        representative_data: Whether calibration images are given.
        verification_data: Whether verification images are given.

    Raises:
        OptionError: (a ValueError) for the first rule broken.
    """
    calibration = _Data(representative_data)
    int8_layout, quantizer, float_layers = resolve_recipe(
        quantization, fold_batchnorm, int8_layout, quantizer, int16_layers, float_layers
    )
    if int8_layout == "compact" and (quantization != "int8" or fold_batchnorm):
        raise OptionError(
            "int8_layout",
            int8_layout,
            {"quantization": "int8", "fold_batchnorm": False},
            {"quantization": quantization, "fold_batchnorm": fold_batchnorm},
            "rewrites the BatchNorm affines of an int8 file",
        )
    if quantizer == "ai_edge_quantizer" and (quantization not in CALIBRATED or fold_batchnorm):
        raise OptionError(
            "quantizer",
            quantizer,
            {"quantization": CALIBRATED, "fold_batchnorm": False},
            {"quantization": quantization, "fold_batchnorm": fold_batchnorm},
            "quantizes the shared-kernel graph to full integer",
        )
    for argument, value in (("int16_layers", int16_layers), ("float_layers", float_layers)):
        if value is not None and (quantizer != "ai_edge_quantizer" or quantization != "int8"):
            raise OptionError(
                argument,
                value,
                {"quantization": "int8", "quantizer": "ai_edge_quantizer"},
                {"quantization": quantization, "quantizer": quantizer},
                "sets the precision of some layers of an int8 file",
            )
    if quantization in CALIBRATED and not representative_data:
        raise OptionError(
            "quantization",
            quantization,
            {"representative_data": _GIVEN},
            {"representative_data": calibration},
            "calibrates on images",
        )
    if quantization not in CALIBRATED and representative_data:
        raise OptionError(
            "representative_data",
            calibration,
            {"quantization": CALIBRATED},
            {"quantization": quantization},
            "calibrates full-integer quantization",
        )
    if verification_data and not verify:
        raise OptionError(
            "verification_data",
            _Data(True),
            {"verify": True},
            {"verify": verify},
            "is what a file is verified on",
        )
    if verify and quantization is not None and not (verification_data or representative_data):
        raise OptionError(
            "quantization",
            quantization,
            {"verification_data": _GIVEN},
            {"verification_data": _Data(False), "verify": verify},
            "is verified by top-1 agreement with Keras on real images",
        )
    if min_top1_agreement is not None and quantization is None:
        raise OptionError(
            "min_top1_agreement",
            min_top1_agreement,
            {"quantization": QUANTIZATIONS[1:]},
            {"quantization": quantization},
            "applies to quantized exports; float32 must match Keras numerically",
        )
