"""Corpus perplexity under the two protocols of SPEC section 6."""

import math
import weakref

import keras
import numpy as np
from keras import ops

from keras_sdgm.datasets.pipeline import tokenize_corpus
from keras_sdgm.utils.validation import require_positive_int


def evaluate_perplexity(
    model,
    tokens,
    stride=None,
    sequence_length=None,
    batch_size=64,
    verbose=1,
    by_position=False,
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
        tokens: a 1-D int array of token ids in `[0, vocabulary_size)` (a
            tokenized split), or a non-empty list of text lines, tokenized
            with `model.preprocessor.tokenizer` and one `<eos>` per line.
            The ids are checked here, on the host, before any scoring.
        stride: positive int or `None`. See above.
        sequence_length: positive int. Window length; defaults to the
            backbone's `window_length` (SDGM) or `max_sequence_length`
            (GPT-2).
        batch_size: positive int. Windows per forward pass.
        verbose: 0 or 1. Show a progress bar.
        by_position: bool. Also return the mean NLL at each position of the
            window: how much the model gains from the context before it.

    Returns:
        dict with `perplexity`, `nll` (mean, in nats), `num_predicted`, and
        `protocol` (`"non-overlapping"` or `"sliding, stride S"`); with
        `by_position`, also `nll_by_position`, `sequence_length` floats:
        entry `k` is the mean NLL of the targets scored at window position
        `k`, each predicted from the `k + 1` tokens of its window up to it
        (NaN where no target is scored: sliding windows score the first
        `sequence_length - stride` positions in the first window only).

    Raises:
        ValueError: naming the argument, for token ids that are not 1-D or
            outside the vocabulary, fewer than two tokens, or a `stride`,
            `sequence_length` or `batch_size` that is not a positive int in
            range.
    """
    if sequence_length is None:
        sequence_length = model_window(model)
    sequence_length = require_positive_int("sequence_length", sequence_length)
    stride = sequence_length if stride is None else stride
    stride = require_positive_int("stride", stride)
    if stride > sequence_length:
        raise ValueError(
            f"`stride` must be in [1, sequence_length={sequence_length}]. "
            f"Received: stride={stride}"
        )
    batch_size = require_positive_int("batch_size", batch_size)
    if not isinstance(by_position, bool):
        raise ValueError(
            f"`by_position` must be True or False. Received: {by_position!r}"
        )
    token_ids = _as_token_ids(model, tokens)
    if len(token_ids) < 2:
        raise ValueError(
            "`tokens` must hold at least two tokens to predict one. "
            f"Received {len(token_ids)}."
        )
    _check_vocabulary_range(model, token_ids)
    inputs, padding_mask, targets, weights = scoring_windows(
        token_ids, sequence_length, stride
    )

    scorer = _token_nll_model(model)
    position_nll = np.zeros(sequence_length)
    position_count = np.zeros(sequence_length)
    progress = keras.utils.Progbar(len(inputs), verbose=verbose)
    for start in range(0, len(inputs), batch_size):
        batch = _full_batch(
            (inputs, padding_mask, targets, weights), start, batch_size
        )
        nll = scorer.predict_on_batch(
            dict(zip(("token_ids", "padding_mask", "targets"), batch[:3]))
        )
        position_nll += (np.asarray(nll, "float64") * batch[3]).sum(axis=0)
        position_count += batch[3].sum(axis=0)
        progress.update(min(start + batch_size, len(inputs)))

    count = position_count.sum()
    mean_nll = position_nll.sum() / count
    protocol = (
        "non-overlapping"
        if stride == sequence_length
        else f"sliding, stride {stride}"
    )
    result = {
        "perplexity": math.exp(mean_nll),
        "nll": float(mean_nll),
        "num_predicted": int(count),
        "protocol": protocol,
    }
    if by_position:
        with np.errstate(invalid="ignore"):
            result["nll_by_position"] = (position_nll / position_count).tolist()
    return result


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
    return tuple(np.stack(a) for a in (inputs, padding_mask, targets, weights))


# One scoring model per evaluated model, so that its predict function is
# compiled once for every split and protocol.
_SCORERS = weakref.WeakKeyDictionary()


def _token_nll_model(model):
    """A model of `(token_ids, padding_mask, targets)` to per-token NLL.

    The model's own `score(..., scoring_mode="loss")` (keras-hub's
    `CausalLM.score`, which SDGM and GPT-2 have) traced once into a
    functional model, so that the log-softmax runs inside the compiled
    predict function and only `(batch, length)` numbers leave it instead
    of the logits (`vocabulary` times more; copying and reducing those in
    NumPy took most of the evaluation time). A model without `score` (e.g.
    keras-hub's RWKV-7) is scored from its logits in the same graph. The
    scorer holds the task's network without the task: a keras-hub task
    tracks its preprocessor, which stays unbuilt when the input is ids,
    and Keras runs a model with an unbuilt layer once more, eagerly, in
    every `predict_on_batch` (under JAX op by op).
    """
    if model in _SCORERS:
        return _SCORERS[model]
    inputs = {
        name: keras.Input(shape=(None,), dtype="int32", name=name)
        for name in ("token_ids", "padding_mask", "targets")
    }
    if hasattr(model, "score"):
        nll = model.score(
            inputs["token_ids"],
            inputs["padding_mask"],
            scoring_mode="loss",
            target_ids=inputs["targets"],
        )
    else:
        network = model
        if getattr(model, "preprocessor", None) is not None:
            network = keras.Model(model.input, model.output)
        logits = ops.cast(
            network({k: inputs[k] for k in ("token_ids", "padding_mask")}),
            "float32",
        )
        target_logits = ops.take_along_axis(
            logits, ops.expand_dims(inputs["targets"], -1), axis=-1
        )
        nll = ops.logsumexp(logits, axis=-1) - ops.squeeze(target_logits, -1)
    _SCORERS[model] = keras.Model(inputs, nll)
    return _SCORERS[model]


def _full_batch(arrays, start, batch_size):
    """Rows `start:start + batch_size`, the last batch padded with zero rows.

    Every batch then has one shape, so the predict function is compiled
    once; padded rows have weight 0.
    """
    rows = [a[start : start + batch_size] for a in arrays]
    missing = batch_size - len(rows[0])
    if missing:
        rows = [
            np.concatenate([r, np.zeros((missing,) + r.shape[1:], r.dtype)])
            for r in rows
        ]
    return rows


def model_window(model):
    """A model's window: the backbone's `window_length` (SDGM) or
    `max_sequence_length` (GPT-2). A model without one (RWKV-7) raises
    `ValueError`: give the length yourself."""
    backbone = getattr(model, "backbone", model)
    for name in ("window_length", "max_sequence_length"):
        if getattr(backbone, name, None):
            return getattr(backbone, name)
    raise ValueError(
        "Cannot tell the model's window (it has none, e.g. RWKV-7): pass "
        "`sequence_length`."
    )


def _as_token_ids(model, tokens):
    """`tokens` as a 1-D array of ids: checked ids, or tokenized lines."""
    if not isinstance(tokens, (list, tuple, str)) and hasattr(
        tokens, "__array__"
    ):
        tokens = np.asarray(tokens)
    if isinstance(tokens, np.ndarray) and tokens.dtype.kind in "iu":
        if tokens.ndim != 1:
            raise ValueError(
                "`tokens` must be a 1-D stream of token ids (one split, "
                "e.g. from `keras_sdgm.datasets.tokenize_corpus`). Received "
                f"shape {tokens.shape}; pass `ids.reshape(-1)` only if the "
                "rows really are consecutive."
            )
        return tokens
    if (
        isinstance(tokens, (list, tuple))
        and tokens
        and all(isinstance(line, str) for line in tokens)
    ):
        preprocessor = getattr(model, "preprocessor", None)
        if preprocessor is None:
            raise ValueError(
                "Text lines need the model's tokenizer, but the model has no "
                "preprocessor: pass token ids instead."
            )
        return tokenize_corpus(preprocessor.tokenizer, tokens)
    raise ValueError(
        "`tokens` must be a 1-D int array of token ids or a non-empty list of "
        f"text lines. Received: {type(tokens).__name__}"
        + (
            f" of dtype {tokens.dtype}"
            if isinstance(tokens, np.ndarray)
            else ""
        )
    )


def _check_vocabulary_range(model, token_ids):
    """Raises if an id is outside the model's vocabulary.

    Checked on the host once, so every backend gives this error (inside
    the compiled scoring an out-of-range id gives NaN under JAX and a
    backend error under TensorFlow).
    """
    backbone = getattr(model, "backbone", model)
    vocabulary_size = getattr(backbone, "vocabulary_size", None)
    if not vocabulary_size:
        return
    low, high = int(token_ids.min()), int(token_ids.max())
    if low < 0 or high >= vocabulary_size:
        raise ValueError(
            f"`tokens` must be ids in [0, {vocabulary_size}) (the model's "
            f"vocabulary size). Received ids from {low} to {high}."
        )
