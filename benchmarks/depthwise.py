"""LruNet's depthwise convolution on TensorFlow's CPU: Keras's op against ours.

    python -m benchmarks.depthwise

TensorFlow on x86 runs its CPU convolutions through oneDNN, whose kernels
for a depth multiplier of 2 (every LruNet depthwise layer) are slow.
`keras_reuse.layers.depthwise_conv` computes the same convolution as a
multiplier-1 convolution of the channel-repeated input. This measures, in
one run and interleaved: the forward pass with both gradients at each
LruNet-14 stage's shape (CIFAR input, `--batch_size`), and whole LruNet-14
training steps (`model.fit`, the steady step) built with Keras's
`DepthwiseConv2D` and with ours. Both forms are checked equal before they
are timed. With `--memory` (the default) it also trains each LruNet-14, and
PyTorch's for reference, in a fresh process and reports the peak resident
memory (`benchmarks.measure.peak_memory`, as `benchmarks.run` does).
Writes `depthwise.json` and `depthwise.md` (atomically) to `--output_dir`.
"""

from __future__ import annotations

import os
import time

import numpy as np
from absl import app, flags

from benchmarks import measure

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 128, "Images per step.")
flags.DEFINE_integer("repeats", 3, "Interleaved rounds; medians are reported.")
flags.DEFINE_integer("calls", 20, "Op calls per round at each stage shape.")
flags.DEFINE_integer("steps", 4, "Training steps per round (after one opening step).")
flags.DEFINE_bool("memory", True, "Also measure peak RSS of training, in fresh processes.")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where depthwise.json/.md go.")

# The LruNet-14 trained with each layer (benchmarks.models names).
TRAINED = {"keras": "lrunet14_keras_depthwise", "ours": "lrunet14"}
# LruNet at a 32x32 input: each stage's (side, input channels); multiplier 2.
_STAGES = {"stage1": (16, 64), "stage2": (8, 128), "stage3": (4, 256), "stage4": (4, 512)}


def _op_step(x, kernel, upstream, fast: bool):
    """A traced forward pass and both gradients of one depthwise convolution."""
    import tensorflow as tf

    from keras_reuse.layers import depthwise_conv

    @tf.function(autograph=False)
    def step():
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = depthwise_conv(x, kernel, fast=fast)
            loss = tf.reduce_sum(y * upstream)
        dx, dk = tape.gradient(loss, [x, kernel])
        return y, dx, dk

    return step


def _seconds(step, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        outputs = step()
    [o.numpy() for o in outputs]  # wait for the last call's results
    return (time.perf_counter() - start) / calls


def op_rows(batch: int, calls: int, repeats: int) -> list[dict]:
    """Milliseconds per forward + gradients at each stage shape, both forms."""
    import tensorflow as tf

    rows = []
    rng = np.random.default_rng(0)
    for stage, (side, channels) in _STAGES.items():
        x = tf.constant(rng.standard_normal((batch, side, side, channels), np.float32))
        kernel = tf.constant(rng.standard_normal((3, 3, channels, 2), np.float32) * 0.1)
        upstream = tf.constant(rng.standard_normal((batch, side, side, 2 * channels), np.float32))
        steps = {
            name: _op_step(x, kernel, upstream, fast)
            for name, fast in (("keras", False), ("ours", True))
        }
        reference, ours = steps["keras"](), steps["ours"]()
        for a, b in zip(reference, ours, strict=True):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-3)
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(repeats):
            for name, step in steps.items():
                times[name].append(_seconds(step, calls) * 1e3)
        row = {"stage": stage, "shape": [batch, side, side, channels]}
        row.update({f"{name}_ms": measure.median(t) for name, t in times.items()})
        rows.append(row)
    return rows


