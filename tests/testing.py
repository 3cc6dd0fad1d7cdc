"""The base class of our tests: keras-hub's, without TensorFlow's helper
`test_session`, which pytest would otherwise report as a skipped test."""

import keras
import numpy as np
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
