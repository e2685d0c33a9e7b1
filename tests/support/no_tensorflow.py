"""A pytest plugin for CI's no-TensorFlow job (`-p no_tensorflow`, tests/support on PYTHONPATH).

The job's virtualenv has Keras, JAX and the package without its default
dependencies. The session refuses to start where TensorFlow is installed
(the job would prove nothing), and a test fails when TensorFlow or TFDS is
in `sys.modules` after it, naming them.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

FORBIDDEN = ("tensorflow", "tensorflow_datasets")


def imported() -> list[str]:
    """The forbidden modules this process has imported."""
    return [name for name in FORBIDDEN if sys.modules.get(name) is not None]


def pytest_configure(config: pytest.Config) -> None:
    installed = [name for name in FORBIDDEN if importlib.util.find_spec(name) is not None]
    if installed:
        raise pytest.UsageError(
            f"the no-TensorFlow job found {', '.join(installed)} installed in {sys.prefix}"
        )


def pytest_collection_finish(session: pytest.Session) -> None:
    if imported():
        raise pytest.UsageError(f"collecting the tests imported {', '.join(imported())}")


@pytest.fixture(autouse=True)
def _no_tensorflow(request: pytest.FixtureRequest):
    yield
    if imported():
        pytest.fail(f"{request.node.nodeid} imported {', '.join(imported())}", pytrace=False)
