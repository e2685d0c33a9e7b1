"""Where a fresh model's first training step goes: build, trace, optimisation, first run.

    python -m benchmarks.first_step --models=lrunet14,lrunet14_loop

`benchmarks.run` reports a fresh model's time to the end of its first `fit`
step; this breaks it down, for each model (`benchmarks.models` names) in one
process that has first trained `--warmup_model` (a process's one-off start-up
is not the model's):

* build: constructing the Keras model;
* trace: Python tracing Keras's own `model.train_step` (forward, loss,
  gradients, optimizer update) into a graph, and that graph's op count, by
  part and by most frequent type (where the trace time goes: it grows with
  the ops);
* first call: the traced step's first run, which adds TensorFlow's graph
  optimisation (Grappler) and kernel set-up to one step;
* steady: the median of `--steps` further calls;
* a second fresh model's first `fit` step, measured as `benchmarks.run` does,
  as a check that the parts add up.

Writes `first_step.json` and `first_step.md` (atomically) to `--output_dir`.
"""

from __future__ import annotations

import collections
import time

from absl import app, flags

from benchmarks import measure, models

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["lrunet14", "lrunet14_loop"], "benchmarks.models names.")
flags.DEFINE_string("warmup_model", "lrunet1", "Trained first, to warm the process up.")
flags.DEFINE_integer("batch_size", 128, "Images per step.")
flags.DEFINE_integer("steps", 3, "Steady calls after the first; their median is reported.")
flags.DEFINE_integer("top_ops", 6, "How many op types to list per model.")
_PARTS = ("forward", "gradient", "optimizer")

flags.DEFINE_string("output_dir", "benchmarks/results", "Where first_step.json/.md go.")


def profile(name: str, batch_size: int, steps: int, top_ops: int) -> dict:
    """Times one fresh model's build, trace, first and steady training steps.

    Args:
        name: A `benchmarks.models` name.
        batch_size: Images per step.
        steps: Steady calls timed after the first call.
        top_ops: Number of most frequent op types to return.

    Returns:
        Seconds (`build_s`, `trace_s`, `first_call_s`, `steady_s`,
        `fit_first_step_s`), `graph_ops` and its `ops_by_part`, `top_ops`
        as `[type, count]` pairs, and `first_step_in_steps` (build
        excluded, as in `benchmarks.run`).
    """
    import tensorflow as tf

    start = time.perf_counter()
    model = models.keras_model(name)
    build_s = time.perf_counter() - start
    measure.compile_for_training(model)
    images, labels = measure.synthetic_batch(batch_size, tuple(model.input_shape[1:]))
    data = (tf.constant(images), tf.constant(labels))
    step = tf.function(model.train_step, autograph=False)
    start = time.perf_counter()
    concrete = step.get_concrete_function(data)
    trace_s = time.perf_counter() - start
    operations = concrete.graph.get_operations()
    counts = collections.Counter(op.type for op in operations)
    parts = ops_by_part(operations, model.optimizer.name)
    start = time.perf_counter()
    concrete(data)
    first_call_s = time.perf_counter() - start
    steady = []
    for _ in range(steps):
        start = time.perf_counter()
        concrete(data)
        steady.append(time.perf_counter() - start)
    steady_s = measure.median(steady)
    fit_first = measure.keras_first_step(lambda: models.keras_model(name), batch_size)
    return {
        "model": name,
        "label": models.label(name),
        "build_s": build_s,
        "trace_s": trace_s,
        "first_call_s": first_call_s,
        "steady_s": steady_s,
        "fit_first_step_s": fit_first["first_step_s"],
        "first_step_in_steps": fit_first["first_step_s"] / steady_s,
        "graph_ops": len(operations),
        "ops_by_part": parts,
        "top_ops": [[kind, count] for kind, count in counts.most_common(top_ops)],
    }


def ops_by_part(operations, optimizer_name: str) -> dict[str, int]:
    """Op counts of a traced train step by the part that made them, from their name scopes.

    TensorFlow names the ops of the tape's gradient `gradient_tape/...` and
    Keras the optimizer's update `{optimizer name}/...`; the rest are the
    forward pass, the loss and the metrics.

    Returns:
        `{"forward": n, "gradient": n, "optimizer": n}`.
    """
    parts = dict.fromkeys(_PARTS, 0)
    for op in operations:
        if op.name.startswith("gradient_tape/"):
            parts["gradient"] += 1
        elif op.name.startswith(f"{optimizer_name}/"):
            parts["optimizer"] += 1
        else:
            parts["forward"] += 1
    return parts


def table(results: list[dict], command: str) -> str:
    """The Markdown report of `profile` results."""
    lines = [
        f"Machine: {measure.machine()}. Batch {FLAGS.batch_size}; `{command}`.",
        "",
        "| model | build s | trace s | graph ops (forward / gradient / optimizer) "
        "| first call s | steady step s | `fit` first step s (steady steps) "
        "| most frequent ops |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ops = ", ".join(f"{kind} {count}" for kind, count in r["top_ops"])
        parts = " / ".join(f"{r['ops_by_part'][part]:,}" for part in _PARTS)
        lines.append(
            f"| {r['label']} | {r['build_s']:.1f} | {r['trace_s']:.1f} "
            f"| {r['graph_ops']:,} ({parts}) "
            f"| {r['first_call_s']:.1f} | {r['steady_s']:.2f} "
            f"| {r['fit_first_step_s']:.1f} ({r['first_step_in_steps']:.1f}) | {ops} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    unknown = [name for name in FLAGS.models if name not in models.MODELS]
    if unknown or FLAGS.warmup_model not in models.MODELS:
        raise app.UsageError(
            f"--models and --warmup_model take {sorted(models.MODELS)}; "
            f"received --models={','.join(FLAGS.models)} --warmup_model={FLAGS.warmup_model}"
        )
    if FLAGS.batch_size < 1 or FLAGS.steps < 1:
        raise app.UsageError(
            f"--batch_size and --steps must be positive; received "
            f"--batch_size={FLAGS.batch_size} --steps={FLAGS.steps}"
        )
    measure.keras_first_step(lambda: models.keras_model(FLAGS.warmup_model), FLAGS.batch_size)
    results = []
    for name in FLAGS.models:
        print(f"profiling {name}", flush=True)
        results.append(profile(name, FLAGS.batch_size, FLAGS.steps, FLAGS.top_ops))
    command = "python -m benchmarks.first_step --models=" + ",".join(FLAGS.models)
    payload = {"machine": measure.machine(), "batch_size": FLAGS.batch_size, "results": results}
    measure.write_results(FLAGS.output_dir, "first_step", payload, table(results, command))


if __name__ == "__main__":
    app.run(main)
