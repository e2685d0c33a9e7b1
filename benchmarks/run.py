"""The benchmark suite: keras_reuse against PyTorch and a naive Keras port, side by side.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python -m benchmarks.run
    python -m benchmarks.run --quick          # a smoke run of a couple of minutes

For each model (LruNet-1, LruNet-14, ShaResNet-164 shared and unshared) it
measures, in one process so that every implementation shares the same
machine load: training images/s with plain `model.fit` (float32 and
mixed_bfloat16), `model.predict` images/s at batch 128, batch-1 latency
(Keras `tf.function`, and the LiteRT float32 export), and the peak resident
memory of a training run (a fresh process per model). The PyTorch
implementation of the same network (`torch_reference/`; skipped with a
message when torch is missing) and, for LruNets, the naive Keras port with
`Conv2D(groups=8)` run in the same rounds. Training rates are medians over
`--repeats` interleaved rounds after `--warmup` steps. The input pipeline's
images/s (`keras_reuse.data`, augmentation on) is set against the training
rate. Prints a markdown table and writes `results.json` and `results.md`
(atomically) to `--output_dir`.

    python -m benchmarks.run --int8_recipes   # only the int8 export recipes

`--int8_recipes` instead compares `to_tflite`'s int8 recipes on the shipped
LruNet presets (`bench_int8_recipes`): each file's size per trainable
parameter, its top-1 agreement with Keras on held-out test images (the
CIFAR-100 presets, whose test set is not stored here, are scored on
CIFAR-10 test images: agreement needs inputs, not labels) and its LiteRT
batch-1 latency, every file of a preset timed in the same interleaved
rounds. Writes `int8_default/int8_recipes.json` and `.md` to `--output_dir`.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from absl import app, flags

from benchmarks import measure, models
from keras_reuse.utils import atomic

SCHEMA_VERSION = 1

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Smoke run: LruNet-1 only, tiny batches, one round.")
flags.DEFINE_list("models", None, f"Models to time, from {', '.join(models.MODELS)}.")
flags.DEFINE_integer("batch_size", None, "Training and predict batch size (default 128).")
flags.DEFINE_integer("warmup", None, "Training steps before timing (tracing, caches).")
flags.DEFINE_integer(
    "steps",
    None,
    "Timed training steps per round: each round is one fit call of steps + 1 steps "
    "(default 7: whole calls of 8 steps).",
)
flags.DEFINE_bool("first_step", True, "Time a fresh model's build and first fit step.")
flags.DEFINE_integer(
    "overhead_calls",
    None,
    "Per-call overhead: this many fit calls of --overhead_steps against one call of "
    "them all, the median of --repeats rounds (default 4; 0 skips it).",
)
flags.DEFINE_integer("overhead_steps", None, "Steps per fit call of the overhead probe (4).")
flags.DEFINE_integer("repeats", None, "Interleaved rounds; the median is reported.")
flags.DEFINE_integer("latency_calls", None, "Batch-1 calls per latency measurement.")
flags.DEFINE_bool("torch", True, "Time the PyTorch implementation (needs torch).")
flags.DEFINE_bool("naive", True, "Time the naive Keras port (Conv2D(groups=8)) of LruNets.")
flags.DEFINE_bool("bf16", True, "Also time mixed_bfloat16 training (Keras).")
flags.DEFINE_bool(
    "torch_bf16",
    None,
    "Also time PyTorch bfloat16 autocast training (default: in --quick only; on CPUs "
    "without native bfloat16 it is several times slower than float32).",
)
flags.DEFINE_bool("litert", True, "Time the LiteRT export at batch 1.")
flags.DEFINE_bool("memory", True, "Measure peak RSS of a training run per model.")
flags.DEFINE_list("pipeline_datasets", None, "TFDS datasets whose input pipeline is timed.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: $TFDS_DATA_DIR).")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where results.json/.md go.")
flags.DEFINE_bool("int8_recipes", False, "Only compare the int8 export recipes (see above).")
flags.DEFINE_list("int8_presets", None, "--int8_recipes: LruNet presets (default: all).")
flags.DEFINE_integer("int8_calibration", 200, "--int8_recipes: calibration (training) images.")
flags.DEFINE_integer("int8_test", 5000, "--int8_recipes: held-out test images scored.")

_FULL = {
    "models": ["lrunet14", "lrunet1", "sharesnet164", "resnet164"],
    "batch_size": 128,
    "warmup": 1,
    "steps": 7,
    "repeats": 3,
    "overhead_calls": 4,
    "overhead_steps": 4,
    "latency_calls": 20,
    "predict_batches": 3,
    "memory_steps": 3,
    "pipeline_datasets": ["cifar10_jpeg", "fashion_mnist"],
    "pipeline_batches": None,  # whole epochs, via benchmarks.pipeline
}
_QUICK = {
    "models": ["lrunet1"],
    "batch_size": 8,
    "warmup": 1,
    "steps": 2,
    "repeats": 1,
    "overhead_calls": 2,
    "overhead_steps": 1,
    "latency_calls": 3,
    "predict_batches": 1,
    "memory_steps": 1,
    "pipeline_datasets": ["fashion_mnist"],
    "pipeline_batches": 20,
}
_INTEGER_FLAGS = (
    "batch_size",
    "warmup",
    "steps",
    "repeats",
    "latency_calls",
    "overhead_calls",
    "overhead_steps",
)


def settings_from_flags() -> dict:
    """The run's settings: the mode's defaults overridden by explicit flags.

    Raises:
        app.UsageError: naming the flag, for an unknown model or a count < 1.
    """
    settings = dict(_QUICK if FLAGS.quick else _FULL)
    for name in (*_INTEGER_FLAGS, "models", "pipeline_datasets"):
        value = getattr(FLAGS, name)
        if value is not None:
            settings[name] = value
    for name in _INTEGER_FLAGS:
        minimum = 0 if name in ("warmup", "overhead_calls") else 1
        if settings[name] < minimum:
            raise app.UsageError(f"--{name} must be >= {minimum}. Received: {settings[name]}")
    unknown = [m for m in settings["models"] if m not in models.MODELS]
    if unknown or not settings["models"]:
        raise app.UsageError(
            f"--models must name models from {', '.join(models.MODELS)}. "
            f"Received: {','.join(settings['models'])}"
        )
    for name in ("torch", "naive", "bf16", "litert", "memory", "first_step"):
        settings[name] = getattr(FLAGS, name)
    settings["torch_bf16"] = FLAGS.quick if FLAGS.torch_bf16 is None else FLAGS.torch_bf16
    return settings


# ------------------------------------------------------------ environment ---


def torch_or_reason() -> tuple[Any, str | None]:
    # PyTorch's OpenMP threads spin while waiting at barriers; on a machine
    # shared with other jobs a descheduled spinner stalls every op (measured
    # here: LruNet-1 batch-1 forward 61 ms spinning, 13 ms passive, load 10
    # on 2 cores). Passive waiting is the fair setting for the reference.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        return None, "torch is not installed: pip install 'keras-reuse[torch]' (torch==2.13.0)"
    return torch, None


def environment(torch: Any) -> dict:
    import keras
    import tensorflow as tf

    return {
        "cpu": measure.cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": measure.cpu_flags(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "torch": getattr(torch, "__version__", None),
        "torch_threads": torch.get_num_threads() if torch else None,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


# ------------------------------------------------------------- measuring ---


def _guard(results: dict, key: str, probe: Callable[[], Any]) -> None:
    """Stores `probe()` under `key`, or the error it raised (the suite goes on)."""
    try:
        results[key] = probe()
    except Exception as error:  # noqa: BLE001 - one failed cell must not lose the run
        traceback.print_exc()
        results[key] = None
        results.setdefault("errors", {})[key] = f"{type(error).__name__}: {error}"


def _interleaved(probes: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Medians of every probe over `repeats` rounds, the probes taking turns.

    A probe keyed "impl/metric" returns a float, or a dict `{metric: float}`
    of several figures taken in one measurement (stored as "impl/metric").
    """
    samples: dict[str, list[float]] = {}
    for _ in range(repeats):
        for key, probe in probes.items():
            value = probe()
            impl = key.split("/")[0]
            named = value if isinstance(value, dict) else {key.split("/")[1]: value}
            for metric, figure in named.items():
                samples.setdefault(f"{impl}/{metric}", []).append(figure)
    return {key: measure.median(values) for key, values in samples.items()}


