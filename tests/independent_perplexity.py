"""Perplexity of a release's TF Serving export, computed without this package.

    python tests/independent_perplexity.py SAVED_MODEL TEXT_FILE WINDOW

Prints `{"perplexity": ..., "num_predicted": ...}` for the text file scored
in non-overlapping windows of WINDOW tokens (SPEC section 6): its lines split
on spaces, each ended by `<eos>`, words mapped to ids by the export's
`assets.extra/vocabulary.txt` (`<unk>` for a word not in it). The model runs
through the SavedModel's `serving_default` signature in TensorFlow; Keras,
keras-hub, this package and the other backends cannot be imported here, so
no code that produced the release's recorded perplexity takes part.
"""

import json
import os
import sys

for _name in ("keras", "keras_sdgm", "keras_hub", "tf_keras", "jax", "torch"):
    sys.modules[_name] = None  # importing any of these now fails

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

BATCH = 32


def token_stream(text_file, vocabulary_file):
    with open(vocabulary_file, encoding="utf-8") as f:
        ids = {word: i for i, word in enumerate(f.read().splitlines())}
    with open(text_file, encoding="utf-8") as f:
        words = [
            word
            for line in f.read().splitlines()
            for word in line.split() + ["<eos>"]
        ]
    return np.array([ids.get(word, ids["<unk>"]) for word in words], "int32")


def perplexity(signature, tokens, window):
    """exp(mean NLL) of tokens[1:], each predicted from the tokens before it
    in its window; windows start every `window` tokens."""
    starts = list(range(0, len(tokens) - 1, window))
    total, count = 0.0, 0
    for first in range(0, len(starts), BATCH):
        batch = starts[first : first + BATCH]
        inputs = np.zeros((len(batch), window), "int32")
        mask = np.zeros((len(batch), window), "int32")
        targets = np.zeros((len(batch), window), "int64")
        for row, start in enumerate(batch):
            n = min(window, len(tokens) - 1 - start)
            inputs[row, :n] = tokens[start : start + n]
            targets[row, :n] = tokens[start + 1 : start + n + 1]
            mask[row, :n] = 1
        logits = (
            signature(
                token_ids=tf.constant(inputs), padding_mask=tf.constant(mask)
            )["logits"]
            .numpy()
            .astype("float64")
        )
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)
        real = mask.astype(bool)
        total -= picked[..., 0][real].sum()
        count += int(real.sum())
    return float(np.exp(total / count)), count


def main(saved_model_dir, text_file, window):
    model = tf.saved_model.load(saved_model_dir)
    tokens = token_stream(
        text_file,
        os.path.join(saved_model_dir, "assets.extra", "vocabulary.txt"),
    )
    value, count = perplexity(
        model.signatures["serving_default"], tokens, int(window)
    )
    print(json.dumps({"perplexity": value, "num_predicted": count}))


if __name__ == "__main__":
    main(*sys.argv[1:])
