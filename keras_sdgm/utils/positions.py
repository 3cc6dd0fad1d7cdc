"""Exact sinusoid angles at absolute integer positions, with `keras.ops`."""

import math

from keras import ops


def outer(vector, table):
    """`vector[n] * table[...]` as a tensor of shape `(n,) + table.shape`.

    Written as a product rather than a broadcast because of its gradient:
    the gradient of a broadcast is a sum over the leading axis, which XLA
    compiles ~20x slower on CPU than the matrix-vector product an einsum's
    gradient is (measured at n=32 and a `(256, 512)` table).
    """
    flat = ops.einsum("n,m->nm", vector, ops.reshape(table, (-1,)))
    return ops.reshape(flat, (-1,) + tuple(table.shape))


def position_turns(positions, frequency, window_length, phase=None):
    """Angles `f t / L0 (+ phi / (2 pi))` in turns at integer positions `t`.

    The angle is range-reduced, in turns, before any `sin` (which
    `keras_sdgm.utils.sine.sin_turns` evaluates with an exact reduction and
    a polynomial): with `t = q L0 + r` (integers, exact),
    `f t / L0 = f q + f r / L0`, and the whole cycles of each term are
    dropped exactly. `f q` is computed exactly by splitting `f` into a part
    on a grid of `2**-grid_bits` cycles and a small remainder, so the angle
    stays accurate to about 1e-5 rad at any position below
    `2**12 * window_length` (524,288 for L0 = 128) while `|f|` is below
    `window_length`, instead of losing ~1e-3 rad per 4,000 cycles as a
    plain float32 product does.

    Args:
        positions: int tensor `(n,)`. Absolute positions.
        frequency: float tensor of any shape, in cycles per `window_length`.
        window_length: int. The window `L0` positions are divided by.
        phase: `None`, or a float tensor of `frequency`'s shape, in radians,
            added to the angle.

    Returns:
        A float32 tensor of shape `(n,) + frequency.shape`, within a few
        turns of 0.
    """
    windows = ops.cast(positions // window_length, "float32")
    offsets = ops.cast(positions % window_length, "float32")
    frequency = ops.cast(frequency, "float32")
    # f = f_grid + f_rest with f_grid a multiple of 2**-grid_bits: for
    # |f| < L0 it has at most 12 significant bits, so q * f_grid is exact
    # for q < 2**12.
    grid = float(2 ** max(0, 12 - math.ceil(math.log2(window_length))))
    f_grid = ops.floor(frequency * grid) / grid
    f_rest = frequency - f_grid
    whole = outer(windows, f_grid)
    rest = outer(windows, f_rest)
    within = outer(offsets / window_length, frequency)
    turns = (
        (whole - ops.round(whole))
        + (rest - ops.round(rest))
        + (within - ops.round(within))
    )
    if phase is None:
        return turns
    phase = ops.cast(phase, "float32") / (2.0 * math.pi)
    return turns + outer(ops.ones_like(windows), phase - ops.round(phase))
