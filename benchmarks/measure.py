"""Timing and memory probes for the benchmark suite: Keras, LiteRT and PyTorch.

Every probe returns plain numbers (medians over repeats after warm-up) and
never decides what to measure; `benchmarks.run` does that and interleaves
the implementations so that they share the machine's load.

Run as a module, it is the child process that measures the peak resident
memory of one training run (peak RSS is per process, so each model gets a
fresh one): `python -m benchmarks.measure '{"kind": "keras", ...}'` prints
one JSON line.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

MB = 1024 * 1024
LEARNING_RATE = 0.01
WEIGHT_DECAY = 5e-4


def machine() -> str:
    """A report's machine line: CPU model, core count and Python version."""
    return f"{cpu_model()} ({os.cpu_count()} cores), {platform.python_version()}"


def write_results(output_dir: str, stem: str, payload: dict, table: str) -> None:
    """Prints a benchmark's Markdown table and writes it with its JSON payload.

    Writes `{stem}.json` and `{stem}.md` into `output_dir` (created if
    needed), each atomically.
    """
    from keras_reuse.utils import atomic

    print(table)
    os.makedirs(output_dir, exist_ok=True)
    atomic.write_text(os.path.join(output_dir, f"{stem}.json"), json.dumps(payload, indent=2))
    atomic.write_text(os.path.join(output_dir, f"{stem}.md"), table)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The SIMD features that decide float32/bfloat16 speed on x86."""
    try:
        with open("/proc/cpuinfo") as file:
            words = set(file.read().split())
    except OSError:
        return []
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    return [w for w in wanted if w in words]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# ------------------------------------------------------------------ Keras ---


def compile_for_training(model: Any) -> Any:
    """`keras-reuse train`'s compile (CoupledSGD, cross-entropy on logits).

    The learning rate is 0.01, not the recipe's 0.1, so the repeated random
    batch does not drive the weights to overflow; the PyTorch trainer uses
    the same hyperparameters.
    """
    from keras_reuse.training.optimizers import compile_for_training as compile_recipe

    return compile_recipe(model, learning_rate=LEARNING_RATE, momentum=0.9, l2=WEIGHT_DECAY)


def synthetic_batch(batch_size: int, input_shape: tuple, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    images = rng.random((batch_size, *input_shape), dtype=np.float32)
    labels = rng.integers(0, 10, batch_size).astype(np.int32)
    return images, labels


def synthetic_dataset(batch_size: int, input_shape: tuple) -> Any:
    """One in-memory batch repeated forever, as a `tf.data.Dataset`.

    tf.data's autotuning is off: with it on, destroying the iterator at the
    end of every `fit` call waits for its autotuning thread, 0 to 10 s on
    this dataset (measured: LruNet-14, 4 calls of 3 steps, gaps between
    `on_train_end` and `fit`'s return of 0.0, 1.1, 10.0 and 0.3 s; with
    autotuning off, 0.0 s each), which is the input's cost, not the model's.
    """
    import tensorflow as tf

    images, labels = synthetic_batch(batch_size, input_shape)
    options = tf.data.Options()
    options.autotune.enabled = False
    return tf.data.Dataset.from_tensors((images, labels)).repeat().with_options(options)


class BatchEnds:
    """A Keras callback recording the clock at every train batch end."""

    def __new__(cls, ends: list[float]) -> Any:
        import keras

        class _Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                ends.append(time.perf_counter())

        return _Callback()


class KerasTrainer:
    """Plain `model.fit` on one in-memory batch repeated (the input costs nothing).

    Each `run()` is one `fit` call of `steps + 1` steps, measured two ways:
    between the end of its first and last batches (the steady step, `fit`'s
    per-call set-up not counted), and from the call to its return (what a
    user waits for, the first step and `fit`'s set-up and tear-down included).
    """

    def __init__(self, model: Any, batch_size: int, warmup: int, compiled: bool = False):
        # `compiled=True` keeps a model already compiled by
        # `compile_for_training` (a second compile would trace it again).
        self.model = model if compiled else compile_for_training(model)
        self.batch_size = batch_size
        self.data = synthetic_dataset(batch_size, tuple(model.input_shape[1:]))
        self.ends: list[float] = []
        self.callback = BatchEnds(self.ends)
        self.model.fit(self.data, steps_per_epoch=max(warmup, 1), epochs=1, verbose=0)

    def fit_call(self, steps: int) -> float:
        """Seconds of one `fit` call of `steps` steps, call to return."""
        self.ends.clear()
        start = time.perf_counter()
        self.model.fit(
            self.data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[self.callback]
        )
        return time.perf_counter() - start

    def run(self, steps: int) -> dict[str, float]:
        """Images/s of one `fit` call: `{"steady": ..., "fit_call": ...}`.

        The call has `steps + 1` steps; the steady rate times the last
        `steps` (one extra step opens the clock), the whole-call rate all.
        """
        seconds = self.fit_call(steps + 1)
        return {
            "steady": steps * self.batch_size / (self.ends[-1] - self.ends[0]),
            "fit_call": (steps + 1) * self.batch_size / seconds,
        }

    def per_call_overhead(self, calls: int, steps: int, rounds: int = 1) -> float:
        """Extra time of `calls` fit calls of `steps` steps over one call of all.

        Each round times both and takes their ratio, the two in alternating
        order from round to round; the median ratio is returned. One round's
        ratio moves by several percent with the machine (ResNet-164: +2% and
        +18% in two runs whose fit calls showed no set-up or tear-down time).

        Args:
            calls: Fit calls of the many-calls side.
            steps: Steps per call there (the single call has `calls * steps`).
            rounds: Ratios to take the median of.

        Returns:
            The median of `time(calls x steps) / time(1 x calls*steps) - 1`
            (0 is no per-call overhead).
        """
        ratios = []
        for round_index in range(rounds):
            if round_index % 2:
                one = self.fit_call(calls * steps)
                many = sum(self.fit_call(steps) for _ in range(calls))
            else:
                many = sum(self.fit_call(steps) for _ in range(calls))
                one = self.fit_call(calls * steps)
            ratios.append(many / one - 1.0)
        return median(ratios)


def keras_first_step(build: Callable[[], Any], batch_size: int) -> dict[str, float]:
    """Build time and time to the end of the first `fit` step of a fresh model.

    Args:
        build: Returns a fresh, uncompiled model (its build is timed).
        batch_size: Training batch size.

    Returns:
        `{"build_s": ..., "first_step_s": ...}`; the first step is timed from
        the `fit` call (compile and optimizer build included) to the end of
        its first batch: tracing, graph optimisation and one step.
    """
    start = time.perf_counter()
    model = build()
    built = time.perf_counter()
    compile_for_training(model)
    data = synthetic_dataset(batch_size, tuple(model.input_shape[1:]))
    ends: list[float] = []
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, callbacks=[BatchEnds(ends)])
    return {"build_s": built - start, "first_step_s": ends[0] - built}


def keras_predict_rate(model: Any, batch_size: int, batches: int) -> Callable[[], float]:
    """A probe: images/s of `model.predict` at `batch_size` over `batches` batches."""
    images, _ = synthetic_batch(batch_size * batches, tuple(model.input_shape[1:]), seed=1)
    model.predict(images[:batch_size], batch_size=batch_size, verbose=0)

    def probe() -> float:
        start = time.perf_counter()
        model.predict(images, batch_size=batch_size, verbose=0)
        return len(images) / (time.perf_counter() - start)

    return probe


def keras_latency_ms(model: Any, calls: int, warmup: int = 3) -> float:
    """Median ms of one batch-1 inference through a `tf.function` of the model."""
    import tensorflow as tf

    image, _ = synthetic_batch(1, tuple(model.input_shape[1:]), seed=2)
    image = tf.constant(image)
    forward = tf.function(lambda x: model(x, training=False), autograph=False)
    for _ in range(warmup):
        forward(image).numpy()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        forward(image).numpy()
        times.append(time.perf_counter() - start)
    return 1e3 * median(times)


def litert_latency_ms(model: Any, calls: int, warmup: int = 3) -> dict:
    """Batch-1 latency of the float32 .tflite that `keras_reuse.export.litert` writes.

    Returns:
        `{"ms": median ms per invoke, "size_bytes": file size}`.
    """
    from keras_reuse.export import to_tflite

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.tflite")
        to_tflite(model, path, max_verification_samples=4)
        return {
            "ms": tflite_file_latency_ms(path, calls, warmup),
            "size_bytes": os.path.getsize(path),
        }


def _batch1_interpreter(path: str, xnnpack: bool = True, warmup: int = 3) -> Any:
    """A LiteRT interpreter of `path` resized to batch 1, holding an image, warmed up."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    options = (
        {}
        if xnnpack
        else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    )
    interpreter = Interpreter(model_path=path, num_threads=os.cpu_count(), **options)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [1, *detail["shape"][1:]])
    interpreter.allocate_tensors()
    image, _ = synthetic_batch(1, tuple(int(d) for d in detail["shape"][1:]), seed=2)
    interpreter.set_tensor(detail["index"], image)
    for _ in range(warmup):
        interpreter.invoke()
    return interpreter


