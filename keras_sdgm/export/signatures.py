"""The serving functions every SDGM export holds, written once for all formats."""

from keras import ops

TOKEN_IDS = "token_ids"
PADDING_MASK = "padding_mask"
INPUT_NAMES = (TOKEN_IDS, PADDING_MASK)


def logits_function(lm):
    """`serving_default`: next-token logits at every position.

    Args:
        lm: an `SDGMCausalLM`.

    Returns:
        A function `(token_ids, padding_mask) -> {"logits": float32 (batch,
        length, vocabulary)}` over int32 `(batch, length)` inputs.
    """

    def logits(token_ids, padding_mask):
        outputs = lm.logits({TOKEN_IDS: token_ids, PADDING_MASK: padding_mask})
        return {"logits": ops.cast(outputs, "float32")}

    return logits


def next_token_function(lm):
    """`next_token`: log-probabilities of the token after each prompt.

    Row `b` is scored at its last non-padding position (the highest index
    where `padding_mask` is nonzero), so right-padded batches of prompts of
    different lengths work as keras-hub pads them. A row with no
    non-padding position has no next token: its log-probabilities are NaN.

    Args:
        lm: an `SDGMCausalLM`.

    Returns:
        A function `(token_ids, padding_mask) -> {"log_probs": float32
        (batch, vocabulary)}` over int32 `(batch, length)` inputs.
    """
    logits_of = logits_function(lm)

    def next_token(token_ids, padding_mask):
        logits = logits_of(token_ids, padding_mask)["logits"]
        length = ops.shape(logits)[1]
        positions = ops.arange(length, dtype="int32")[None, :]
        last = ops.max(
            ops.where(ops.not_equal(padding_mask, 0), positions, -1), axis=1
        )
        # A one-hot contraction instead of a gather: it exports to every
        # format with dynamic shapes.
        pick = ops.one_hot(ops.maximum(last, 0), length, dtype="float32")
        last_logits = ops.einsum("bl,blv->bv", pick, logits)
        log_probs = ops.log_softmax(last_logits, axis=-1)
        return {
            "log_probs": ops.where(
                ops.greater_equal(last, 0)[:, None], log_probs, float("nan")
            )
        }

    return next_token
