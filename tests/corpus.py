"""A word-level slice of PTB for end-to-end tests (no package loader yet)."""

import collections
import os

import numpy as np

from tests.conftest import shared_data_dir


def ptb_lines(split, num_lines):
    path = os.path.join(shared_data_dir(), "ptb", f"{split}.txt")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"PTB {split} split not found at {path}. Set KERAS_SDGM_DATA_DIR "
            "to the folder holding ptb/{train,valid,test}.txt."
        )
    with open(path, encoding="utf-8") as f:
        return [next(f) for _ in range(num_lines)]


def to_ids(lines, vocabulary):
    """One `<eos>` after each line; unknown words become `<unk>`."""
    unk = vocabulary["<unk>"]
    ids = []
    for line in lines:
        ids.extend(vocabulary.get(word, unk) for word in line.split())
        ids.append(vocabulary["<eos>"])
    return np.asarray(ids, "int32")


def build_vocabulary(lines):
    counts = collections.Counter(w for line in lines for w in line.split())
    words = ["<eos>", "<unk>"] + sorted(
        w for w in counts if w not in ("<unk>", "<eos>")
    )
    return {w: i for i, w in enumerate(words)}


def windows(ids, length):
    """Non-overlapping (x, y, sample_weight) windows: y is x shifted by one."""
    n = (len(ids) - 1) // length
    x = ids[: n * length].reshape(n, length)
    y = ids[1 : n * length + 1].reshape(n, length)
    inputs = {"token_ids": x, "padding_mask": np.ones_like(x)}
    return inputs, y, np.ones(x.shape, "float32")


def unigram_perplexity(train_ids, heldout_ids, vocabulary_size):
    """Add-one smoothed unigram perplexity of `heldout_ids`."""
    counts = np.bincount(train_ids, minlength=vocabulary_size) + 1.0
    log_probs = np.log(counts / counts.sum())
    return float(np.exp(-log_probs[heldout_ids].mean()))
