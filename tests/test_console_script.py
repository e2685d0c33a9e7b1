"""The `keras-reuse` console script sets TensorFlow's start-up variables before it starts."""

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import keras_reuse_cli

ROOT = Path(__file__).resolve().parents[1]
_VARIABLES = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")


def _clean_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _VARIABLES}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_defaults_turn_onednn_on_for_x86_64_only():
    assert keras_reuse_cli.start_up_defaults("x86_64") == {
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_ENABLE_ONEDNN_OPTS": "1",
    }
    assert keras_reuse_cli.start_up_defaults("AMD64")["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert keras_reuse_cli.start_up_defaults("aarch64") == {"TF_CPP_MIN_LOG_LEVEL": "2"}


def test_a_variable_the_user_set_is_kept():
    environ = {"TF_ENABLE_ONEDNN_OPTS": "0", "HOME": "/home/user"}
    added = keras_reuse_cli.set_start_up_environment(environ, machine="x86_64")
    assert added == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    assert environ == {
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "HOME": "/home/user",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def test_the_installed_console_script_is_the_launcher():
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="keras-reuse")
    assert script.value == "keras_reuse_cli:run"


_PROBE = """
import json, sys
import keras_reuse_cli
keras_reuse_cli.set_start_up_environment()
import keras_reuse  # starts TensorFlow
from tensorflow.python.util import _pywrap_util_port
print(json.dumps(bool(_pywrap_util_port.IsMklEnabled())))
"""


def _onednn(env: dict[str, str]) -> tuple[bool, str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_tensorflow_starts_quietly_with_onednn_unless_the_user_said_otherwise():
    on, stderr = _onednn(_clean_environment())
    if platform.machine().lower() in ("x86_64", "amd64"):
        # Elsewhere oneDNN is TensorFlow's own choice, which we leave alone.
        assert on is True
    # TensorFlow's own INFO line at start-up (XLA's, written through absl
    # before its log is set up, ignore TF_CPP_MIN_LOG_LEVEL).
    assert "cpu_feature_guard" not in stderr, stderr
    off, _ = _onednn(_clean_environment(TF_ENABLE_ONEDNN_OPTS="0"))
    assert off is False
