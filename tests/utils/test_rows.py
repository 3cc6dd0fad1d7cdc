import keras
import numpy as np
from keras import ops

from keras_sdgm.utils.rows import apply_to_rows
from tests.testing import TestCase
from tests.testing import gradients


class ApplyToRowsTest(TestCase):
    def test_equals_the_layer_on_the_full_tensor_with_its_gradient(self):
        dense = keras.layers.Dense(3)
        rng = np.random.default_rng(0)
        for shape in ((5, 8), (2, 5, 8), (2, 3, 5, 8)):
            x = rng.normal(size=shape).astype("float32")
            rows = ops.convert_to_numpy(
                ops.stop_gradient(apply_to_rows(dense, x))
            )
            self.assertEqual(rows.shape, shape[:-1] + (3,))
            full = ops.convert_to_numpy(ops.stop_gradient(dense(x)))
            self.assertAllClose(rows, full, atol=1e-6)
            weights = ops.convert_to_tensor(
                rng.normal(size=shape[:-1] + (3,)).astype("float32")
            )
            by_rows = gradients(
                lambda: ops.sum(apply_to_rows(dense, x) * weights),
                dense.trainable_variables,
            )
            whole = gradients(
                lambda: ops.sum(dense(x) * weights), dense.trainable_variables
            )
            for a, b in zip(by_rows, whole):
                self.assertAllClose(a, b, atol=1e-5)

    def test_unknown_leading_axes_in_a_functional_model(self):
        dense = keras.layers.Dense(3)
        inputs = keras.Input((None, 8))
        outputs = keras.layers.Lambda(lambda x: apply_to_rows(dense, x))(inputs)
        self.assertEqual(tuple(outputs.shape), (None, None, 3))
        model = keras.Model(inputs, outputs)
        for length in (4, 7):
            x = np.ones((2, length, 8), "float32")
            self.assertEqual(model.predict(x, verbose=0).shape, (2, length, 3))
