"""Position-wise layers applied to one matrix of rows, with `keras.ops`."""

from keras import ops


def apply_to_rows(function, inputs):
    """`function` of `inputs` `(..., features)`, applied as `(rows, features)`.

    `function` must act on each position alone (a `Dense` layer, a
    feed-forward, a product by a matrix). The leading axes are flattened
    into one before it and restored after it, which gives the same result
    and a different gradient program: the weight gradient of a product of
    3-D inputs is a 2-D product whose operand XLA on the CPU transposes.
    Where that operand is the residual stream's gradient, XLA fuses the
    whole chain of additions that makes it (one per later block) into each
    transposing copy instead of computing it once; the copies then grow
    with the depth and took 15% of the benchmark model's training step
    (D=512, 4 blocks, L=128, JAX). Products of 2-D inputs do not trigger
    it: that step is 1.26x faster with the feed-forward and the dictionary
    as rows (docs/PERFORMANCE.md, "Products of rows").

    Args:
        function: a callable from `(rows, features)` to `(rows, units)`.
        inputs: tensor `(..., features)`.

    Returns:
        The tensor `(..., units)`.
    """
    shape = ops.shape(inputs)
    outputs = function(ops.reshape(inputs, (-1, shape[-1])))
    return ops.reshape(outputs, tuple(shape[:-1]) + (outputs.shape[-1],))
