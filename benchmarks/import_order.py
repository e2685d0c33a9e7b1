"""The speed a Python user gets: `import keras` or `import keras_reuse` first, against PyTorch.

    python -m benchmarks.import_order --models=lrunet14,sharesnet164

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it starts, and on x86
CPUs without AVX-512 VNNI, bfloat16 or AMX it leaves oneDNN off unless the
variable is 1. Importing `keras_reuse` before TensorFlow starts sets it
(`keras_reuse.startup`); a script that imports Keras first starts TensorFlow
with TensorFlow's own default. Each figure is a fresh process with
`TF_ENABLE_ONEDNN_OPTS` unset, whose first line is `import keras`, `import
keras_reuse` or `import torch` (the PyTorch reference of the same network,
`torch_reference/`); the three take turns, in rotated order every round.
Each Keras child builds the model, calls plain `model.fit` to the end of its
first step (timed), then makes `--calls` `fit` calls of `--steps` + 1 steps
on the same model (steady images/s, as `benchmarks.run`). Medians over
`--rounds`. Writes `import_order.json` and `import_order.md` (atomically) to
`--output_dir`.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from typing import Any

from absl import app, flags

from benchmarks import measure, models

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["lrunet14", "sharesnet164"], "Models to time.")
flags.DEFINE_integer("batch_size", 128, "Images per step.")
flags.DEFINE_integer("rounds", 2, "Fresh-process rounds per model; medians are reported.")
flags.DEFINE_integer("calls", 2, "Timed fit calls per process, after the first step.")
flags.DEFINE_integer("steps", 7, "Timed steps per fit call (each call has one more).")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where import_order.json/.md go.")
flags.DEFINE_string("child", None, "(internal) One measurement's JSON spec; prints one JSON line.")

# What the child imports first: the two orders of a Keras user, and PyTorch.
FIRST_IMPORTS = ("keras", "keras_reuse", "torch")
LABELS = {"keras": "`import keras` first", "keras_reuse": "`import keras_reuse` first"}
FIGURES = ("steady", "first_step_s")
# The variables a user may have set; the children start without them.
_VARIABLES = ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")
# The child's first lines: its first import, then this module's main.
_BOOT = "import {first}\nfrom absl import app\nfrom benchmarks import import_order\n"
_BOOT += "app.run(import_order.main)"


def _keras_child(spec: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    from keras_reuse import startup

    batch = spec["batch_size"]
    start = time.perf_counter()
    model = models.keras_model(spec["model"])
    measure.compile_for_training(model)
    data = measure.synthetic_dataset(batch, models.INPUT_SHAPE)
    ends: list[float] = []
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, callbacks=[measure.BatchEnds(ends)])
    trainer = measure.KerasTrainer(model, batch, warmup=1, compiled=True)
    runs = [trainer.run(spec["steps"]) for _ in range(spec["calls"])]
    return {
        "onednn": bool(_pywrap_util_port.IsMklEnabled()),
        "warned": startup.warn_if_onednn_off(),
        "version": f"TensorFlow {tf.__version__}",
        "first_step_s": ends[0] - start,
        "steady": measure.median([r["steady"] for r in runs]),
    }


def _torch_child(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    start = time.perf_counter()
    net = models.torch_model(spec["model"])
    trainer = measure.TorchTrainer(
        net, spec["batch_size"], models.INPUT_SHAPE, warmup=1, bf16=False
    )
    first_step = time.perf_counter() - start
    runs = [trainer.run(spec["steps"]) for _ in range(spec["calls"])]
    return {
        "onednn": None,
        "warned": False,
        "version": f"PyTorch {torch.__version__}",
        "first_step_s": first_step,
        "steady": measure.median([r["steady"] for r in runs]),
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One fresh process's figures (run with `--child`, after its first import).

    Args:
        spec: `{"first": one of FIRST_IMPORTS, "model": name, "batch_size",
            "calls", "steps"}`.

    Returns:
        TensorFlow's oneDNN state (None for PyTorch), whether the package
        warned that it is off, the framework's version, the seconds from
        building the model to the end of its first training step, and the
        median steady training images/s of `calls` calls.
    """
    return _torch_child(spec) if spec["first"] == "torch" else _keras_child(spec)


def run_child(spec: dict[str, Any], timeout: float = 3600.0) -> dict[str, Any]:
    """Runs `child(spec)` in a fresh process that imports `spec["first"]` first.

    Returns:
        The child's figures, or `{"error": message}`.
    """
    code = _BOOT.format(first=spec["first"])
    return measure.json_child(
        ["-c", code, f"--child={json.dumps(spec)}"], {}, timeout, unset=_VARIABLES
    )