def _train_metrics(rates: dict[str, float], precision: str) -> dict[str, float]:
    """A trainer's `{"steady", "fit_call"}` as the results' metric names."""
    return {f"train_{precision}": rates["steady"], f"fit_call_{precision}": rates["fit_call"]}


def bench_model(name: str, settings: dict, torch: Any) -> dict:
    """Every measurement of one model, all implementations side by side."""
    batch, warmup, steps = settings["batch_size"], settings["warmup"], settings["steps"]
    impls: dict[str, dict] = {"keras": {}}
    keras_fp32 = models.keras_model(name)
    impls["keras"]["params"] = measure.trainable_params(keras_fp32)
    builders: dict[str, Callable[[], Any]] = {"keras": lambda: keras_fp32}
    if settings["naive"] and models.has_naive(name):
        impls["keras_naive"] = {}
        builders["keras_naive"] = lambda: models.keras_model(name, naive=True)
    if torch is not None and settings["torch"]:
        impls["torch"] = {}
    built: dict[str, Any] = {}
    for impl, build in builders.items():
        _guard(impls[impl], "_built", lambda build=build: build())
        built[impl] = impls[impl].pop("_built")
    net = None
    if "torch" in impls:
        net = models.torch_model(name)
        impls["torch"]["params"] = int(sum(p.numel() for p in net.parameters()))
    if "keras_naive" in impls and built["keras_naive"] is not None:
        impls["keras_naive"]["params"] = measure.trainable_params(built["keras_naive"])

    print(f"[{models.label(name)}] training", flush=True)
    trainers: dict[str, Callable[[], Any]] = {}
    trainers_by_impl: dict[str, measure.KerasTrainer] = {}
    for impl, model in built.items():
        if model is not None:
            _guard(impls[impl], "_t", lambda m=model: measure.KerasTrainer(m, batch, warmup))
            trainer = impls[impl].pop("_t")
            if trainer is not None:
                trainers_by_impl[impl] = trainer
                trainers[f"{impl}/train_fp32"] = lambda t=trainer: _train_metrics(
                    t.run(steps), "fp32"
                )
    if settings["bf16"]:
        _guard(
            impls["keras"],
            "_t",
            lambda: measure.KerasTrainer(
                models.keras_model(name, policy="mixed_bfloat16"), batch, warmup
            ),
        )
        trainer = impls["keras"].pop("_t")
        if trainer is not None:
            trainers["keras/train_bf16"] = lambda t=trainer: _train_metrics(t.run(steps), "bf16")
    if net is not None:
        for key, bf16 in (("train_fp32", False), ("train_bf16", True)):
            if bf16 and not settings["torch_bf16"]:
                continue
            shape = models.INPUT_SHAPE
            trainer = measure.TorchTrainer(net, batch, shape, warmup, bf16=bf16)
            precision = "bf16" if bf16 else "fp32"
            trainers[f"torch/{key}"] = lambda t=trainer, p=precision: _train_metrics(
                t.run(steps), p
            )
    _store(impls, _safe_interleaved(impls, trainers, settings["repeats"]))
    if settings["overhead_calls"] and "keras" in trainers_by_impl:
        calls, call_steps = settings["overhead_calls"], settings["overhead_steps"]
        _guard(
            impls["keras"],
            "per_call_overhead",
            lambda: trainers_by_impl["keras"].per_call_overhead(
                calls, call_steps, rounds=settings["repeats"]
            ),
        )
    trainers.clear()
    trainers_by_impl.clear()
    gc.collect()

    if settings["first_step"]:
        print(f"[{models.label(name)}] time to first step", flush=True)
        first: dict[str, Callable[[], Any]] = {
            "keras/first": lambda: measure.keras_first_step(lambda: models.keras_model(name), batch)
        }
        if net is not None:
            first["torch/first"] = lambda: measure.torch_first_step(
                lambda: models.torch_model(name), batch, models.INPUT_SHAPE
            )
        _store(impls, _safe_interleaved(impls, first, 1))

    print(f"[{models.label(name)}] inference", flush=True)
    probes: dict[str, Callable[[], float]] = {}
    for impl, model in built.items():
        if model is not None:
            probes[f"{impl}/predict"] = measure.keras_predict_rate(
                model, batch, settings["predict_batches"]
            )
    if net is not None:
        probes["torch/predict"] = measure.torch_predict_rate(
            net, batch, settings["predict_batches"], models.INPUT_SHAPE
        )
    _store(impls, _safe_interleaved(impls, probes, settings["repeats"]))

    calls = settings["latency_calls"]
    latency: dict[str, Callable[[], float]] = {}
    for impl, model in built.items():
        if model is not None:
            latency[f"{impl}/latency_ms"] = lambda m=model: measure.keras_latency_ms(m, calls)
    if net is not None:
        shape = models.INPUT_SHAPE
        latency["torch/latency_ms"] = lambda: measure.torch_latency_ms(net, shape, calls)
    _store(impls, _safe_interleaved(impls, latency, settings["repeats"]))
    if settings["litert"]:
        _guard(impls["keras"], "litert", lambda: measure.litert_latency_ms(keras_fp32, calls))

    if settings["memory"]:
        print(f"[{models.label(name)}] memory", flush=True)
        spec = {"model": name, "batch_size": batch, "steps": settings["memory_steps"]}
        impls["keras"]["memory"] = measure.peak_memory({**spec, "kind": "keras"})
        if net is not None:
            impls["torch"]["memory"] = measure.peak_memory({**spec, "kind": "torch"})
    return {
        "model": name,
        "label": models.label(name),
        "batch_size": batch,
        "implementations": impls,
    }


