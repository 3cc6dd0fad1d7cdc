"""Argument checks shared by the layers and models."""

import numbers


def require_positive_int(name, value):
    """Returns `value` as an int, or raises naming the argument."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value <= 0
    ):
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )
    return int(value)


def require_positive_int_list(name, values):
    """`values` as a list if it is a non-empty list of positive ints."""
    if isinstance(values, int) or not values:
        raise ValueError(
            f"`{name}` must be a non-empty list of positive integers. "
            f"Received: {name}={values!r}"
        )
    return [require_positive_int(name, value) for value in values]


def require_non_negative_float(name, value):
    """Returns `value` as a float, or raises naming the argument."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not value >= 0
    ):
        raise ValueError(
            f"`{name}` must be a non-negative number. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def require_bool(name, value):
    """Returns `value` if it is a bool, or raises naming the argument."""
    if not isinstance(value, bool):
        raise ValueError(
            f"`{name}` must be True or False. Received: {name}={value!r}"
        )
    return value


def check_token_inputs(inputs, vocabulary_size):
    """Checks the `{"token_ids", "padding_mask"}` input of an SDGM model.

    Shapes and dtypes are checked always: they are static, also inside a
    compiled function. Token values are checked where they are concrete
    (eager calls such as `model(x)`, and every call on the torch backend);
    inside a compiled function (`fit`/`predict` on JAX or TensorFlow) an
    out-of-range id makes the backbone output NaN instead, so it can never
    pass for a plausible answer.

    Raises:
        ValueError: naming the key, what was received and what is accepted.
    """
    if not isinstance(inputs, dict) or "token_ids" not in inputs:
        raise ValueError(
            "SDGM models take a dict with keys 'token_ids' (int, shape "
            "(batch, length)) and 'padding_mask' (bool or int, same shape). "
            f"Received: {type(inputs).__name__}"
            + (
                f" with keys {sorted(inputs)}"
                if isinstance(inputs, dict)
                else ""
            )
        )
    token_ids = inputs["token_ids"]
    check_ids("token_ids", token_ids, vocabulary_size)
    shape = tuple(token_ids.shape)
    padding_mask = inputs.get("padding_mask")
    if padding_mask is not None:
        mask_shape = tuple(padding_mask.shape)
        if len(mask_shape) != 2 or any(
            a is not None and b is not None and a != b
            for a, b in zip(mask_shape, shape)
        ):
            raise ValueError(
                "`padding_mask` must have the shape of `token_ids`. "
                f"Received: token_ids {shape}, padding_mask {mask_shape}"
            )


def check_ids(name, ids, vocabulary_size):
    """Checks one array of token ids `(batch, length)`, named `name`.

    Dtype and rank always; values in `[0, vocabulary_size)` where they are
    concrete (see `check_token_inputs`).

    Raises:
        ValueError: naming `name`, what was received and what is accepted.
    """
    dtype = str(getattr(ids, "dtype", ""))
    if "int" not in dtype:
        raise ValueError(
            f"`{name}` must hold integer token ids (int32 or int64). "
            f"Received dtype: {dtype or type(ids).__name__}. Convert "
            "with `np.asarray(ids, 'int32')` after checking they are whole."
        )
    shape = tuple(ids.shape)
    if len(shape) != 2:
        raise ValueError(
            f"`{name}` must have rank 2, (batch, length). "
            f"Received shape: {shape}"
        )
    values = _concrete_numpy(ids)
    if values is not None and values.size:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= vocabulary_size:
            raise ValueError(
                f"`{name}` must be in [0, {vocabulary_size}) (the "
                f"vocabulary size). Received ids from {low} to {high}."
            )


def _concrete_numpy(x):
    """`x` as a NumPy array, or `None` if it is symbolic or traced."""
    import numpy as np
    from keras import ops

    if isinstance(x, np.ndarray):
        return x
    try:
        return ops.convert_to_numpy(x)
    except Exception:  # A tracer or graph tensor has no concrete value.
        return None


def require_one_of(name, value, choices):
    """Returns `value` if it is one of `choices`, or raises naming the argument."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {tuple(choices)}. "
            f"Received: {name}={value!r}"
        )
    return value


# The keyword arguments a keras-hub backbone or task passes on to Keras;
# Keras's functional models drop any other without a word.
MODEL_KWARGS = ("name", "trainable", "dtype", "compile")


def require_model_kwargs(cls_name, kwargs, renamed=None):
    """Raises `TypeError` for keyword arguments that Keras would drop.

    Args:
        cls_name: str. The class, for the message.
        kwargs: dict. The `**kwargs` a model constructor received.
        renamed: dict mapping an old argument name to its new one, named in
            the message.
    """
    unknown = sorted(set(kwargs) - set(MODEL_KWARGS))
    if not unknown:
        return
    renamed = renamed or {}
    hints = [
        f"`{name}` (now `{renamed[name]}`)" if name in renamed else f"`{name}`"
        for name in unknown
    ]
    raise TypeError(
        f"{cls_name} got unexpected keyword arguments: {', '.join(hints)}. "
        "Check their spelling against the class's Args."
    )
