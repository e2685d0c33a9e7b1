"""benchmarks.gpu on a machine without a GPU: one line saying so, exit status 0.

The GPU measurements themselves cannot run here; their table format is
checked on a made-up payload.
"""

import os
import subprocess
import sys

from locations import ROOT as ROOT_PATH

ROOT = str(ROOT_PATH)


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu"],
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "benchmarks.gpu needs a GPU: TensorFlow sees none on this machine, nothing was "
        "measured (the CPU figures are benchmarks.run's)."
    ]


def test_bad_flags_are_usage_errors():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--models=lrunet99"],
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "models=['lrunet99']" in done.stderr


def test_the_table_has_the_benchmark_format():
    from benchmarks import gpu

    payload = {
        "environment": {
            "gpu": "Some GPU",
            "tensorflow": "2.21.0",
            "keras": "3.15.1",
            "jax": None,
            "torch": "2.13.0",
        },
        "batch_size": 128,
        "steps": 20,
        "rows": [
            {
                "model": "lrunet14",
                "implementation": "keras_reuse, TF",
                "precision": "mixed_float16",
                "params": 206282,
                "first_step_s": 12.25,
                "images_per_s": 3456.78,
            },
            {
                "model": "sharesnet164",
                "implementation": "PyTorch",
                "precision": "AMP float16",
                "error": "RuntimeError: out of memory",
            },
        ],
        "published_accuracy": {"accuracy": 93.46, "images": 10000},
    }
    table = gpu.markdown(payload)
    assert "on Some GPU, TensorFlow 2.21.0, Keras 3.15.1, JAX -, PyTorch 2.13.0" in table
    assert "| model | implementation | precision | params | time to first step s |" in table
    assert "| LruNet-14 | keras_reuse, TF | mixed_float16 | 206,282 | 12.2 | 3,456.8 |" in table
    assert "| ShaResNet-164 (shared) | PyTorch | AMP float16 | - | - | error: RuntimeError" in table
    assert "| fashionmnist-lru10-ckpt-09346.t7 | 93.46% | 93.46% |" in table
