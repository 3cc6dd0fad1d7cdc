"""Matplotlib figures of the dictionary and its coefficients (PNG files).

Figures are made with `matplotlib.figure.Figure`, not `pyplot`: saving a PNG
needs no GUI backend, and the user's matplotlib backend is left as it is.
"""

import math

import keras
import numpy as np
from matplotlib.figure import Figure

from keras_sdgm.interpret.analysis import spectral_dictionary


def plot_coefficient_heatmap(words, coefficients, path, title):
    """Tokens (rows) by atoms (columns) heat map of one block's coefficients."""
    height = max(3.0, 0.25 * len(words) + 1.5)
    width = max(6.0, 0.12 * coefficients.shape[1] + 3.0)
    figure = Figure(figsize=(width, height))
    axis = figure.subplots()
    limit = float(np.abs(coefficients).max()) or 1.0
    image = axis.imshow(
        coefficients,
        aspect="auto",
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        interpolation="nearest",
    )
    axis.set_yticks(range(len(words)))
    axis.set_yticklabels(words, fontsize=8)
    axis.set_xlabel("atom")
    axis.set_title(title)
    figure.colorbar(image, ax=axis, label="coefficient")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_atom_waveforms(lm, atoms, path, block=0, num_features=3):
    """Waveforms `S[k, t, d]` over one window for a few atoms.

    For each atom, the `num_features` features with the largest amplitude,
    evaluated at positions `0 .. window_length - 1`.
    """
    dictionary = spectral_dictionary(lm, block)
    length = dictionary.window_length
    waves = keras.ops.convert_to_numpy(dictionary.atoms(0, length))  # (L, K, D)
    amplitude = np.abs(keras.ops.convert_to_numpy(dictionary.amplitude))
    columns = min(4, len(atoms))
    rows = math.ceil(len(atoms) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.4 * rows))
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True)
    for axis, k in zip(axes.flat, atoms):
        for d in np.argsort(-amplitude[k])[:num_features]:
            axis.plot(waves[:, k, d], linewidth=1, label=f"feature {d}")
        axis.set_title(f"atom {k}", fontsize=9)
        axis.legend(fontsize=6)
    for axis in axes.flat[len(atoms) :]:
        axis.set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("position")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_atom_spectrum(table, path):
    """Each atom's mean frequency against its RMS amplitude."""
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    frequency = [row["frequency_mean"] for row in table]
    amplitude = [row["amplitude_rms"] for row in table]
    axis.scatter(frequency, amplitude, s=12)
    axis.set_xlabel("mean |frequency| (cycles per training window)")
    axis.set_ylabel("RMS amplitude")
    axis.set_title("Atoms of the dictionary")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
