"""Training on several devices for the recipes, with each backend's own engine."""

import contextlib

import keras


def configure_distribution(mode, batch_size):
    """Sets up `--distribute` before the model is built.

    - `"none"`: one device.
    - `"data-parallel"` under JAX: `keras.distribution.DataParallel` over
      `keras.distribution.list_devices()`, set globally.
    - `"data-parallel"` under TensorFlow: `tf.distribute.MirroredStrategy`
      over every GPU, or over the logical CPU devices when there is no GPU;
      build and compile the model inside the returned scope.
    - `"model-parallel"` under JAX: `keras.distribution.ModelParallel`
      with the token embedding (which is also the output projection, the
      largest weight at these sizes) split by vocabulary rows across all
      devices, and every other weight replicated. Each device sees the whole
      batch.

    With data parallelism every device holds the whole model, each step
    splits the global `batch_size` evenly across them, and the gradients
    are averaged, so one step is the step of one device with the same
    global batch: the learning rate keeps its meaning. Model parallelism
    computes the same step as one device, too. Anything else raises
    `ValueError` saying what to use: Keras 3.15 has no distributed `fit()`
    for torch, and `ModelParallel` is JAX's.

    Args:
        mode: `"none"`, `"data-parallel"` or `"model-parallel"`.
        batch_size: int. The global batch size.

    Returns:
        `(num_devices, scope)`: the number of devices the model runs on,
        and the context manager to build and compile the model in.
    """
    if mode == "none":
        return 1, contextlib.nullcontext()
    if mode not in ("data-parallel", "model-parallel"):
        raise ValueError(
            f"Unknown --distribute {mode!r}; use 'none', 'data-parallel' or "
            "'model-parallel'."
        )
    backend = keras.config.backend()
    if mode == "model-parallel":
        if backend != "jax":
            raise ValueError(
                "--distribute model-parallel runs under the JAX backend only "
                f"(Keras's ModelParallel); this is {backend!r}. Run with "
                "KERAS_BACKEND=jax, or use --distribute data-parallel."
            )
        devices = keras.distribution.list_devices()
        mesh = keras.distribution.DeviceMesh(
            shape=(1, len(devices)),
            axis_names=("batch", "model"),
            devices=devices,
        )
        layout_map = keras.distribution.LayoutMap(mesh)
        layout_map["token_embedding/embeddings"] = ("model", None)
        keras.distribution.set_distribution(
            keras.distribution.ModelParallel(
                layout_map=layout_map, batch_dim_name="batch"
            )
        )
        return len(devices), contextlib.nullcontext()
    if backend == "jax":
        devices = keras.distribution.list_devices()
        _check_even_split(batch_size, devices)
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )
        return len(devices), contextlib.nullcontext()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        _check_even_split(batch_size, devices)
        strategy = tf.distribute.MirroredStrategy(devices)
        return strategy.num_replicas_in_sync, strategy.scope()
    raise ValueError(
        f"--distribute data-parallel runs under the JAX and TensorFlow "
        f"backends; this is {backend!r}, for which Keras has no "
        "data-parallel fit(). Run the same recipe with KERAS_BACKEND=jax or "
        "KERAS_BACKEND=tensorflow."
    )


def prepare_for_strategy(lm, dataset):
    """Works around two Keras 3.15 bugs of `fit()` under `tf.distribute`.

    At its start, `fit()` averages the replicas' first batch with
    `strategy.reduce("MEAN")` to build the model symbolically. That fails
    on boolean tensors (keras-hub's preprocessors give the padding mask and
    the sample weights as booleans), and turns integer token ids into
    float64, which SDGM models refuse. So, inside a strategy's scope only,
    this makes the model's preprocessing give int32 padding masks (every
    model here takes them) and float32 sample weights, and builds the
    compiled metrics and loss from one real batch with `test_on_batch`
    (which changes no weight), so that `fit()` has nothing left to build.
    Elsewhere it does nothing.

    Args:
        lm: a model compiled inside the strategy's scope.
        dataset: a `tf.data.Dataset` of what `fit()` takes: `(x, y,
            sample_weight)` batches, or raw batches for the model's
            preprocessor.
    """
    if keras.config.backend() != "tensorflow":
        return
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return
    preprocess_samples = lm.preprocess_samples

    def preprocess_with_integer_masks(x, y=None, sample_weight=None):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(
            preprocess_samples(x, y, sample_weight)
        )
        if isinstance(x, dict) and "padding_mask" in x:
            x = {**x, "padding_mask": tf.cast(x["padding_mask"], "int32")}
        if sample_weight is not None:
            sample_weight = tf.cast(sample_weight, "float32")
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    lm.preprocess_samples = preprocess_with_integer_masks
    batch = next(iter(dataset))
    lm.test_on_batch(*(batch if isinstance(batch, tuple) else (batch,)))


def _check_even_split(batch_size, devices):
    if batch_size % len(devices):
        raise ValueError(
            f"--batch-size {batch_size} does not split evenly across "
            f"{len(devices)} devices ({', '.join(devices)}); use a multiple "
            f"of {len(devices)}."
        )
