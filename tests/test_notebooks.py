"""Every notebook in notebooks/ runs top to bottom (nbclient) with small sizes.

The notebooks are stored with the outputs of a real run at their own
parameters (`notebooks/execute.py`), so a reader sees results without
running them; CI runs them again at small sizes.
"""

import importlib.util
import os

import nbformat
import pytest
from locations import ROOT as ROOT_PATH
from nbclient import NotebookClient

ROOT = str(ROOT_PATH)
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
PRETRAINED = os.path.join(os.path.dirname(ROOT), "shared", "pretrained", "lrunet-pytorch")

# Small sizes for each notebook, injected after its "parameters" cell the way
# papermill does. Real data from TFDS_DATA_DIR (set by .ci/run).
SMALL = {
    "01_quickstart.ipynb": dict(
        LAYER_REUSE=2, EPOCHS=1, TRAIN_EXAMPLES=256, TEST_EXAMPLES=64, BATCH_SIZE=64
    ),
    "02_layer_reuse_study.ipynb": dict(
        PARAM_REUSE=[1, 2],
        STUDY_REUSE=[1, 2],
        EPOCHS=1,
        STEPS_PER_EPOCH=2,
        TRAIN_EXAMPLES=64,
        TEST_EXAMPLES=64,
        BATCH_SIZE=32,
    ),
    # N >= 2, so that the notebook's sharing check (file smaller than one
    # kernel per call) runs.
    "03_tflite_export.ipynb": dict(
        LAYER_REUSE=2,
        EPOCHS=1,
        TRAIN_EXAMPLES=128,
        TEST_EXAMPLES=64,
        CALIBRATION_EXAMPLES=32,
        BATCH_SIZE=64,
        # A network trained on 128 images decides by slim margins, which
        # 8-bit activations flip: the bar here checks the path, not the recipe.
        MIN_AGREEMENT=0.5,
    ),
    "04_sharesnet.ipynb": dict(
        DATASET="cifar10_jpeg",
        COMPARE=["sharesnet18"],
        DEPTH=22,  # n = 3 blocks a stage: blocks 2 and 3 share
        WIDTH=1,
        EPOCHS=1,
        TRAIN_EXAMPLES=128,
        TEST_EXAMPLES=64,
        BATCH_SIZE=64,
    ),
    "05_pretrained_lrunet.ipynb": dict(
        CHECKPOINT_DIR=PRETRAINED, TEST_EXAMPLES=256, FINETUNE_EXAMPLES=256, FINETUNE_EPOCHS=1
    ),
}
# Output that only the last cells of each notebook produce.
RESULT = {
    "01_quickstart.ipynb": "reloaded model gives the same logits",
    "02_layer_reuse_study.ipynb": "CSV: ",
    "03_tflite_export.ipynb": "4 bytes x unrolled parameters: ",
    "04_sharesnet.ipynb": " ShaResNet (shared) | ",
    "05_pretrained_lrunet.ipynb": "new head on the frozen CIFAR-10 backbone: ",
}
NOTEBOOKS = sorted(name for name in os.listdir(NOTEBOOK_DIR) if name.endswith(".ipynb"))


def read(name):
    return nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)


def test_every_notebook_has_small_sizes_for_ci():
    assert NOTEBOOKS == sorted(SMALL) == sorted(RESULT)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_colab_ready_and_stores_a_real_run(name):
    nb = read(name)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    # Stored outputs of one run, every cell once and in order, to its result,
    # with a note saying where, when and with which versions.
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    stored = "".join(
        output.get("text", "") + output.get("data", {}).get("text/markdown", "")
        for cell in code
        for output in cell.outputs
    )
    assert RESULT[name] in stored
    assert not any(output.output_type == "error" for cell in code for output in cell.outputs)
    notes = [c for c in nb.cells if "stored-outputs" in c.metadata.get("tags", [])]
    assert len(notes) == 1 and "*Stored outputs:*" in notes[0].source
    assert "Runtime:" in nb.cells[0].source
    # First code cell: install from the repository in Colab only.
    assert 'if "google.colab" in sys.modules:' in code[0].source
    assert "pip" in code[0].source and "git+https://github.com/" in code[0].source
    # Exactly one parameters cell, holding every name the test overrides.
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[1]
    for parameter in SMALL[name]:
        assert f"\n{parameter} = " in f"\n{tagged[0].source}", parameter


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, tmp_path):
    nb = read(name)
    index = next(
        i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])
    )
    injected = nbformat.v4.new_code_cell(
        "\n".join(f"{key} = {value!r}" for key, value in SMALL[name].items())
    )
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    # Raises CellExecutionError, with the failing cell and its traceback.
    client.execute()
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    # Every code cell ran, once, in order.
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    # And it got to its result: output that only its last cells produce.
    printed = "".join(
        output.get("text", "") + output.get("data", {}).get("text/markdown", "")
        for cell in code
        for output in cell.outputs
    )
    assert RESULT[name] in printed, printed[-2000:]


def test_stored_outputs_keep_what_a_reader_should_see():
    # notebooks/execute.py's tidying: native log lines (both lines of
    # TensorFlow's CPU notice) go, a redrawn progress bar keeps its last state.
    spec = importlib.util.spec_from_file_location(
        "execute", os.path.join(NOTEBOOK_DIR, "execute.py")
    )
    execute = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(execute)
    cell = nbformat.v4.new_code_cell("fit()")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text=text)
        for text in (
            "WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR\nI0000 00:00:1796610318.917379   25103 cpu_feature_guard.cc:227] This "
            "TensorFlow binary is optimized to use available CPU instructions.\n",
            "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
            "TensorFlow with the appropriate compiler flags.\n",
            "epoch 1/2\r50%\r100%\nwarning: kept\n",
        )
    ]
    nb = nbformat.v4.new_notebook(cells=[cell])
    execute.tidy_outputs(nb)
    assert [output.text for output in nb.cells[0].outputs] == ["100%\nwarning: kept\n"]
