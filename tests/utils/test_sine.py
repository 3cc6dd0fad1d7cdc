import keras
import numpy as np
from keras import ops

from keras_sdgm.utils.sine import cos_turns
from keras_sdgm.utils.sine import sin_turns
from tests.testing import TestCase
from tests.testing import gradients


class SineTest(TestCase):
    def test_matches_float64_sin_and_cos_at_any_size(self):
        rng = np.random.default_rng(0)
        for bound in (2.0, 1e3, 5e4):
            turns = rng.uniform(-bound, bound, 100_000).astype("float32")
            # The reference angle is that of the float32 `turns` exactly.
            exact = 2 * np.pi * (turns.astype("float64") % 1.0)
            self.assertLess(
                np.abs(
                    ops.convert_to_numpy(sin_turns(turns)) - np.sin(exact)
                ).max(),
                2e-7,
            )
            self.assertLess(
                np.abs(
                    ops.convert_to_numpy(cos_turns(turns)) - np.cos(exact)
                ).max(),
                4e-7,
            )

    def test_known_values_and_folding_points(self):
        turns = np.array(
            [0.0, 0.25, 0.5, 0.75, -0.25, 1.0, 0.125, 3.375, -2.9],
            "float32",
        )
        self.assertAllClose(
            sin_turns(turns),
            np.sin(2 * np.pi * turns.astype("float64")),
            atol=2e-7,
            rtol=0,
        )

    def test_gradient_is_two_pi_cos(self):
        variable = keras.Variable(np.linspace(-3, 3, 1001).astype("float32"))
        (grad,) = gradients(
            lambda: ops.sum(sin_turns(variable.value)), [variable]
        )
        expected = 2 * np.pi * np.cos(2 * np.pi * np.linspace(-3, 3, 1001))
        self.assertAllClose(grad, expected, atol=2e-5, rtol=0)

    def test_float32_result_for_low_precision_input(self):
        self.assertDTypeEqual(
            sin_turns(ops.ones((3,), "float16") * 0.1), "float32"
        )
