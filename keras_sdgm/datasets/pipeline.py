"""Token streams and `tf.data` pipelines for language-model training."""

import numpy as np
import tensorflow as tf


def tokenize_corpus(tokenizer, lines, batch_size=4096):
    """One stream of token ids: each line's words, then `<eos>`.

    This is how word-level corpora are counted and modelled (every line,
    blank lines included, ends with one `<eos>`).

    Args:
        tokenizer: an `SDGMTokenizer`.
        lines: list of strings.
        batch_size: lines tokenized per `tf.data` batch.

    Returns:
        int32 NumPy array of token ids.
    """
    eos = tokenizer.end_token_id
    dataset = (
        tf.data.Dataset.from_tensor_slices(tf.constant(list(lines), tf.string))
        .batch(batch_size)
        .map(tokenizer, num_parallel_calls=tf.data.AUTOTUNE)
    )
    pieces = []
    for ragged in dataset:
        ids = tf.cast(ragged, tf.int32)
        eos_column = tf.fill([ids.nrows(), 1], tf.constant(eos, tf.int32))
        pieces.append(tf.concat([ids, eos_column], axis=1).flat_values.numpy())
    if not pieces:
        return np.zeros((0,), "int32")
    return np.concatenate(pieces).astype("int32")


def token_windows(token_ids, sequence_length, stride=None):
    """Windows of `sequence_length + 1` ids, `stride` apart (default: L).

    With the default stride consecutive windows overlap by one id, so
    after the next-token shift every id but the first is a target exactly
    once. A tail shorter than a full window is dropped.

    Returns:
        int32 array `(num_windows, sequence_length + 1)`.
    """
    stride = stride or sequence_length
    token_ids = np.asarray(token_ids, "int32")
    count = max(0, (len(token_ids) - sequence_length - 1) // stride + 1)
    starts = np.arange(count) * stride
    return token_ids[starts[:, None] + np.arange(sequence_length + 1)]


def language_model_dataset(
    token_ids,
    sequence_length,
    batch_size,
    preprocessor=None,
    shuffle=True,
    seed=None,
    drop_remainder=False,
):
    """A `tf.data` pipeline of LM batches that feeds `fit()` on any backend.

    Token stream -> windows of `sequence_length + 1` -> (shuffled) batches ->
    `preprocessor` (the next-token shift), giving `(x, y, sample_weight)`.

    Args:
        token_ids: int array, a tokenized corpus (`tokenize_corpus`).
        sequence_length: int. Model window `L`.
        batch_size: int.
        preprocessor: an `SDGMCausalLMPreprocessor`, or `None` to yield the
            raw windows (for a model that has the preprocessor attached).
        shuffle: bool. Shuffle the windows each epoch.
        seed: int or `None`. Shuffle seed.
        drop_remainder: bool. Leave out the last batch if it is smaller
            than `batch_size` (data-parallel training splits every batch
            evenly across devices).
    """
    windows = token_windows(token_ids, sequence_length)
    if len(windows) == 0:
        raise ValueError(
            f"The corpus has {len(token_ids)} tokens: fewer than one window "
            f"of sequence_length + 1 = {sequence_length + 1}."
        )
    dataset = tf.data.Dataset.from_tensor_slices(windows)
    if shuffle:
        dataset = dataset.shuffle(
            len(windows), seed=seed, reshuffle_each_iteration=True
        )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if preprocessor is not None:
        dataset = dataset.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
