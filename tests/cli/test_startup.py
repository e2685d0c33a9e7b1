"""Start-up: the package sets TensorFlow's defaults at import; one program on the command line."""

import importlib.metadata
import json
import os
import platform
import subprocess
import sys

from locations import ROOT as ROOT_PATH

from keras_reuse import startup

ROOT = ROOT_PATH
_VARIABLES = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
X86_64 = platform.machine().lower() in ("x86_64", "amd64")


def _clean_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _VARIABLES}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512_VNNI = AVX2 | {"avx512f", "avx512_vnni"}


def test_defaults_turn_onednn_on_where_tensorflow_leaves_it_off():
    assert startup.start_up_defaults("x86_64", AVX2) == {
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_ENABLE_ONEDNN_OPTS": "1",
    }
    assert startup.start_up_defaults("AMD64", AVX2)["TF_ENABLE_ONEDNN_OPTS"] == "1"
    # TensorFlow's own default there: the variable is left unset.
    for flag in startup.ONEDNN_BY_DEFAULT:
        assert "TF_ENABLE_ONEDNN_OPTS" not in startup.start_up_defaults("x86_64", AVX2 | {flag})
    assert startup.start_up_defaults("aarch64", AVX2) == {"TF_CPP_MIN_LOG_LEVEL": "2"}


def test_a_variable_the_user_set_is_kept():
    environ = {"TF_ENABLE_ONEDNN_OPTS": "0", "HOME": "/home/user"}
    added = startup.set_start_up_environment(environ, machine="x86_64", flags=AVX2)
    assert added == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    assert environ == {
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "HOME": "/home/user",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def test_the_console_script_and_python_m_are_one_program():
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="keras-reuse")
    assert script.value == "keras_reuse.cli:run"
    env = _clean_environment()
    module, command = (
        subprocess.run(
            [sys.executable, *args, "--help"], env=env, capture_output=True, text=True, timeout=120
        )
        for args in (
            ["-m", "keras_reuse"],
            ["-c", "import sys; from keras_reuse.cli import run; run()"],
        )
    )
    assert module.returncode == command.returncode == 0, module.stderr + command.stderr
    assert module.stdout == command.stdout
    assert module.stdout.startswith("usage: keras-reuse SUBCOMMAND")


# Prints, as JSON: what the import started, the variables after it, then
# TensorFlow's oneDNN state and the warnings of two model builds.
_PROBE = """
import io, json, logging, os, sys
FIRST = sys.argv[1]
if FIRST == "tensorflow":
    import tensorflow
    if sys.argv[2] != "as_is":
        # TensorFlow's own default: off on x86-64 CPUs without AVX-512 VNNI,
        # bfloat16 or AMX, on with them; either, whatever this CPU is.
        from tensorflow.python.util import _pywrap_util_port
        _pywrap_util_port.IsMklEnabled = lambda: sys.argv[2] == "default_on"
import keras_reuse
started = {m: m in sys.modules for m in ("keras", "tensorflow")}
variables = {v: os.environ.get(v) for v in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
import tensorflow
from tensorflow.python.util import _pywrap_util_port
log = io.StringIO()
logging.getLogger("keras_reuse").addHandler(logging.StreamHandler(log))
from keras_reuse.applications import LruNet
LruNet(layer_reuse=1)
LruNet(layer_reuse=1)
print(json.dumps({
    "started": started,
    "variables": variables,
    "onednn": bool(_pywrap_util_port.IsMklEnabled()),
    "warnings": log.getvalue().count("TF_ENABLE_ONEDNN_OPTS=1"),
}))
"""


def _probe(first: str, onednn_default: str = "as_is", **extra: str) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, first, onednn_default],
        env=_clean_environment(**extra),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_importing_the_package_first_starts_tensorflow_quietly_with_onednn():
    result, stderr = _probe("keras_reuse")
    # The import itself starts neither Keras nor TensorFlow.
    assert result["started"] == {"keras": False, "tensorflow": False}
    assert result["variables"]["TF_CPP_MIN_LOG_LEVEL"] == "2"
    # TensorFlow's own INFO line at start-up (XLA's, written through absl
    # before its log is set up, ignore TF_CPP_MIN_LOG_LEVEL).
    assert "cpu_feature_guard" not in stderr, stderr
    if X86_64:  # elsewhere oneDNN is TensorFlow's own choice, left alone
        needed = "TF_ENABLE_ONEDNN_OPTS" in startup.start_up_defaults()
        assert result["variables"]["TF_ENABLE_ONEDNN_OPTS"] == ("1" if needed else None)
        assert result["onednn"] is True
    assert result["warnings"] == 0


def test_tensorflow_started_first_with_onednn_off_warns_once():
    result, _ = _probe("tensorflow", "default_off")
    assert result["variables"]["TF_ENABLE_ONEDNN_OPTS"] is None  # too late to set
    assert result["onednn"] is False
    # One warning for two models, on x86-64 only (elsewhere oneDNN is
    # TensorFlow's own per-CPU choice).
    assert result["warnings"] == (1 if X86_64 else 0)


def test_tensorflow_started_first_with_onednn_on_says_nothing():
    result, _ = _probe("tensorflow", "default_on")
    assert result["onednn"] is True and result["warnings"] == 0


def test_onednn_off_by_the_user_is_kept_without_a_warning():
    result, _ = _probe("keras_reuse", TF_ENABLE_ONEDNN_OPTS="0")
    assert result["variables"]["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert result["onednn"] is False
    assert result["warnings"] == 0
    assert "TF_ENABLE_ONEDNN_OPTS=1" in startup.onednn_off_message()
