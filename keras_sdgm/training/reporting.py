"""What a recipe run leaves behind, and the tables made of it.

Curves and the CSV log, `metrics.json` (`write_json`, `read_metrics`) and
the one markdown-table writer of the recipes, `recipes/ablate.py`,
`scripts/results_table.py` and `benchmarks/` (`markdown_table`).
"""

import csv
import json
import os
import platform

import keras
import numpy as np

METRICS_FILE = "metrics.json"


def read_csv_log(path):
    """The rows of a `keras.callbacks.CSVLogger` file as dicts of floats."""
    try:
        with open(path, newline="") as f:
            return [
                {k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(f)
            ]
    except FileNotFoundError:
        return []


def truncate_csv_log(path, limit):
    """Keeps the rows whose first column is below `limit`; returns them.

    The first column is the epoch of `log.csv` or the step of `steps.csv`.
    A resumed run restarts at its last backup (`limit`: its epochs, or its
    steps + 1): rows logged after that backup describe weights that were
    lost, and would be logged twice.
    """
    try:
        with open(path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
    except FileNotFoundError:
        return []
    kept = lines[:1] + [
        line for line in lines[1:] if int(line.split(",", 1)[0]) < limit
    ]
    with open(path, "w", newline="") as f:
        f.writelines(kept)
    return read_csv_log(path)


def plot_training_curves(
    csv_path, png_path, title, steps_path=None, steps_per_epoch=None
):
    """Loss and perplexity, training and validation, against the step.

    The training curves come from `steps_path` (a `StepLog` file: a point
    every few steps, so a one-epoch run has a curve) when it has rows, else
    from the per-epoch `csv_path`; the validation points, one per epoch,
    from `csv_path`, at the epoch's last step (`steps_per_epoch`).
    Without `steps_path`, the x axis is the epoch.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_csv_log(csv_path)
    steps = read_csv_log(steps_path) if steps_path else []
    if not rows and not steps:
        return None
    for row in steps:
        if "nll" in row:
            row["perplexity"] = float(np.exp(row["nll"]))
    if steps:
        x_label = "step"
        epoch_x = [(int(r["epoch"]) + 1) * steps_per_epoch for r in rows]
        train_x, train_rows = [r["step"] for r in steps], steps
    else:
        x_label = "epoch"
        epoch_x = [int(r["epoch"]) + 1 for r in rows]
        train_x, train_rows = epoch_x, rows
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "perplexity")):
        if train_rows and metric in train_rows[0]:
            axis.plot(
                train_x,
                [r[metric] for r in train_rows],
                "-" if steps else "-o",
                label=metric,
            )
        key = "val_" + metric
        if rows and key in rows[0]:
            axis.plot(epoch_x, [r[key] for r in rows], "--o", label=key)
        axis.set_xlabel(x_label)
        axis.set_ylabel(metric)
        if axis.lines:
            axis.legend()
    axes[1].set_yscale("log")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return png_path


def library_versions():
    import keras_hub

    import keras_sdgm

    versions = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "keras_sdgm": keras_sdgm.__version__,
        "numpy": np.__version__,
    }
    backend = keras.config.backend()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[
        backend
    ]
    versions[module] = __import__(module).__version__
    return versions


# Environment variables that change how fast the same code runs on the CPU:
# XLA's and oneDNN's options, and glibc's malloc tunables (with
# `glibc.malloc.hugetlb=1` the large buffers XLA allocates anew at every
# step come in 2 MiB pages; docs/PERFORMANCE.md).
SPEED_SETTINGS = ("XLA_FLAGS", "GLIBC_TUNABLES", "TF_ENABLE_ONEDNN_OPTS")


def speed_settings():
    """The `SPEED_SETTINGS` this process runs with, by name (those set)."""
    return {
        name: os.environ[name] for name in SPEED_SETTINGS if name in os.environ
    }


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def read_metrics(run_dir):
    """The `metrics.json` of a finished recipe run, or `None` if unfinished."""
    try:
        with open(os.path.join(run_dir, METRICS_FILE)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def markdown_table(header, rows):
    """A markdown table (a string): `header` and each row are lists of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def millions(count):
    """A parameter count in millions, e.g. `"1.25M"`."""
    return f"{count / 1e6:.2f}M"


def write_markdown(path, table):
    """Writes a markdown `table` (a string) to `path` and prints it."""
    with open(path, "w") as f:
        f.write(table + "\n")
    print(table)
