"""The README and the docs tell the truth: their Python runs, their commands parse, the site builds.

Every ```python block of a page runs, in order, in one fresh process per
page (the blocks of a page build on each other), in a temporary directory.
Every `keras-reuse` command in a ```bash block parses with the flags its
subcommand declares, and the README's training command trains, at small
size. `mkdocs build --strict` fails on a broken link, a missing page or an
API reference to a name that does not exist.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from locations import ROOT
from processes import run

PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
]
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(page: Path, language: str) -> list[tuple[int, str]]:
    """The page's fenced blocks in `language`, each with its first line number."""
    text = page.read_text()
    return [
        (text.count("\n", 0, match.start()) + 2, match.group(2))
        for match in FENCE.finditer(text)
        if match.group(1) == language
    ]


def commands(page: Path) -> list[list[str]]:
    """Every `keras-reuse ...` command of the page's bash blocks, as argv."""
    found = []
    for _, code in blocks(page, "bash"):
        for line in code.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, "#"
            argv: list[str] = []
            for token in [*lexer, ";"]:
                if token not in ("&&", "||", ";", "|", "&"):
                    argv.append(token)
                    continue
                while argv and "=" in argv[0] and not argv[0].startswith("-"):
                    argv = argv[1:]  # leading VAR=value assignments
                if argv[:1] == ["keras-reuse"] and len(argv) > 1:
                    found.append(argv)
                argv = []
    return found


def _relative(page: Path) -> str:
    return str(page.relative_to(ROOT))


PYTHON_PAGES = [page for page in PAGES if blocks(page, "python") and "api" not in page.parts]


def test_pages_with_code_are_found():
    names = {_relative(page) for page in PYTHON_PAGES}
    assert "README.md" in names
    assert {"docs/guides/models.md", "docs/guides/export.md"} <= names


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=_relative)
def test_python_blocks_run(page, tmp_path):
    script = []
    for line, code in blocks(page, "python"):
        script.append(f"# --- {_relative(page)}, line {line}\n{code}")
    (tmp_path / "snippets.py").write_text("\n".join(script))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    done = run(
        [sys.executable, "snippets.py"],
        timeout=600,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"{_relative(page)}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


CLI_COMMANDS = [(page, argv) for page in PAGES for argv in commands(page)]


def test_commands_are_found():
    readme = [argv for page, argv in CLI_COMMANDS if page.name == "README.md"]
    assert ["keras-reuse", "train", "--recipe=quick", "--output_dir=runs/quickstart"] in readme


PARSE = """
import json, sys
from absl import flags
import importlib
commands = json.loads(sys.argv[1])
module = importlib.import_module("keras_reuse.cli." + sys.argv[2])
errors = []
for argv in commands:
    try:
        flags.FLAGS(["keras-reuse"] + argv[2:])
    except flags.Error as error:
        errors.append(" ".join(argv) + ": " + str(error))
    flags.FLAGS.unparse_flags()
print("\\n".join(errors))
sys.exit(1 if errors else 0)
"""


@pytest.mark.parametrize(
    "subcommand", sorted({argv[1] for _, argv in CLI_COMMANDS if not argv[2:3] == ["--help"]})
)
def test_documented_commands_parse(subcommand):
    import json

    argvs = [
        argv
        for _, argv in CLI_COMMANDS
        if argv[1] == subcommand and not {"--help", "-h"} & set(argv)
    ]
    done = run(
        [sys.executable, "-c", PARSE, json.dumps(argvs), subcommand],
        timeout=300,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]


def test_readme_training_command_trains(tmp_path):
    # The README's command, at small size: 256 training and test images.
    argv = ["keras-reuse", "train", "--recipe=quick", "--output_dir=runs/quickstart"]
    small = ["--max_train_examples=256", "--max_eval_examples=256"]
    done = run(
        [sys.executable, "-m", "keras_reuse", *argv[1:], *small],
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs" / "quickstart" / "results.json").is_file()


def test_readme_is_short():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert len(text.split()) <= 2000
    # No project history: issue numbers, sessions, commit hashes.
    history = r"\bissue \d+|#\d{2,}\b|\bsession"
    commit = r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b"
    assert not re.search(history, text, re.I)
    assert not re.search(commit, text)
    # It is also the PyPI description: links and images must be absolute.
    targets = re.findall(r"\]\(([^)]*)\)", text)
    assert targets and all(target.startswith("https://") for target in targets), targets


def test_site_builds_strictly(tmp_path):
    done = run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        timeout=300,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    assert (tmp_path / "api" / "applications" / "index.html").is_file()