def training_rates(batch: int, steps: int, repeats: int) -> dict[str, float]:
    """Steady LruNet-14 training images/s with Keras's and our depthwise layer."""
    import keras

    from benchmarks import models

    trainers = {}
    for name, model_name in TRAINED.items():
        keras.utils.set_random_seed(0)
        trainers[name] = measure.KerasTrainer(models.keras_model(model_name), batch, warmup=2)
    rates: dict[str, list[float]] = {name: [] for name in TRAINED}
    for _ in range(repeats):
        for name, trainer in trainers.items():
            rates[name].append(trainer.run(steps)["steady"])
    return {name: measure.median(r) for name, r in rates.items()}


def peak_memory(batch: int, steps: int) -> dict[str, dict]:
    """Peak RSS of LruNet-14 training with each layer and in PyTorch, each in a fresh process."""
    specs = {name: {"kind": "keras", "model": m} for name, m in TRAINED.items()}
    specs["torch"] = {"kind": "torch", "model": TRAINED["ours"]}
    return {
        name: measure.peak_memory({**spec, "batch_size": batch, "steps": steps})
        for name, spec in specs.items()
    }


def _memory_cell(figures: dict, key: str) -> str:
    return f"{figures[key]:,.0f}" if key in figures else figures.get("error", "n/a")


def main(argv: list[str]) -> None:
    del argv
    for name in ("batch_size", "repeats", "calls", "steps"):
        if FLAGS[name].value < 1:
            raise app.UsageError(f"--{name}={FLAGS[name].value}: must be an integer >= 1")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    from keras_reuse.layers import _onednn_cpu

    onednn = _onednn_cpu()
    rows = op_rows(FLAGS.batch_size, FLAGS.calls, FLAGS.repeats)
    rates = training_rates(FLAGS.batch_size, FLAGS.steps, FLAGS.repeats)
    memory = peak_memory(FLAGS.batch_size, FLAGS.steps) if FLAGS.memory else {}
    machine = measure.machine()
    flags_given = [
        f"--{n}={FLAGS[n].value}"
        for n in ("batch_size", "repeats", "calls", "steps", "memory")
        if FLAGS[n].present
    ]
    command = " ".join(["python -m benchmarks.depthwise", *flags_given])
    lines = [
        f"Measured with `{command}` on {machine}, oneDNN {'on' if onednn else 'off'}; "
        f"medians of {FLAGS.repeats} interleaved rounds.",
        "",
        "| depthwise 3x3, multiplier 2, forward + both gradients | Keras ms | ours ms | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        shape = "x".join(str(d) for d in r["shape"])
        lines.append(
            f"| {r['stage']} ({shape}) | {r['keras_ms']:.2f} | {r['ours_ms']:.2f} | "
            f"{r['keras_ms'] / r['ours_ms']:.2f}x |"
        )
    lines += [
        "",
        f"| LruNet-14 training, batch {FLAGS.batch_size} | images/s |",
        "|---|---:|",
        f"| Keras's DepthwiseConv2D | {rates['keras']:.1f} |",
        f"| keras_reuse.layers.DepthwiseConv2D | {rates['ours']:.1f} |",
        f"| speed-up | {rates['ours'] / rates['keras']:.2f}x |",
    ]
    if memory:
        labels = {
            "keras": "Keras's DepthwiseConv2D",
            "ours": "keras_reuse.layers.DepthwiseConv2D",
            "torch": "PyTorch (reference)",
        }
        lines += [
            "",
            f"| LruNet-14 training, fresh process, {FLAGS.steps + 1} steps "
            "| RSS before training MB | peak RSS MB |",
            "|---|---:|---:|",
        ]
        for name, figures in memory.items():
            lines.append(
                f"| {labels[name]} | {_memory_cell(figures, 'rss_before_mb')} "
                f"| {_memory_cell(figures, 'peak_rss_mb')} |"
            )
    table = "\n".join(lines) + "\n"
    payload = {"command": command, "machine": machine, "onednn": onednn, "ops": rows}
    payload["training_images_per_s"] = rates
    payload["peak_memory"] = memory
    measure.write_results(FLAGS.output_dir, "depthwise", payload, table)


if __name__ == "__main__":
    app.run(main)
