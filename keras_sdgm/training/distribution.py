"""Data-parallel training for the recipes, through Keras's distribution API."""

import keras


def configure_distribution(mode, batch_size):
    """Sets up `--distribute` before the model is built.

    - `"none"`: one device.
    - `"data-parallel"` under JAX: `keras.distribution.DataParallel` over
      `keras.distribution.list_devices()`; every device holds the whole
      model, each step splits the global `batch_size` evenly across them,
      and gradients are averaged, so the learning rate keeps its meaning
      (it is the same step as one device with the same global batch).

    Under TensorFlow and torch it raises `ValueError` saying what to use:
    with Keras 3.15, `tf.distribute.MirroredStrategy` builds the model from
    placeholders whose dtype is float64 for integer token ids, which the
    model rejects; Keras offers no data-parallel `fit()` for torch.

    Args:
        mode: `"none"` or `"data-parallel"`.
        batch_size: int. The global batch size.

    Returns:
        The number of devices the batch is split across.
    """
    if mode == "none":
        return 1
    if mode != "data-parallel":
        raise ValueError(
            f"Unknown --distribute {mode!r}; use 'none' or 'data-parallel'."
        )
    backend = keras.config.backend()
    if backend != "jax":
        raise ValueError(
            f"--distribute data-parallel runs under the JAX backend only; "
            f"this is {backend!r}. Run with KERAS_BACKEND=jax (same recipe, "
            "same flags). TensorFlow's MirroredStrategy fails in Keras 3.15 "
            "(integer inputs reach the model as float64 placeholders), and "
            "Keras has no data-parallel fit() for torch."
        )
    devices = keras.distribution.list_devices()
    if batch_size % len(devices):
        raise ValueError(
            f"--batch-size {batch_size} does not split evenly across "
            f"{len(devices)} devices ({', '.join(devices)}); use a multiple "
            f"of {len(devices)}."
        )
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices)
    )
    return len(devices)
