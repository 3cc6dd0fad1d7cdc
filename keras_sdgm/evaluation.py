"""Corpus perplexity under the two protocols of SPEC section 6."""

import math

import keras
import numpy as np

from keras_sdgm.datasets.pipeline import tokenize_corpus


def evaluate_perplexity(
    model,
    tokens,
    stride=None,
    sequence_length=None,
    batch_size=64,
    verbose=1,
):
    """Perplexity of a causal LM over a whole token stream.

    Every token but the first is predicted exactly once, and perplexity is
    `exp(total NLL / number of predicted tokens)`.

    - `stride=None` (or `stride == sequence_length`): non-overlapping
      windows of `sequence_length`; each window starts cold, so its first
      prediction sees one token of context.
    - `stride < sequence_length`: sliding windows `stride` apart; a window
      scores only its last `stride` targets (the first window scores all),
      so every prediction after the first window sees at least
      `sequence_length - stride` tokens of context.

    Args:
        model: a causal LM taking `{"token_ids", "padding_mask"}` and
            returning logits, e.g. `SDGMCausalLM` or keras-hub's
            `GPT2CausalLM`.
        tokens: int array of token ids (a tokenized split), or a list of
            text lines, tokenized with `model.preprocessor.tokenizer` and
            one `<eos>` per line.
        stride: int or `None`. See above.
        sequence_length: int. Window length; defaults to the backbone's
            `sequence_length` (SDGM) or `max_sequence_length` (GPT-2).
        batch_size: int. Windows per forward pass.
        verbose: 0 or 1. Show a progress bar.

    Returns:
        dict with `perplexity`, `nll` (mean, in nats), `num_predicted`, and
        `protocol` (`"non-overlapping"` or `"sliding, stride S"`).
    """
    sequence_length = sequence_length or _model_window(model)
    stride = stride or sequence_length
    if not 0 < stride <= sequence_length:
        raise ValueError(
            f"`stride` must be in [1, sequence_length={sequence_length}]. "
            f"Received: stride={stride}"
        )
    token_ids = _as_token_ids(model, tokens)
    if len(token_ids) < 2:
        raise ValueError("Need at least two tokens to predict one.")
    inputs, padding_mask, targets, weights = scoring_windows(
        token_ids, sequence_length, stride
    )

    total_nll, count = 0.0, 0.0
    progress = keras.utils.Progbar(len(inputs), verbose=verbose)
    # The windows are model inputs already: run the compiled predict
    # function without a keras-hub task's preprocessor in front of it.
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is not None:
        model.preprocessor = None
    try:
        for start in range(0, len(inputs), batch_size):
            batch = slice(start, start + batch_size)
            logits = model.predict_on_batch(
                {"token_ids": inputs[batch], "padding_mask": padding_mask[batch]}
            )
            nll = _token_nll(np.asarray(logits, "float32"), targets[batch])
            total_nll += float((nll * weights[batch]).sum())
            count += float(weights[batch].sum())
            progress.update(min(start + batch_size, len(inputs)))
    finally:
        if preprocessor is not None:
            model.preprocessor = preprocessor

    mean_nll = total_nll / count
    protocol = (
        "non-overlapping"
        if stride == sequence_length
        else f"sliding, stride {stride}"
    )
    return {
        "perplexity": math.exp(mean_nll),
        "nll": mean_nll,
        "num_predicted": int(count),
        "protocol": protocol,
    }


def scoring_windows(token_ids, sequence_length, stride):
    """Windows, targets and 0/1 weights that score every target once.

    Returns:
        `(inputs, padding_mask, targets, weights)`, each
        `(num_windows, sequence_length)`; `targets[i, k]` follows
        `inputs[i, k]`, and `weights` marks the targets window `i` scores.
        The last window is padded with id 0 and masked.
    """
    token_ids = np.asarray(token_ids, "int32")
    num_targets = len(token_ids) - 1
    inputs, padding_mask, targets, weights = [], [], [], []
    start = 0
    while True:
        window = token_ids[start : start + sequence_length + 1]
        real = len(window) - 1
        first_new = 0 if start == 0 else sequence_length - stride
        weight = np.zeros(sequence_length, "float32")
        weight[first_new:real] = 1.0
        padded = np.zeros(sequence_length + 1, "int32")
        padded[: len(window)] = window
        inputs.append(padded[:-1])
        padding_mask.append((np.arange(sequence_length) < real).astype("int32"))
        targets.append(padded[1:])
        weights.append(weight)
        if start + sequence_length >= num_targets:
            break
        start += stride
    return tuple(
        np.stack(a) for a in (inputs, padding_mask, targets, weights)
    )


def _token_nll(logits, targets):
    """`-log softmax(logits)[target]` per position."""
    peak = logits.max(axis=-1, keepdims=True)
    log_normalizer = np.log(np.exp(logits - peak).sum(axis=-1)) + peak[..., 0]
    target_logits = np.take_along_axis(logits, targets[..., None], axis=-1)
    return log_normalizer - target_logits[..., 0]


def _model_window(model):
    backbone = getattr(model, "backbone", model)
    for name in ("sequence_length", "max_sequence_length"):
        if getattr(backbone, name, None):
            return getattr(backbone, name)
    raise ValueError(
        "Cannot tell the model's window: pass `sequence_length`."
    )


def _as_token_ids(model, tokens):
    if isinstance(tokens, np.ndarray) and tokens.dtype.kind in "iu":
        return tokens.reshape(-1)
    if isinstance(tokens, (list, tuple)) and tokens and isinstance(tokens[0], str):
        preprocessor = getattr(model, "preprocessor", None)
        if preprocessor is None:
            raise ValueError(
                "Text lines need the model's tokenizer, but the model has no "
                "preprocessor: pass token ids instead."
            )
        return tokenize_corpus(preprocessor.tokenizer, tokens)
    raise ValueError(
        "`tokens` must be an int array of token ids or a list of text lines. "
        f"Received: {type(tokens).__name__}"
    )
