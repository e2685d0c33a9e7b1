"""Unrolled vs looped (`reuse_loop=True`) LruNet: time to first step, steady step, peak RSS.

Every measurement is a fresh child process (first-step time and peak RSS
are per process), and the two layouts alternate for each N so that they
share the machine's load; report their ratios, not absolute times.

    python -m benchmarks.reuse_loop --layer_reuse=1,2,4,8,14
    python -m benchmarks.reuse_loop --layer_reuse=4,14 --jit_compile --steady_steps=1
    python -m benchmarks.reuse_loop --backend=jax --layer_reuse=2,14 --steady_steps=1

The child builds `LruNet(layer_reuse=N, classifier_activation=None)`
(timed: build), compiles it with `keras_reuse.compile_for_training`, then
calls `fit` once on `1 + steady_steps` random CIFAR-shaped batches. First
step = compile + `fit` up to the end of its first batch; steady step = the
median of the following batch-to-batch times. Prints one JSON line per
child; the parent prints them with the load average and the ratios.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("layer_reuse", ["1", "2", "4", "8", "14"], "Values of N.")
flags.DEFINE_integer("batch_size", 128, "Training batch size.")
flags.DEFINE_integer("steady_steps", 3, "Steps after the first one (their median is reported).")
flags.DEFINE_string("backend", "tensorflow", "KERAS_BACKEND of the children.")
flags.DEFINE_bool("jit_compile", False, "compile(jit_compile=True) (TensorFlow; JAX always jits).")
flags.DEFINE_list("variants", ["unrolled", "looped"], "Which layouts, in alternation order.")
flags.DEFINE_integer("timeout", 900, "Seconds per child before it is reported as a timeout.")
flags.DEFINE_string("output", None, "Append the JSON lines to this file.")


def child(spec: dict) -> dict:
    import resource

    import keras
    import numpy as np

    import keras_reuse
    from keras_reuse.applications import LruNet

    start = time.perf_counter()
    model = LruNet(
        layer_reuse=spec["n"], classifier_activation=None, reuse_loop=spec["variant"] == "looped"
    )
    build = time.perf_counter() - start
    steps = 1 + spec["steady_steps"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * spec["batch_size"], 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(steps * spec["batch_size"],))
    ends: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    start = time.perf_counter()
    keras_reuse.compile_for_training(model)
    if spec["jit_compile"]:
        model.jit_compile = True
    model.fit(x, y, batch_size=spec["batch_size"], epochs=1, verbose=0, callbacks=[Clock()])
    deltas = [b - a for a, b in zip(ends[:-1], ends[1:], strict=True)]
    return {
        **spec,
        "build_s": round(build, 2),
        "first_step_s": round(ends[0] - start, 2),
        "steady_step_s": round(float(np.median(deltas)), 3) if deltas else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "backend": keras.backend.backend(),
    }


def run_child(spec: dict) -> dict:
    env = dict(os.environ, KERAS_BACKEND=FLAGS.backend)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.reuse_loop", "--child", json.dumps(spec)],
            env=env,
            capture_output=True,
            text=True,
            timeout=FLAGS.timeout,
        )
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timeout after {FLAGS.timeout} s", "load": load}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {**spec, "error": proc.stderr[-2000:], "load": load}
    result = json.loads(lines[-1])
    result["load"] = round(load, 2)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def main(argv):
    del argv
    results = []
    for n in [int(v) for v in FLAGS.layer_reuse]:
        for variant in FLAGS.variants:
            spec = {
                "n": n,
                "variant": variant,
                "batch_size": FLAGS.batch_size,
                "steady_steps": FLAGS.steady_steps,
                "jit_compile": FLAGS.jit_compile,
            }
            result = run_child(spec)
            results.append(result)
            line = json.dumps({**result, "backend": FLAGS.backend})
            print(line, flush=True)
            if FLAGS.output:
                with open(FLAGS.output, "a") as file:
                    file.write(line + "\n")
    by = {(r["n"], r["variant"]): r for r in results}
    print("\nN  first unrolled/looped  steady unrolled/looped  (s; load)")
    for n in sorted({r["n"] for r in results}):
        u, lo = by.get((n, "unrolled"), {}), by.get((n, "looped"), {})

        def pair(key, u=u, lo=lo):
            a, b = u.get(key), lo.get(key)
            ratio = f"{a / b:.2f}x" if a and b else "-"
            return f"{a}/{b} = {ratio}"

        print(n, pair("first_step_s"), pair("steady_step_s"), u.get("load"), lo.get("load"))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))), flush=True)
    else:
        app.run(main)
