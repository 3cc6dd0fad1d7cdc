"""Timing helpers of the benchmarks: a median-of-repeats timer and compiled
calls, each backend's own way (`jax.jit`, `tf.function` with XLA, eager
torch)."""

import statistics
import sys
import time

import keras


def wait_for(result):
    """Blocks until every backend tensor in `result` is computed.

    JAX (and TensorFlow on a GPU) return before the work is done; copying a
    result to NumPy waits for it. NumPy arrays and other values are left
    alone.
    """
    for leaf in keras.tree.flatten(result):
        if keras.ops.is_tensor(leaf):
            keras.ops.convert_to_numpy(leaf)


def call_seconds(fn, steps, warmup=2, label=None):
    """Seconds of each of `steps` calls of `fn()`, after `warmup` calls.

    Each call's result is waited for (`wait_for`) inside its time. With a
    `label`, each call's time is printed to stderr as it finishes.
    """
    times = []
    for i in range(warmup + steps):
        started = time.perf_counter()
        wait_for(fn())
        elapsed = time.perf_counter() - started
        if i >= warmup:
            times.append(elapsed)
        if label is not None:
            print(
                f"  {label} step {i + 1}/{warmup + steps}: {elapsed:.2f} s"
                f"{' (warm-up)' if i < warmup else ''}",
                file=sys.stderr,
                flush=True,
            )
    return times


def median_seconds(fn, steps, warmup=2, label=None):
    """Median seconds of `steps` calls of `fn()` after `warmup` calls."""
    return statistics.median(call_seconds(fn, steps, warmup, label))


def compiled(fn, variables=(), training=False):
    """`fn(*args)` compiled as the backend compiles a model's step.

    JAX: `jax.jit` of a stateless call that reads `variables` (e.g. a
    model's `trainable_variables + non_trainable_variables`, which must be
    all the variables `fn` reads) from their current values. TensorFlow:
    `tf.function(jit_compile=True)`. Torch: eager, under `torch.no_grad()`
    unless `training` (a training step's forward builds the autograd
    graph).
    """
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        stateless = jax.jit(_stateless(fn, variables))
        values = [v.value for v in variables]
        return lambda *args: stateless(values, *args)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if training:
        return fn
    import torch

    def eager(*args):
        with torch.no_grad():
            return fn(*args)

    return eager


def compiled_gradients(fn, variables):
    """Compiled `x -> [d fn(x) / d x] + [d fn(x) / d v for v in variables]`.

    `fn` takes one tensor and returns a scalar; it must read `variables`
    (e.g. by calling the layer that owns them). Compiled as `compiled`
    compiles a call; under torch, eager `torch.autograd.grad`.
    """
    variables = list(variables)
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        both = jax.jit(jax.grad(_stateless(fn, variables), argnums=(0, 1)))
        values = [v.value for v in variables]

        def jax_gradients(x):
            by_variable, by_x = both(values, x)
            return [by_x, *by_variable]

        return jax_gradients
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def tf_gradients(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = fn(x)
            return tape.gradient(value, [x] + [v.value for v in variables])

        return tf_gradients
    import torch

    def torch_gradients(x):
        x = x.detach().requires_grad_(True)
        return list(
            torch.autograd.grad(fn(x), [x] + [v.value for v in variables])
        )

    return torch_gradients


def _stateless(fn, variables):
    """`(values, *args) -> fn(*args)` with `variables` read from `values`."""
    variables = list(variables)

    def stateless(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(*args)

    return stateless
