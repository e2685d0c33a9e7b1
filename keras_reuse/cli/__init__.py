"""The `keras-reuse` command: dispatches `keras-reuse SUBCOMMAND [flags]`.

Each subcommand lives in `keras_reuse.cli.<name>` with its own absl
flags and `main(argv)`; only the chosen one is imported, so their flags
never meet. Every usage error, a flag absl cannot parse (`--epochs=abc`,
an unknown flag) as much as a `UsageError` raised by a subcommand, ends the
program with one line, `keras-reuse NAME: error: ...`, and exit code 2.
"""

from __future__ import annotations

import importlib
import sys
import textwrap

_SUBCOMMANDS = {
    "summary": "Build a model and print how it reuses its layers.",
    "data": "Prepare TFDS datasets offline from original files; list prepared ones.",
    "train": "Train a model on a TFDS dataset with model.fit (the papers' recipe).",
    "export": "Export a .keras model to a verified .tflite file (shared kernels stored once).",
    "tune": "Search hyperparameters with keras-tuner; write the best configuration and trials.",
    "study": "Train LruNet at several reuse counts on one budget; write a CSV and plots.",
    "convert": "Convert an LruNet checkpoint of the authors (PyTorch .t7) to a .keras file.",
}


def _usage() -> str:
    lines = ["usage: keras-reuse SUBCOMMAND [--flags]", "", "subcommands:"]
    lines += [f"  {name:<10} {doc}" for name, doc in _SUBCOMMANDS.items()]
    lines += ["", "`keras-reuse SUBCOMMAND --help` lists a subcommand's flags."]
    return "\n".join(lines)


def _flags_help(program: str, doc: str | None, declared: list) -> str:
    """`SUBCOMMAND --help`: the module's docstring, then every flag it declared."""
    lines = [(doc or program).strip(), "", "flags:"]
    for flag in declared:
        text = f"--{flag.name}: {flag.help}"
        if flag.default is not None:
            text += f" (default: {flag.default_as_str})"
        lines.append(textwrap.fill(text, 100, initial_indent="  ", subsequent_indent="    "))
    return "\n".join(lines)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def run(argv: list[str] | None = None) -> None:
    """Runs `keras-reuse SUBCOMMAND [flags]` (`argv` as `sys.argv`).

    The console script and `python -m keras_reuse` both call it; importing
    the package has set TensorFlow's start-up defaults (`keras_reuse.startup`).
    """
    # Lazy: `keras-reuse --help` answers without loading absl's flags.
    from absl import app, flags

    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    name = argv[1]
    if name not in _SUBCOMMANDS:
        print(f"keras-reuse: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        sys.exit(2)
    before = set(flags.FLAGS)
    module = importlib.import_module(f"keras_reuse.cli.{name}")
    program = f"keras-reuse {name}"
    if any(arg in ("-h", "--help", "--helpshort") for arg in argv[2:]):
        # absl's --help lists the flags of the script's own module only, and
        # a subcommand's flags are declared in keras_reuse.cli.
        declared = {id(f): f for n, f in flags.FLAGS._flags().items() if n not in before}
        print(_flags_help(program, module.__doc__, list(declared.values())))
        sys.exit(0)

    def usage_error(error: Exception) -> None:
        # absl would print the whole help before the message (and exit 1 for
        # a flag it cannot parse); one line names what is wrong.
        print(f"{program}: error: {_one_line(error)}", file=sys.stderr)
        sys.exit(2)

    def parse(args: list[str]) -> list[str]:
        try:
            return flags.FLAGS(args)
        except flags.Error as error:
            usage_error(error)

    def main(args: list[str]) -> None:
        try:
            module.main(args)
        except app.UsageError as error:
            usage_error(error)

    app.run(main, argv=[program, *argv[2:]], flags_parser=parse)


if __name__ == "__main__":
    run()