def _invoke_times(interpreter: Any, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return times


def tflite_file_latency_ms(path: str, calls: int, warmup: int = 3, xnnpack: bool = True) -> float:
    """Median ms of one batch-1 `invoke` of the .tflite at `path` with LiteRT.

    `xnnpack=False` runs the builtin reference kernels (no default delegate).
    """
    return 1e3 * median(_invoke_times(_batch1_interpreter(path, xnnpack, warmup), calls))


def tflite_files_latency_ms(
    paths: list[str], calls: int, rounds: int = 5, warmup: int = 3
) -> list[float]:
    """Median ms of one batch-1 `invoke` of each .tflite file, timed in interleaved rounds.

    Each round runs `calls // rounds` invokes of every file in turn, so a
    machine that speeds up or slows down during the run moves all files alike.

    Returns:
        Per file, the median over rounds of each round's median.
    """
    interpreters = [_batch1_interpreter(path, warmup=warmup) for path in paths]
    per_round = max(1, calls // rounds)
    medians: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for interpreter, file_medians in zip(interpreters, medians, strict=True):
            file_medians.append(median(_invoke_times(interpreter, per_round)))
    return [1e3 * median(m) for m in medians]


def trainable_params(model: Any) -> int:
    """Trainable parameters (PyTorch's `parameters()` counts the same ones)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def activation_bytes(model: Any, batch_size: int) -> int:
    """Bytes of every layer call's output for one batch: what backprop may keep.

    A layer called N times (layer reuse) counts N outputs, which is what its
    activations need; its weights are not counted.
    """
    total = 0
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for tensor in node.outputs:
                if tensor.shape[0] is None and len(tensor.shape) > 1:
                    size = int(np.prod(tensor.shape[1:]))
                    total += size * batch_size * np.dtype(tensor.dtype).itemsize
    return total


# ---------------------------------------------------------------- PyTorch ---


class TorchTrainer:
    """The PyTorch training step: SGD momentum, cross-entropy, train mode."""

    def __init__(self, net: Any, batch_size: int, input_shape: tuple, warmup: int, bf16: bool):
        import torch

        self.torch = torch
        self.net = net.train()
        self.batch_size = batch_size
        self.bf16 = bf16
        images, labels = synthetic_batch(batch_size, input_shape)
        self.images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.optimizer = torch.optim.SGD(
            net.parameters(), lr=LEARNING_RATE, momentum=0.9, weight_decay=WEIGHT_DECAY
        )
        for _ in range(max(warmup, 1)):
            self._step()

    def _step(self) -> None:
        torch = self.torch
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.net(self.images)
        loss = torch.nn.functional.cross_entropy(logits.float(), self.labels)
        loss.backward()
        self.optimizer.step()

    def run(self, steps: int) -> dict[str, float]:
        """Images/s of `steps + 1` steps (a loop has no per-call set-up to exclude)."""
        start = time.perf_counter()
        for _ in range(steps + 1):
            self._step()
        rate = (steps + 1) * self.batch_size / (time.perf_counter() - start)
        return {"steady": rate, "fit_call": rate}


def torch_first_step(build: Callable[[], Any], batch_size: int, input_shape: tuple) -> dict:
    """Build time and time of the first training step of a fresh PyTorch net."""
    start = time.perf_counter()
    net = build()
    built = time.perf_counter()
    TorchTrainer(net, batch_size, input_shape, warmup=1, bf16=False)
    return {"build_s": built - start, "first_step_s": time.perf_counter() - built}


def torch_predict_rate(net: Any, batch_size: int, batches: int, input_shape: tuple):
    """A probe: images/s of eval-mode, no-grad forward passes at `batch_size`."""
    import torch

    images, _ = synthetic_batch(batch_size, input_shape, seed=1)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    net.eval()
    with torch.no_grad():
        net(x)

    def probe() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(batches):
                net(x)
        return batches * batch_size / (time.perf_counter() - start)

    return probe


def torch_latency_ms(net: Any, input_shape: tuple, calls: int, warmup: int = 3) -> float:
    """Median ms of one eager batch-1 forward pass (eval mode, no grad)."""
    import torch

    image, _ = synthetic_batch(1, input_shape, seed=2)
    x = torch.from_numpy(image.transpose(0, 3, 1, 2).copy())
    net.eval()
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            net(x)
        for _ in range(calls):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    return 1e3 * median(times)


# ----------------------------------------------------------------- Memory ---


def peak_memory(spec: dict, timeout: float = 1800.0) -> dict:
    """Runs one training run in a fresh process and returns its memory figures.

    Args:
        spec: `{"kind": "keras" | "torch", "model": name, "batch_size": int,
            "steps": int}`; see `_memory_child`.
        timeout: Seconds before the child is abandoned.

    Returns:
        The child's JSON: peak RSS, RSS before training (and its anonymous
        and file-backed parts), and (Keras) the activation estimate; or
        `{"error": message}`.
    """
    return json_child(["-m", "benchmarks.measure", json.dumps(spec)], {}, timeout)


def json_child(
    python_args: list[str], env: dict[str, str], timeout: float, unset: tuple[str, ...] = ()
) -> dict:
    """Runs `python ARGS...` from the repository root; returns its last JSON line.

    Args:
        python_args: The interpreter's arguments (`["-m", module, ...]` or
            `["-c", code, ...]`).
        env: Variables added to this process's environment (TensorFlow's
            INFO and WARNING lines are silenced unless given).
        timeout: Seconds before the child is abandoned.
        unset: Variables of this process's environment the child does not get.

    Returns:
        The child's last stdout line that starts with "{", parsed; or
        `{"error": message}` (timeout, non-zero exit, no JSON).
    """
    command = [sys.executable, *python_args]
    inherited = {k: v for k, v in os.environ.items() if k not in unset}
    env = {**inherited, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, cwd=root
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": f"exit code {done.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])


def _rss_mb() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def _rss_parts_mb() -> dict[str, float]:
    """Resident memory now by kind: anonymous (the heap, tensors) and file-backed.

    File-backed pages are the mapped shared libraries' code and data
    (TensorFlow's several hundred MB): resident, counted in RSS, but shared
    and not allocated by the program.
    """
    parts = {}
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(("RssAnon:", "RssFile:")):
                key = "rss_anon_before_mb" if line.startswith("RssAnon") else "rss_file_before_mb"
                parts[key] = int(line.split()[1]) / 1024
    return parts


def _peak_rss_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: after fork + exec the latter still
    # holds the parent's peak.
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _memory_child(spec: dict) -> dict:
    from benchmarks import models

    batch_size, steps = spec["batch_size"], spec["steps"]
    if spec["kind"] == "torch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        net = models.torch_model(spec["model"])
        before, parts = _rss_mb(), _rss_parts_mb()
        trainer = TorchTrainer(net, batch_size, models.INPUT_SHAPE, 0, bf16=False)
        trainer.run(steps)
        return {"rss_before_mb": before, **parts, "peak_rss_mb": _peak_rss_mb()}
    model = models.keras_model(spec["model"])
    activations = activation_bytes(model, batch_size) / MB
    before, parts = _rss_mb(), _rss_parts_mb()
    trainer = KerasTrainer(model, batch_size, warmup=1)
    trainer.run(steps)
    result = {
        "rss_before_mb": before,
        **parts,
        "peak_rss_mb": _peak_rss_mb(),
        "activations_mb": activations,
    }
    if os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") == "true":
        # TensorFlow's CPU allocator counts live tensors only when it is
        # the BFC allocator, chosen by this variable before TensorFlow starts.
        import tensorflow as tf

        peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
        result["live_peak_mb"] = peak / MB
    return result


if __name__ == "__main__":
    print(json.dumps(_memory_child(json.loads(sys.argv[1]))), flush=True)
