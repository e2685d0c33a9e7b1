"""The GPU check's markdown table, from the payload that gpu.json holds."""

from __future__ import annotations

from typing import Any

from benchmarks import models

PRECISION_LABELS = {
    "amp_bfloat16": "AMP bfloat16",
    "amp_float16": "AMP float16, GradScaler",
}


def _number(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _label(name: str) -> str:
    return models.label(name) if name in models.MODELS else name


def _versions(payload: dict) -> str:
    found: dict[str, str] = {}
    for child in payload["environment"].get("children", {}).values():
        for key, name in (("keras", "Keras"), ("jax", "JAX"), ("torch", "PyTorch")):
            if child.get(key):
                found[name] = child[key]
    return ", ".join(f"{name} {version}" for name, version in found.items()) or "-"


def speed_table(payload: dict) -> list[str]:
    lines = [
        "| model | implementation | precision | params | loss scaling | "
        "time to first step s | train img/s |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    for row in payload["rows"]:
        precision = PRECISION_LABELS.get(row["precision"], row["precision"])
        start = f"| {_label(row['model'])} | {row['implementation']} | {precision} |"
        if "error" in row:
            lines.append(f"{start} - | - | - | error: {row['error'][:100]} |")
            continue
        lines.append(
            f"{start} {row['params']:,} | {'yes' if row.get('loss_scaled') else 'no'} | "
            f"{_number(row['first_step_s'])} | {_number(row['images_per_s'])} |"
        )
    return lines


def accuracy_table(result: dict) -> list[str]:
    if "error" in result:
        return [f"Published LruNet-10 on Fashion-MNIST: error: {result['error']}"]
    return [
        "| preset | backend | test images | accuracy here | the preset's accuracy |",
        "|---|---|---:|---:|---:|",
        f"| {result['preset']} | {result['backend']} | {result['images']:,} | "
        f"{result['accuracy']:.2f}% | {result['preset_accuracy']:.2f}% |",
    ]


def training_table(result: dict) -> list[str]:
    if "error" in result:
        return [f"Mixed-precision training run: error: {result['error']}"]
    scale = result["final_loss_scale"]
    return [
        f"{result['model']} trained from scratch in {result['policy']} on "
        f"{result['train_images']:,} Fashion-MNIST training images ({result['backend']}, "
        f"{result['seconds']:.0f} s); test accuracy on {result['test_images']:,} images:",
        "",
        "| epoch | train loss | test accuracy |",
        "|---:|---:|---:|",
        *(
            f"| {epoch} | {loss:.4f} | {accuracy:.2f}% |"
            for epoch, (loss, accuracy) in enumerate(
                zip(result["loss"], result["test_accuracy"], strict=True), start=1
            )
        ),
        "",
        f"Loss scaling: {'LossScaleOptimizer' if result['loss_scale_optimizer'] else 'none'}, "
        f"final loss scale {_number(scale, 0)}. Looped stages: {result['looped_stages']}; "
        f"their weights moved by {_number(result['stage_weight_change'], 3)} of their norm.",
    ]


def markdown(payload: dict) -> str:
    """The report: the environment, the speed rows, the accuracy and the training run."""
    env = payload["environment"]
    toy = " At toy size (`--toy`): the code path, not a measurement." if payload["toy"] else ""
    tensorflow = "imported" if payload["tensorflow_imported"] else "not imported"
    lines = [
        f"Measured with `python -m benchmarks.gpu` on {env['gpu']}: {_versions(payload)}, "
        f"Python {env['python']}; TensorFlow {tensorflow}. Batch {payload['batch_size']}, "
        f"{payload['steps']} timed steps after the first; the time to the first step includes "
        f"tracing and compilation.{toy}",
        "",
        *speed_table(payload),
    ]
    if "accuracy" in payload:
        lines += ["", *accuracy_table(payload["accuracy"])]
    if "training" in payload:
        lines += ["", *training_table(payload["training"])]
    if payload.get("skipped"):
        lines += ["", "Not measured:", *(f"- {note}" for note in payload["skipped"])]
    if "seconds" in payload:
        lines += ["", f"The whole run: {payload['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"
