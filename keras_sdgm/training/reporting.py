"""What a recipe run leaves behind: throughput, curves and metrics.json."""

import csv
import json
import platform

import keras
import numpy as np


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


def truncate_csv_log(path, num_epochs):
    """Keeps the first `num_epochs` epochs of a CSV log; returns their rows.

    A resumed run restarts at the epoch of its last backup: rows logged
    after that backup describe weights that were lost, and would be logged
    twice.
    """
    try:
        with open(path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
    except FileNotFoundError:
        return []
    kept = lines[:1] + [
        line for line in lines[1:] if int(line.split(",", 1)[0]) < num_epochs
    ]
    with open(path, "w", newline="") as f:
        f.writelines(kept)
    return read_csv_log(path)


def plot_training_curves(csv_path, png_path, title):
    """Loss and perplexity per epoch, training and validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_csv_log(csv_path)
    if not rows:
        return None
    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "perplexity")):
        for prefix, style in (("", "-"), ("val_", "--")):
            key = prefix + metric
            if key in rows[0]:
                axis.plot(epochs, [r[key] for r in rows], style, label=key)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
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


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def write_markdown(path, table):
    """Writes a markdown `table` (a string) to `path` and prints it."""
    with open(path, "w") as f:
        f.write(table + "\n")
    print(table)
