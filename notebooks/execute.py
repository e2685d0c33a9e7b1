"""Runs the notebooks top to bottom at their own parameters and stores their outputs.

    python notebooks/execute.py                       # every notebook
    python notebooks/execute.py 01_quickstart.ipynb   # one
    python notebooks/execute.py 04_sharesnet.ipynb --set DATASET='"cifar10_jpeg"'

A reader sees a real run's results without running anything. Each
notebook gets a "Stored outputs" cell after its parameters saying where,
when and with which versions the outputs were made, and which parameters
`--set` changed. The notebooks run in a scratch directory beside this one
(so relative paths such as `../../shared` resolve as from here), and the
file is replaced atomically.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
PROVENANCE_TAG = "stored-outputs"
# TensorFlow's and XLA's start-up log lines on stderr (and the second line of
# TensorFlow's CPU-instructions notice): noise to a reader.
NATIVE_LOG = re.compile(
    r"^(WARNING: All log messages before absl|[IWEF]\d{4} [\d:.]+ +\d+ "
    r"|To enable the following instructions: )"
)
# Where `execute` runs a notebook (a temporary directory): not the reader's.
SCRATCH_PATH = re.compile(r"\S*\.notebook-run-[^/\s]+/")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> str:
    # Lazy: the versions of what the notebooks import, read without importing TensorFlow here.
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("keras-reuse", "keras", "tensorflow", "tensorflow-datasets"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def provenance(overrides: dict[str, str]) -> str:
    """The markdown of the "Stored outputs" cell."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    text = (
        f"*Stored outputs:* this notebook's outputs come from a run at the parameters above "
        f"on {when}, on a CPU ({_cpu_name()}, {os.cpu_count()} cores), Python "
        f"{platform.python_version()}, {_versions()}"
    )
    if overrides:
        changed = ", ".join(f"`{name} = {value}`" for name, value in overrides.items())
        text += f"; with {changed} instead"
    return text + " (`python notebooks/execute.py`)."


def tidy_outputs(nb: nbformat.NotebookNode) -> None:
    """What a reader should see of the stored outputs.

    Consecutive stream outputs are merged and a line redrawn with carriage
    returns (a progress bar) keeps its last state; TensorFlow's native log
    lines and the scratch directory's path are removed.
    """
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged: list = []
        for output in cell.outputs:
            previous = merged[-1] if merged else None
            if (
                output.output_type == "stream"
                and previous is not None
                and previous.output_type == "stream"
                and previous.name == output.name
            ):
                previous.text += output.text
            else:
                merged.append(output)
        kept = []
        for output in merged:
            if output.output_type == "stream":
                lines = [line.rsplit("\r", 1)[-1] for line in output.text.split("\n")]
                text = "\n".join(line for line in lines if not NATIVE_LOG.match(line))
                output.text = SCRATCH_PATH.sub("", text)
                if not output.text.strip():
                    continue
            kept.append(output)
        cell.outputs = kept


def execute(path: Path, overrides: dict[str, str], timeout: int) -> None:
    """Runs the notebook at `path` and writes it back with its outputs."""
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if PROVENANCE_TAG not in c.metadata.get("tags", [])]
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    note = nbformat.v4.new_markdown_cell(provenance(overrides))
    note.metadata["tags"] = [PROVENANCE_TAG]
    nb.cells.insert(index + 1, note)
    run = nbformat.from_dict(nb)
    if overrides:
        injected = nbformat.v4.new_code_cell(
            "\n".join(f"{name} = {value}" for name, value in overrides.items())
        )
        run.cells.insert(index + 2, injected)
    with tempfile.TemporaryDirectory(dir=HERE.parent, prefix=".notebook-run-") as scratch:
        NotebookClient(
            run, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": scratch}}
        ).execute()
    if overrides:
        del run.cells[index + 2]
        code = [c for c in run.cells if c.cell_type == "code"]
        for count, cell in enumerate(code, 1):  # as if the injected cell had not run
            cell.execution_count = count
            for output in cell.outputs:
                if "execution_count" in output:
                    output.execution_count = count
    tidy_outputs(run)
    nbformat.validate(run)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as out:
        nbformat.write(run, out)
    shutil.move(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="Notebook file names (default: all).")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="A parameter to change."
    )
    parser.add_argument("--timeout", type=int, default=3600, help="Seconds per cell.")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            parser.error(f"--set takes NAME=VALUE, got {item!r}")
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parser.error(f"--set {name}: {value!r} is not a Python literal")
        overrides[name] = value
    names = args.notebooks or sorted(p.name for p in HERE.glob("*.ipynb"))
    missing = [name for name in names if not (HERE / name).is_file()]
    if missing:
        parser.error(f"no such notebook in {HERE}: {', '.join(missing)}")
    for name in names:
        print(f"running {name} ...", flush=True)
        execute(HERE / name, overrides, args.timeout)
    sys.exit(0)


if __name__ == "__main__":
    main()
