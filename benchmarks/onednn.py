"""TensorFlow with oneDNN off and on, side by side, for every benchmark model.

    python -m benchmarks.onednn --models=lrunet1,lrunet14,sharesnet164,resnet164

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it starts, and on x86
CPUs without AVX-512 VNNI, bfloat16 or AMX (the AVX2-only AMD EPYC, for
one) it leaves oneDNN off unless the variable is 1. So each measurement is
a fresh process with the variable set to 0 or 1, the two taking turns
(off first in even rounds, on first in odd ones) so that they share the
machine's load. Each child builds the model (timed), calls `fit` to the
end of its first step (timed: tracing, graph optimisation, one step), then
makes `--calls` `fit` calls of `--steps` + 1 steps on the same model (steady
and whole-call images/s, as `benchmarks.run`), and reports its peak
resident memory (VmHWM). Medians over `--rounds`. Writes `onednn.json`
and `onednn.md` (atomically) to `--output_dir`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from absl import app, flags

from benchmarks import measure, models

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["lrunet1", "lrunet14", "sharesnet164", "resnet164"], "Models to time.")
flags.DEFINE_integer("batch_size", 128, "Images per step.")
flags.DEFINE_integer("rounds", 2, "Fresh-process pairs (off, on) per model; medians are reported.")
flags.DEFINE_integer("calls", 2, "Timed fit calls per process, after the first step.")
flags.DEFINE_integer("steps", 7, "Timed steps per fit call (each call has one more).")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where onednn.json/.md go.")
flags.DEFINE_string("child", None, "(internal) One measurement's JSON spec; prints one JSON line.")

SETTINGS = ("0", "1")  # TF_ENABLE_ONEDNN_OPTS values: off, on
FIGURES = ("steady", "fit_call", "build_s", "first_step_s", "peak_rss_mb")


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One fresh process's figures (run with `--child`).

    Args:
        spec: `{"model": name, "batch_size": int, "calls": int, "steps": int}`.

    Returns:
        Whether TensorFlow runs oneDNN (`onednn`, as it reports it), its
        version, build and first-step seconds, the median steady and
        whole-call images/s of `calls` fit calls, and the peak RSS in MB.
    """
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    batch = spec["batch_size"]
    start = time.perf_counter()
    model = models.keras_model(spec["model"])
    built = time.perf_counter()
    measure.compile_for_training(model)
    data = measure.synthetic_dataset(batch, models.INPUT_SHAPE)
    ends: list[float] = []
    # As measure.keras_first_step, but the model stays for the timed calls.
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, callbacks=[measure._BatchEnds(ends)])
    first_step = ends[0] - built
    trainer = measure.KerasTrainer(model, batch, warmup=1, compiled=True)
    runs = [trainer.run(spec["steps"]) for _ in range(spec["calls"])]
    return {
        "onednn": bool(_pywrap_util_port.IsMklEnabled()),
        "tensorflow": tf.__version__,
        "build_s": built - start,
        "first_step_s": first_step,
        "steady": measure.median([r["steady"] for r in runs]),
        "fit_call": measure.median([r["fit_call"] for r in runs]),
        "peak_rss_mb": measure._peak_rss_mb(),
    }


def run_child(spec: dict[str, Any], setting: str, timeout: float = 3600.0) -> dict[str, Any]:
    """Runs `child(spec)` in a fresh process with `TF_ENABLE_ONEDNN_OPTS=setting`.

    Args:
        spec: As `child`.
        setting: "0" (off) or "1" (on).
        timeout: Seconds before the child is abandoned.

    Returns:
        The child's figures, or `{"error": message}`.
    """
    args = ["benchmarks.onednn", f"--child={json.dumps(spec)}"]
    return measure.json_child(args, {"TF_ENABLE_ONEDNN_OPTS": setting}, timeout)