def _safe_interleaved(impls: dict, probes: dict, repeats: int) -> dict[str, float | None]:
    holder: dict = {}
    _guard(holder, "values", lambda: _interleaved(probes, repeats))
    if holder["values"] is None:
        for key in probes:
            impl, _ = key.split("/")
            impls[impl].setdefault("errors", {}).update(holder.get("errors", {}))
        return {key: None for key in probes}
    return holder["values"]


def _store(impls: dict, values: dict[str, float | None]) -> None:
    for key, value in values.items():
        impl, metric = key.split("/")
        impls[impl][metric] = value


def bench_pipeline(settings: dict, data_dir: str | None) -> list[dict]:
    """Images/s of the augmented train pipeline of each dataset."""
    results = []
    for dataset in settings["pipeline_datasets"]:
        entry: dict[str, Any] = {"dataset": dataset}
        if settings["pipeline_batches"] is None:
            from benchmarks.pipeline import time_pipeline

            def probe(dataset=dataset):
                timed = time_pipeline(dataset, data_dir, settings["batch_size"])
                return timed["cached_epoch_images_per_s"], timed["first_epoch_images_per_s"]
        else:

            def probe(dataset=dataset):
                return _pipeline_batches(dataset, data_dir, settings), None

        _guard(entry, "rates", probe)
        rates = entry.pop("rates")
        entry["images_per_s"], entry["first_epoch_images_per_s"] = rates or (None, None)
        results.append(entry)
    return results


