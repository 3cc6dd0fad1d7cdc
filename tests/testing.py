"""The base class of our tests: keras-hub's, without TensorFlow's helper
`test_session`, which pytest would otherwise report as a skipped test."""

import keras
import numpy as np
import pytest
from keras_hub.src.tests.test_case import TestCase as KerasHubTestCase


class TestCase(KerasHubTestCase):
    test_session = None


def gradients(fn, variables):
    """d fn() / d each of `variables` on the current backend, as NumPy.

    `fn` takes no arguments and returns a scalar; it must read the
    variables (e.g. by calling the layer that owns them).
    """
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = fn()
        grads = tape.gradient(value, [v.value for v in variables])
        return [g.numpy() for g in grads]
    if backend == "jax":
        import jax

        def f(values):
            mapping = list(zip(variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                return fn()

        grads = jax.grad(f)([v.value for v in variables])
        return [np.asarray(g) for g in grads]
    import torch

    value = fn()
    grads = torch.autograd.grad(value, [v.value for v in variables])
    return [g.numpy() for g in grads]


def only_under(backend, reason):
    """Skips a test unless the suite runs under `backend`, saying why."""
    return pytest.mark.skipif(
        keras.config.backend() != backend,
        reason=f"runs under {backend} only: {reason}",
    )


# The end-to-end runs of the recipes and benchmarks: heavy, and their steps
# are backend-independent Keras (`fit`, callbacks, saving) that the model
# tests already cover under every backend, so they run once, under JAX.
# Tests of a backend's own path (torch's generator in a resumed run,
# TensorFlow's MirroredStrategy) are not marked.
END_TO_END = only_under(
    "jax", "an end-to-end run; the backend is not what it tests"
)