def measure_model(name: str, settings: dict[str, int]) -> dict[str, Any]:
    """Every round's figures for one model, oneDNN off and on taking turns.

    Args:
        name: A `benchmarks.models` name.
        settings: `batch_size`, `rounds`, `calls` and `steps`.

    Returns:
        `{"model", "label", "rounds": {setting: [figures]}, "medians": {setting: figures}}`.
    """
    spec = {"model": name, **{k: settings[k] for k in ("batch_size", "calls", "steps")}}
    rounds: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for index in range(settings["rounds"]):
        for setting in SETTINGS if index % 2 == 0 else SETTINGS[::-1]:
            print(f"[{models.label(name)}] round {index + 1}, oneDNN {setting}", flush=True)
            result = run_child(spec, setting)
            print(f"  {json.dumps(result)}", flush=True)
            rounds[setting].append(result)
    medians: dict[str, dict] = {}
    for setting, results in rounds.items():
        good = [r for r in results if "error" not in r]
        medians[setting] = {
            key: measure.median([r[key] for r in good]) if good else None for key in FIGURES
        }
        medians[setting]["onednn"] = sorted({r["onednn"] for r in good})
    return {"model": name, "label": models.label(name), "rounds": rounds, "medians": medians}


def _cell(value: float | None, digits: int) -> str:
    """A table cell: the value with `digits` decimals and thousands commas, or "-"."""
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(on: float | None, off: float | None) -> str:
    """A table cell: on/off with two decimals, or "-" if either is missing."""
    return "-" if not on or not off else f"{on / off:.2f}"


def markdown(
    rows: list[dict[str, Any]], command: str, machine: str, load: tuple[float, float], batch: int
) -> str:
    """The results as Markdown: a row per model and setting, then the on/off ratios.

    Args:
        rows: `measure_model`'s results.
        command: The command line that made them.
        machine: The machine line (CPU, cores, SIMD flags, TensorFlow).
        load: The load average before and after.
        batch: The batch size.

    Returns:
        The Markdown text.
    """
    rounds = max(len(r) for row in rows for r in row["rounds"].values())
    lines = [
        f"Measured with `{command}` on {machine}; load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after. Batch {batch}, a fresh process per figure, "
        f"`TF_ENABLE_ONEDNN_OPTS` 0 and 1 taking turns, medians of {rounds} rounds.",
        "",
        "| model | oneDNN | train img/s | whole fit calls img/s | build s "
        "| first step s | first step in steady steps | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for setting, label in zip(SETTINGS, ("off", "on"), strict=True):
            m = row["medians"][setting]
            steady_step = batch / m["steady"] if m["steady"] else None
            first = m["first_step_s"]
            in_steps = first / steady_step if steady_step and first else None
            lines.append(
                f"| {row['label']} | {label} | {_cell(m['steady'], 1)} | {_cell(m['fit_call'], 1)} "
                f"| {_cell(m['build_s'], 1)} | {_cell(m['first_step_s'], 1)} "
                f"| {_cell(in_steps, 1)} | {_cell(m['peak_rss_mb'], 0)} |"
            )
    lines += [
        "",
        "| model | train on/off | whole fit calls on/off | first step on/off | peak RSS on/off |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        off, on = (row["medians"][s] for s in SETTINGS)
        lines.append(
            f"| {row['label']} | {_ratio(on['steady'], off['steady'])} "
            f"| {_ratio(on['fit_call'], off['fit_call'])} "
            f"| {_ratio(on['first_step_s'], off['first_step_s'])} "
            f"| {_ratio(on['peak_rss_mb'], off['peak_rss_mb'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.child:
        print(json.dumps(child(json.loads(FLAGS.child))), flush=True)
        return
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
    settings = {n: FLAGS[n].value for n in ("batch_size", "rounds", "calls", "steps")}
    before = os.getloadavg()[0]
    rows = [measure_model(name, settings) for name in FLAGS.models]
    load = (before, os.getloadavg()[0])
    given = [
        FLAGS[n].serialize()
        for n in ("models", "batch_size", "rounds", "calls", "steps")
        if FLAGS[n].present
    ]
    command = " ".join(["python -m benchmarks.onednn", *given])
    results = [r for row in rows for rs in row["rounds"].values() for r in rs]
    versions = sorted({r["tensorflow"] for r in results if "tensorflow" in r})
    machine = (
        f"{measure.cpu_model()} ({os.cpu_count()} cores, {' '.join(measure.cpu_flags())}), "
        f"TensorFlow {', '.join(versions) or 'unknown'}"
    )
    payload = {"command": command, "machine": machine, "load": load, "models": rows}
    table = markdown(rows, command, machine, load, settings["batch_size"])
    measure.write_results(FLAGS.output_dir, "onednn", payload, table)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        # The table shows "-" where a child failed; the exit code says so too.
        sys.exit(f"{len(errors)} measurement(s) failed; the first: {errors[0]}")


if __name__ == "__main__":
    app.run(main)
