"""TensorFlow's oneDNN code paths, tested where TensorFlow leaves oneDNN off.

`keras_reuse.layers` takes other code paths where TensorFlow runs its CPU
kernels through oneDNN (the depthwise convolution's multiplier-1 form, the
grouped 1x1 convolution trained natively). TensorFlow reads
`TF_ENABLE_ONEDNN_OPTS` once, at start-up; importing `keras_reuse` turns
oneDNN on where TensorFlow would leave it off (x86 CPUs without AVX-512
VNNI, bfloat16 or AMX), and the test suite turns it off, so a test process
never takes those paths. This file runs the layer tests again in a child pytest with
`TF_ENABLE_ONEDNN_OPTS=1`.
"""

import os
import platform
import subprocess
import sys

from locations import ROOT as ROOT_PATH

ROOT = ROOT_PATH

# The tests of the layers' TensorFlow paths and of the looped stage built on
# them (without its other-backend runs).
_FILES = (
    "tests/layers/test_layers.py",
    "tests/layers/test_perf_layers.py",
    "tests/applications/test_lean_iteration.py",
    "tests/applications/test_reuse_loop.py",
    # With oneDNN on, TensorFlow's CPU runs channels-first models.
    "tests/applications/test_data_format.py",
)


def test_the_layer_tests_pass_with_onednn_on():
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1", KERAS_BACKEND="tensorflow")
    if platform.machine().lower() in ("x86_64", "amd64"):
        # Read by tests/layers/test_perf_layers.py: there, TensorFlow must run oneDNN
        # (elsewhere oneDNN is TensorFlow's own per-CPU choice).
        env["KERAS_REUSE_EXPECT_ONEDNN"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider"]
        + ["-k", "not another_backend", *_FILES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1], done.stdout[-1000:]