def _pipeline_batches(dataset: str, data_dir: str | None, settings: dict) -> float:
    from keras_reuse import data

    batches = settings["pipeline_batches"]
    ds = data.load(dataset, split="train", batch_size=settings["batch_size"], data_dir=data_dir)
    iterator = iter(ds)
    next(iterator)
    images = 0
    start = time.perf_counter()
    for _ in range(batches):
        images += int(next(iterator)[0].shape[0])
    return images / (time.perf_counter() - start)


# ---------------------------------------------------------------- report ---


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _steps(values: dict, batch_size: int | None) -> float | None:
    """Time to first step in steady steps (steady step = batch / steady rate)."""
    first, rate = values.get("first_step_s"), values.get("train_fp32")
    return first * rate / batch_size if first and rate and batch_size else None


def ratios(results: list[dict]) -> dict[str, dict]:
    """The figures the performance targets are stated in, per model."""
    out = {}
    for entry in results:
        impls = entry["implementations"]
        keras, naive, torch = impls["keras"], impls.get("keras_naive", {}), impls.get("torch", {})
        litert = (keras.get("litert") or {}).get("ms")
        out[entry["model"]] = {
            "train_keras_over_torch": _ratio(keras.get("train_fp32"), torch.get("train_fp32")),
            "fit_call_keras_over_torch": _ratio(
                keras.get("fit_call_fp32"), torch.get("fit_call_fp32")
            ),
            "first_step_in_steps": _steps(keras, entry.get("batch_size")),
            "torch_first_step_in_steps": _steps(torch, entry.get("batch_size")),
            "per_call_overhead": keras.get("per_call_overhead"),
            "train_keras_over_naive": _ratio(keras.get("train_fp32"), naive.get("train_fp32")),
            "train_bf16_over_fp32": _ratio(keras.get("train_bf16"), keras.get("train_fp32")),
            "predict_keras_over_torch": _ratio(keras.get("predict"), torch.get("predict")),
            "litert_latency_over_torch_eager": _ratio(litert, torch.get("latency_ms")),
        }
    return out


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.0f}%"


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


