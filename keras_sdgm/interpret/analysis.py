"""What the dictionary learned: atom statistics, activations, reconstruction."""

import collections

import keras
import numpy as np

from keras_sdgm.datasets.pipeline import token_windows
from keras_sdgm.layers.shared_frequency_dictionary import (
    SharedFrequencyDictionary,
)
from keras_sdgm.layers.spectral_dictionary import SpectralDictionary


def atom_table(lm, block=0):
    """Frequency, amplitude and phase summaries of every atom of a block.

    Frequencies are in cycles per `window_length` positions (the
    training window), so `f = 1` is one period per window; each atom has
    one amplitude and phase per feature, summarized here, and one frequency
    per feature (`SpectralDictionary`), an atom's frequency plus a
    feature's offset (`SeparableFrequencyDictionary`), or one for all its
    features (`SharedFrequencyDictionary`, where minimum, mean and maximum
    agree). An atom of the static dictionary (the default) is a row of
    one `(num_atoms, hidden_dim)` matrix, the same at every position: its
    amplitudes are that row's entries, and it has no frequency or phase.

    Args:
        lm: an `SDGMCausalLM` (or `SDGMBackbone`).
        block: int. Index of the block.

    Returns:
        list of dicts, one per atom: `atom`, `amplitude_rms`,
        `amplitude_max` (of `|amplitude|` over features) and, for a
        sinusoidal dictionary, `frequency_mean`, `frequency_min`,
        `frequency_max` (of `|f|` over features), `period_median`
        (positions per cycle), `phase_mean` (circular mean, radians) and
        `phase_concentration` (mean resultant length: 1 when all features
        share one phase, near 0 when phases are spread).
    """
    if not has_sinusoidal_atoms(lm, block):
        kernel = keras.ops.convert_to_numpy(
            _backbone(lm).blocks[block].dictionary.kernel
        )
        return [
            {
                "atom": k,
                "amplitude_rms": float(np.sqrt(np.mean(row**2))),
                "amplitude_max": float(np.abs(row).max()),
            }
            for k, row in enumerate(kernel)
        ]
    dictionary = spectral_dictionary(lm, block)
    amplitude = keras.ops.convert_to_numpy(dictionary.amplitude)
    frequency = np.abs(
        keras.ops.convert_to_numpy(dictionary.atom_frequencies())
    )
    phasor = np.exp(1j * keras.ops.convert_to_numpy(dictionary.phase))
    window_length = dictionary.window_length
    rows = []
    for k in range(dictionary.num_atoms):
        resultant = phasor[k].mean()
        rows.append(
            {
                "atom": k,
                "frequency_mean": float(frequency[k].mean()),
                "frequency_min": float(frequency[k].min()),
                "frequency_max": float(frequency[k].max()),
                "period_median": float(
                    np.median(window_length / np.maximum(frequency[k], 1e-9))
                ),
                "amplitude_rms": float(np.sqrt(np.mean(amplitude[k] ** 2))),
                "amplitude_max": float(np.abs(amplitude[k]).max()),
                "phase_mean": float(np.angle(resultant)),
                "phase_concentration": float(np.abs(resultant)),
            }
        )
    return rows


def auxiliary_outputs_over(lm, token_ids, batch_size=32, max_windows=None):
    """Runs non-overlapping windows of a token stream through the model.

    Yields `(window_token_ids, auxiliary_outputs)` per batch: one dict per
    block, as `SDGMBackbone(..., return_auxiliary_outputs=True)` returns
    them, converted to NumPy.
    """
    backbone = _backbone(lm)
    windows = token_windows(token_ids, backbone.window_length)[:, :-1]
    if max_windows is not None:
        windows = windows[:max_windows]
    if len(windows) == 0:
        raise ValueError(
            f"Need more than {backbone.window_length} tokens (one window); "
            f"received {len(token_ids)}."
        )
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        terms = _auxiliary_outputs(backbone, batch)
        yield (
            batch,
            [
                {
                    k: keras.ops.convert_to_numpy(keras.ops.cast(v, "float32"))
                    for k, v in block_terms.items()
                }
                for block_terms in terms
            ],
        )