def measure_model(name: str, settings: dict[str, int]) -> dict[str, Any]:
    """Every round's figures for one model, the three first imports taking turns.

    Args:
        name: A `benchmarks.models` name.
        settings: `batch_size`, `rounds`, `calls` and `steps`.

    Returns:
        `{"model", "label", "rounds": {first: [figures]}, "medians": {first: figures}}`.
    """
    spec = {"model": name, **{k: settings[k] for k in ("batch_size", "calls", "steps")}}
    rounds: dict[str, list[dict]] = {first: [] for first in FIRST_IMPORTS}
    for index in range(settings["rounds"]):
        shift = index % len(FIRST_IMPORTS)
        for first in FIRST_IMPORTS[shift:] + FIRST_IMPORTS[:shift]:
            print(f"[{models.label(name)}] round {index + 1}, import {first} first", flush=True)
            result = run_child({**spec, "first": first})
            print(f"  {json.dumps(result)}", flush=True)
            rounds[first].append(result)
    medians: dict[str, dict] = {}
    for first, results in rounds.items():
        good = [r for r in results if "error" not in r]
        medians[first] = {
            key: measure.median([r[key] for r in good]) if good else None for key in FIGURES
        }
        medians[first]["onednn"] = sorted({r["onednn"] for r in good}, key=str)
        medians[first]["warned"] = sorted({r["warned"] for r in good})
    return {"model": name, "label": models.label(name), "rounds": rounds, "medians": medians}


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _onednn(states: list) -> str:
    return "/".join("on" if s else "off" for s in states) or "-"


def markdown(rows: list[dict[str, Any]], command: str, machine: str, batch: int) -> str:
    """The results as Markdown: per model, each import order against PyTorch.

    Args:
        rows: `measure_model`'s results.
        command: The command line that made them.
        machine: The machine line (CPU, cores, SIMD flags, versions).
        batch: The batch size.

    Returns:
        The Markdown text.
    """
    rounds = max(len(r) for row in rows for r in row["rounds"].values())
    lines = [
        f"Measured with `{command}` on {machine}. Plain `model.fit`, batch {batch}, "
        "`TF_ENABLE_ONEDNN_OPTS` unset (TensorFlow's logs silenced); a fresh process per "
        f"figure, the three first imports taking turns, medians of {rounds} rounds.",
        "",
        "| model | script starts with | TensorFlow oneDNN | train img/s | x PyTorch "
        "| first step s |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in rows:
        reference = row["medians"]["torch"]["steady"]
        for first in ("keras", "keras_reuse"):
            m = row["medians"][first]
            ratio = m["steady"] / reference if m["steady"] and reference else None
            lines.append(
                f"| {row['label']} | {LABELS[first]} | {_onednn(m['onednn'])} "
                f"| {_cell(m['steady'], 1)} | {_cell(ratio, 2)} | {_cell(m['first_step_s'], 1)} |"
            )
        torch = row["medians"]["torch"]
        lines.append(
            f"| {row['label']} | PyTorch reference | - | {_cell(torch['steady'], 1)} | 1.00 "
            f"| {_cell(torch['first_step_s'], 1)} |"
        )
    return "\n".join(lines) + "\n"


def _check_flags() -> dict[str, int]:
    for name in ("batch_size", "rounds", "calls", "steps"):
        if FLAGS[name].value < 1:
            raise app.UsageError(f"--{name} must be >= 1. Received: {FLAGS[name].value}")
    unknown = [m for m in FLAGS.models if m not in models.MODELS]
    if unknown or not FLAGS.models:
        raise app.UsageError(
            f"--models must name models from {', '.join(models.MODELS)}. "
            f"Received: {','.join(FLAGS.models)}"
        )
    if os.path.exists(FLAGS.output_dir) and not os.path.isdir(FLAGS.output_dir):
        raise app.UsageError(f"--output_dir must be a directory. Received: {FLAGS.output_dir}")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    if not os.access(FLAGS.output_dir, os.W_OK):
        raise app.UsageError(f"--output_dir must be writable. Received: {FLAGS.output_dir}")
    return {n: FLAGS[n].value for n in ("batch_size", "rounds", "calls", "steps")}


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.child:
        print(json.dumps(child(json.loads(FLAGS.child))), flush=True)
        return
    settings = _check_flags()
    rows = [measure_model(name, settings) for name in FLAGS.models]
    given = [
        FLAGS[n].serialize()
        for n in ("models", "batch_size", "rounds", "calls", "steps")
        if FLAGS[n].present
    ]
    command = " ".join(["python -m benchmarks.import_order", *given])
    results = [r for row in rows for rs in row["rounds"].values() for r in rs]
    versions = sorted({r["version"] for r in results if "version" in r})
    machine = (
        f"{measure.machine()} [{' '.join(measure.cpu_flags())}], "
        f"{', '.join(versions) or 'unknown versions'}, "
        f"{datetime.date.today().isoformat()}"
    )
    payload = {"command": command, "machine": machine, "models": rows}
    table = markdown(rows, command, machine, settings["batch_size"])
    measure.write_results(FLAGS.output_dir, "import_order", payload, table)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        # The table shows "-" where a child failed; the exit code says so too.
        sys.exit(f"{len(errors)} measurement(s) failed; the first: {errors[0]}")


if __name__ == "__main__":
    app.run(main)