_IMPL_NAMES = {
    "keras": "keras_reuse",
    "keras_naive": "naive Keras, Conv2D(groups=8)",
    "torch": "PyTorch",
}


def markdown(payload: dict) -> str:
    env = payload["environment"]
    lines = [
        f"Measured with `{payload['command']}` on {env['cpu']} ({env['cpu_count']} cores, "
        f"{' '.join(env['cpu_flags']) or 'no SIMD flags read'}), TensorFlow {env['tensorflow']}, "
        f"Keras {env['keras']}, PyTorch {env['torch'] or 'absent'}; load average "
        f"{payload['load_before'][0]:.1f} before, {payload['load_after'][0]:.1f} after. "
        f"Batch {payload['settings']['batch_size']}, medians of "
        f"{payload['settings']['repeats']} interleaved rounds.",
        "",
        "| model | implementation | params | train fp32 img/s | whole fit calls img/s "
        "| build s | first step s | train bf16 img/s "
        "| predict img/s | batch-1 ms | LiteRT batch-1 ms | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in payload["results"]:
        for impl, values in entry["implementations"].items():
            memory = values.get("memory") or {}
            litert = values.get("litert") or {}
            lines.append(
                f"| {entry['label']} | {_IMPL_NAMES[impl]} | {_cell(values.get('params'))} "
                f"| {_cell(values.get('train_fp32'))} | {_cell(values.get('fit_call_fp32'))} "
                f"| {_cell(values.get('build_s'), 1)} | {_cell(values.get('first_step_s'), 1)} "
                f"| {_cell(values.get('train_bf16'))} "
                f"| {_cell(values.get('predict'))} | {_cell(values.get('latency_ms'), 2)} "
                f"| {_cell(litert.get('ms'), 2)} | {_cell(memory.get('peak_rss_mb'), 0)} |"
            )
    lines += [
        "",
        "| model | train keras/PyTorch | whole fit calls keras/PyTorch "
        "| first step in steady steps (keras, PyTorch) | per-call overhead "
        "| train keras/naive | bf16/fp32 "
        "| predict keras/PyTorch | LiteRT/PyTorch-eager latency |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in payload["ratios"].items():
        lines.append(
            f"| {models.label(name)} | {_cell(r['train_keras_over_torch'], 2)} "
            f"| {_cell(r['fit_call_keras_over_torch'], 2)} "
            f"| {_cell(r['first_step_in_steps'], 1)}, {_cell(r['torch_first_step_in_steps'], 1)} "
            f"| {_percent(r['per_call_overhead'])} "
            f"| {_cell(r['train_keras_over_naive'], 2)} | {_cell(r['train_bf16_over_fp32'], 2)} "
            f"| {_cell(r['predict_keras_over_torch'], 2)} "
            f"| {_cell(r['litert_latency_over_torch_eager'], 2)} |"
        )
    if payload["pipeline"]:
        lines += ["", "| dataset | pipeline img/s | x LruNet training |", "|---|---:|---:|"]
        for p in payload["pipeline"]:
            lines.append(
                f"| {p['dataset']} | {_cell(p.get('images_per_s'), 0)} "
                f"| {_cell(p.get('over_training'), 1)} |"
            )
    for note in payload["notes"]:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.int8_recipes:
        bench_int8_recipes()
        return
    settings = settings_from_flags()
    torch, reason = torch_or_reason()
    import keras

    # The same weights every run: the float32 export behind the LiteRT latency
    # is checked against Keras on them.
    keras.utils.set_random_seed(0)
    notes = []
    if reason:
        print(f"PyTorch skipped: {reason}", flush=True)
        notes.append(f"PyTorch skipped: {reason}")
    elif settings["torch"]:
        torch.set_num_threads(os.cpu_count() or 1)
    if torch and not settings["torch"]:
        torch = None
    load_before = os.getloadavg()
    started = time.perf_counter()
    results: list[dict] = []
    pipeline: list[dict] = []

    def report(complete: bool = False) -> str:
        payload = _payload(settings, torch, notes, load_before, started, results, pipeline)
        payload["complete"] = complete
        table = markdown(payload)
        os.makedirs(FLAGS.output_dir, exist_ok=True)
        atomic.write_text(
            os.path.join(FLAGS.output_dir, "results.json"), json.dumps(payload, indent=2)
        )
        atomic.write_text(os.path.join(FLAGS.output_dir, "results.md"), table)
        return table

    # The files are rewritten after every model, so a long run that is
    # interrupted keeps what it measured ("complete": false until the end).
    for name in settings["models"]:
        results.append(bench_model(name, settings, torch))
        gc.collect()
        report()
    if settings["pipeline_datasets"]:
        pipeline.extend(bench_pipeline(settings, FLAGS.data_dir))
    table = report(complete=True)
    print(table)
    print(f"wrote {os.path.join(FLAGS.output_dir, 'results.json')} and results.md")


def _payload(
    settings: dict,
    torch: Any,
    notes: list[str],
    load_before: tuple,
    started: float,
    results: list[dict],
    pipeline: list[dict],
) -> dict:
    # The pipeline is set against the deepest LruNet timed (LruNet-14 in full).
    lru = sorted(
        (r for r in results if r["model"].startswith("lrunet")),
        key=lambda r: models.MODELS[r["model"]][2]["layer_reuse"],
    )
    reference = lru[-1]["implementations"]["keras"].get("train_fp32") if lru else None
    for p in pipeline:
        p["over_training"] = _ratio(p.get("images_per_s"), reference)
        p["training_model"] = lru[-1]["model"] if lru else None
    return {
        "schema_version": SCHEMA_VERSION,
        "complete": False,
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "mode": "quick" if FLAGS.quick else "full",
        "settings": settings,
        "environment": environment(torch),
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "seconds": time.perf_counter() - started,
        "results": results,
        "ratios": ratios(results),
        "pipeline": pipeline,
        "notes": notes,
    }


# ------------------------------------------------------- int8 recipes ---

# name -> to_tflite arguments; "int8, default" is the call a user writes
# (what it resolved to is stored with its row).
INT8_RECIPES = {
    "float32": {"quantization": None},
    "int8, converter": {
        "quantization": "int8",
        "quantizer": "converter",
        "int8_layout": "converter",
    },
    "int8, converter, compact": {
        "quantization": "int8",
        "quantizer": "converter",
        "int8_layout": "compact",
    },
    "int8, AI Edge Quantizer, compact": {
        "quantization": "int8",
        "quantizer": "ai_edge_quantizer",
        "int8_layout": "compact",
        "float_layers": None,
    },
    "int8, default": {"quantization": "int8"},
}


def _images_and_labels(dataset: str, split: str, data_dir: str | None) -> tuple[Any, Any]:
    import numpy as np

    from keras_reuse import data

    batches = list(
        data.load(
            dataset, split=split, augment=False, shuffle=False, data_dir=data_dir
        ).as_numpy_iterator()
    )
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def bench_int8_recipes() -> None:
    """Every `INT8_RECIPES` entry on every shipped LruNet preset; writes int8_default/."""
    import tempfile

    import keras
    import numpy as np
    import tensorflow as tf

    from keras_reuse import applications
    from keras_reuse.applications.lrunet.presets import PRESETS
    from keras_reuse.export import to_tflite

    names = FLAGS.int8_presets or list(PRESETS)
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise app.UsageError(
            f"--int8_presets={','.join(unknown)}: not a preset; presets: {', '.join(PRESETS)}"
        )
    calls = FLAGS.latency_calls or 200
    started, load_before = time.perf_counter(), os.getloadavg()
    rows: list[dict] = []
    for name in names:
        preset = PRESETS[name]
        # CIFAR-100 is not stored here; its presets see CIFAR-10's images.
        dataset = "fashion_mnist" if preset.dataset == "fashion_mnist" else "cifar10_jpeg"
        calibration, _ = _images_and_labels(
            dataset, f"train[:{FLAGS.int8_calibration}]", FLAGS.data_dir
        )
        test, labels = _images_and_labels(dataset, f"test[:{FLAGS.int8_test}]", FLAGS.data_dir)
        model = applications.create(name, classifier_activation=None)
        params = measure.trainable_params(model)
        keras_fn = tf.function(lambda x, model=model: model(x, training=False))
        expected = np.concatenate(
            [np.asarray(keras_fn(test[i : i + 256])) for i in range(0, len(test), 256)]
        )
        with tempfile.TemporaryDirectory() as directory:
            files = {}
            for recipe, arguments in INT8_RECIPES.items():
                path = os.path.join(directory, f"{len(files)}.tflite")
                quantized = arguments["quantization"] is not None
                start = time.perf_counter()
                report = to_tflite(
                    model,
                    path,
                    representative_data=calibration if quantized else None,
                    verify=False,
                    **arguments,
                )
                resolved = {
                    "quantizer": report.quantizer,
                    "int8_layout": report.int8_layout,
                    "float_layers": report.float_layers,
                }
                files[recipe] = (path, time.perf_counter() - start, resolved)
                print(f"{name}: {recipe} converted", flush=True)
            latencies = measure.tflite_files_latency_ms([f[0] for f in files.values()], calls)
            for (recipe, (path, seconds, resolved)), ms in zip(
                files.items(), latencies, strict=True
            ):
                actual = _litert_outputs(path, test)
                agree = np.argmax(actual, -1) == np.argmax(expected, -1)
                rows.append(
                    {
                        "preset": name,
                        "recipe": recipe,
                        "arguments": INT8_RECIPES[recipe],
                        "resolved": resolved if INT8_RECIPES[recipe]["quantization"] else None,
                        "trainable_params": params,
                        "tflite_bytes": os.path.getsize(path),
                        "bytes_per_param": os.path.getsize(path) / params,
                        "test_dataset": dataset,
                        "test_images": len(test),
                        "top1_agreement": float(np.mean(agree)),
                        "agreement_se": float(np.std(agree) / np.sqrt(len(agree))),
                        "keras_accuracy": (
                            float(np.mean(np.argmax(expected, -1) == labels))
                            if dataset == preset.eval_dataset or preset.dataset == "cifar10"
                            else None
                        ),
                        "tflite_accuracy": (
                            float(np.mean(np.argmax(actual, -1) == labels))
                            if dataset == preset.eval_dataset or preset.dataset == "cifar10"
                            else None
                        ),
                        "litert_batch1_ms": ms,
                        "export_seconds": seconds,
                    }
                )
        keras.backend.clear_session()
        payload = {
            "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "environment": environment(None) | _litert_versions(),
            "settings": {
                "calibration_images": FLAGS.int8_calibration,
                "test_images": FLAGS.int8_test,
                "latency_calls": calls,
                "latency_rounds": 5,
                "threads": os.cpu_count(),
            },
            "load_before": list(load_before),
            "load_after": list(os.getloadavg()),
            "seconds": time.perf_counter() - started,
            "rows": rows,
        }
        measure.write_results(
            os.path.join(FLAGS.output_dir, "int8_default"),
            "int8_recipes",
            payload,
            _int8_table(payload),
        )


def _litert_versions() -> dict:
    from importlib import metadata

    versions = {}
    for package in ("ai-edge-litert", "ai-edge-quantizer"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _litert_outputs(path: str, images: Any) -> Any:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs, batch = [], None
    for start in range(0, len(images), 256):
        chunk = images[start : start + 256]
        if len(chunk) != batch:
            batch = len(chunk)
            interpreter.resize_tensor_input(inp["index"], chunk.shape)
            interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], chunk)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"]).copy())
    return np.concatenate(outputs)


def _int8_table(payload: dict) -> str:
    env, settings = payload["environment"], payload["settings"]
    lines = [
        f"Measured with `{payload['command']}` on {env['cpu']} ({env['cpu_count']} cores, "
        f"shared with other jobs: load {payload['load_before'][0]:.1f} before, "
        f"{payload['load_after'][0]:.1f} after), {payload['date']}; Python {env['python']}, "
        f"TensorFlow {env['tensorflow']}, Keras {env['keras']}, ai-edge-litert "
        f"{env['ai-edge-litert']}, ai-edge-quantizer {env['ai-edge-quantizer']}. Calibrated on "
        f"the first {settings['calibration_images']} training images; top-1 agreement with "
        "Keras on held-out test images (± its standard error); LiteRT batch-1 latency: "
        f"median of {settings['latency_calls']} invokes in {settings['latency_rounds']} rounds "
        f"interleaved over a preset's files, {settings['threads']} threads "
        "(indicative: measured under load).",
        "",
        "| preset | recipe | bytes | bytes/param | top-1 agreement | accuracy (Keras) | ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in payload["rows"]:
        accuracy = (
            "n/a"
            if r["tflite_accuracy"] is None
            else f"{r['tflite_accuracy']:.2%} ({r['keras_accuracy']:.2%})"
        )
        lines.append(
            f"| {r['preset']} | {r['recipe']} | {r['tflite_bytes']:,} "
            f"| {r['bytes_per_param']:.2f} "
            f"| {r['top1_agreement']:.2%} ± {r['agreement_se']:.2%} of {r['test_images']:,} "
            f"| {accuracy} | {r['litert_batch1_ms']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    app.run(main)