def top_activating_tokens(
    lm, token_ids, block=0, top=8, min_count=5, max_windows=None
):
    """The tokens with the largest mean coefficient for each atom.

    Args:
        lm: an `SDGMCausalLM` (or `SDGMBackbone`).
        token_ids: int array, a tokenized text (e.g. a validation split).
        block: int. Index of the block.
        top: int. Tokens per atom.
        min_count: int. Ignore tokens seen fewer times (their means are
            noise).
        max_windows: int or `None`. Use at most this many windows.

    Returns:
        list (one per atom) of `(token_id, mean_coefficient, count)`
        tuples, largest mean first.
    """
    totals = {}
    counts = collections.Counter()
    for batch, terms in auxiliary_outputs_over(
        lm, token_ids, max_windows=max_windows
    ):
        coefficients = terms[block]["coefficients"]
        coefficients = coefficients.reshape(-1, coefficients.shape[-1])
        ids = batch.reshape(-1)
        for token in np.unique(ids):
            rows = coefficients[ids == token]
            totals[token] = totals.get(token, 0.0) + rows.sum(axis=0)
            counts[token] += len(rows)
    frequent = [t for t in totals if counts[t] >= min_count]
    if not frequent:
        raise ValueError(
            f"No token occurs {min_count} times; lower `min_count` or pass "
            "more text."
        )
    means = np.stack([totals[t] / counts[t] for t in frequent])  # (T, K)
    result = []
    for k in range(means.shape[1]):
        order = np.argsort(-means[:, k])[:top]
        result.append(
            [
                (int(frequent[i]), float(means[i, k]), counts[frequent[i]])
                for i in order
            ]
        )
    return result


def reconstruction_similarity(lm, token_ids, max_windows=None):
    """Mean cosine similarity of each block's reconstruction to its target.

    The paper's "embedding reconstruction cosine similarity": for every
    position, `cos(X_hat[t], X[t])` between what the block reconstructs
    (its normalized input) and the dictionary's reconstruction, averaged
    over positions.

    Returns:
        list of floats, one per block.
    """
    sums, count = None, 0
    for _, terms in auxiliary_outputs_over(
        lm, token_ids, max_windows=max_windows
    ):
        similarities = []
        for block_terms in terms:
            x, x_hat = block_terms["target"], block_terms["reconstruction"]
            cosine = np.sum(x * x_hat, axis=-1) / np.maximum(
                np.linalg.norm(x, axis=-1) * np.linalg.norm(x_hat, axis=-1),
                1e-12,
            )
            similarities.append(cosine.sum())
        sums = (
            similarities
            if sums is None
            else [a + b for a, b in zip(sums, similarities)]
        )
        count += terms[0]["target"].shape[0] * terms[0]["target"].shape[1]
    return [float(s / count) for s in sums]


def sentence_coefficients(lm, token_ids):
    """Each block's coefficients `(length, num_atoms)` for one token sequence."""
    token_ids = np.asarray(token_ids, "int32")[None]
    terms = _auxiliary_outputs(_backbone(lm), token_ids)
    return [
        keras.ops.convert_to_numpy(
            keras.ops.cast(t["coefficients"], "float32")
        )[0]
        for t in terms
    ]


def has_sinusoidal_atoms(lm, block=0):
    """Whether a block's dictionary has sinusoidal atoms (not the static one)."""
    # `SeparableFrequencyDictionary` is a `SharedFrequencyDictionary`.
    return isinstance(
        _backbone(lm).blocks[block].dictionary,
        (SpectralDictionary, SharedFrequencyDictionary),
    )


def spectral_dictionary(lm, block=0):
    """The sinusoidal dictionary of a block; a clear error if it has none."""
    layer = _backbone(lm).blocks[block]
    if not has_sinusoidal_atoms(lm, block):
        raise ValueError(
            f"Block {block} has a {layer.dictionary_type!r} dictionary (a "
            "position-independent matrix): it has no waveforms, "
            "frequencies or phases to analyse."
        )
    return layer.dictionary


def _auxiliary_outputs(backbone, token_ids):
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    return backbone(inputs, return_auxiliary_outputs=True)["auxiliary_outputs"]


def _backbone(lm):
    return getattr(lm, "backbone", lm)
