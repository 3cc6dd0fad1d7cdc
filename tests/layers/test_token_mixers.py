"""What every block token mixer promises (SPEC section 8): Keras's layer
contract, checked arguments, causal, a receptive field of
`1 + (kernel_size - 1) * sum(dilation_rates)` (every past position for the
spectral mixer), and a cached step equal to the full pass."""

import keras
import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_sdgm.layers import CoefficientEncoder
from keras_sdgm.layers import DepthwiseCoefficientEncoder
from keras_sdgm.layers import GatedCoefficientEncoder
from keras_sdgm.layers import GatedRetentionCoefficientEncoder
from keras_sdgm.layers import GatedSpectralCoefficientEncoder
from keras_sdgm.layers import RetentionCoefficientEncoder
from keras_sdgm.layers import SpectralCoefficientEncoder
from keras_sdgm.layers.retention_coefficient_encoder import MAX_LOOPED_CHUNKS
from tests.testing import TestCase

# Each mixer with the arguments of its own, beyond the shared ones; chunks
# of 4 positions make the spectral mixer carry its state between chunks.
MIXERS = [
    ("dilated_convolution", CoefficientEncoder, {}),
    ("depthwise", DepthwiseCoefficientEncoder, {}),
    ("gated", GatedCoefficientEncoder, {}),
    (
        "spectral",
        SpectralCoefficientEncoder,
        {"window_length": 8, "chunk_size": 4},
    ),
    (
        "gated_spectral",
        GatedSpectralCoefficientEncoder,
        {"window_length": 8, "chunk_size": 4},
    ),
    (
        "gated_spectral_modes_per_feature",
        GatedSpectralCoefficientEncoder,
        {"window_length": 8, "chunk_size": 4, "modes_per_feature": True},
    ),
    (
        "gated_spectral_data_dependent_decay",
        GatedSpectralCoefficientEncoder,
        {"window_length": 8, "chunk_size": 4, "data_dependent_decay": True},
    ),
    (
        "retention",
        RetentionCoefficientEncoder,
        {"window_length": 8, "chunk_size": 4},
    ),
    (
        "gated_retention",
        GatedRetentionCoefficientEncoder,
        {"window_length": 8, "chunk_size": 4},
    ),
    (
        "gated_retention_two_heads",
        GatedRetentionCoefficientEncoder,
        {"window_length": 8, "chunk_size": 4, "num_heads": 2},
    ),
]
SHAPES = (("single", 2, [1]), ("dilated", 3, [1, 2, 4]), ("pointwise", 1, [1]))
CASES = [
    (f"{mixer}_{shape}", cls, own, kernel_size, rates)
    for mixer, cls, own in MIXERS
    for shape, kernel_size, rates in SHAPES
]


class TokenMixerTest(TestCase):
    @parameterized.named_parameters(
        # Two full-width convolutions, each a kernel and a bias.
        ("dilated_convolution", CoefficientEncoder, {}, 4),
        # Per rate a (3, 6) kernel and a bias; the projection's two.
        ("depthwise", DepthwiseCoefficientEncoder, {}, 6),
        # The depthwise ones and the gate's kernel and bias.
        ("gated", GatedCoefficientEncoder, {}, 8),
        # The depthwise ones, the mode inputs' kernel, frequencies, decays
        # and the two read-outs.
        ("spectral", SpectralCoefficientEncoder, {"window_length": 8}, 11),
        # The spectral ones and the gate's kernel and bias.
        (
            "gated_spectral",
            GatedSpectralCoefficientEncoder,
            {"window_length": 8},
            13,
        ),
        # Modes per feature: the same less the mode inputs' kernel.
        (
            "gated_spectral_modes_per_feature",
            GatedSpectralCoefficientEncoder,
            {"window_length": 8, "modes_per_feature": True},
            12,
        ),
        # Data-dependent decay: the gated spectral ones and W_r's kernel.
        (
            "gated_spectral_data_dependent_decay",
            GatedSpectralCoefficientEncoder,
            {"window_length": 8, "data_dependent_decay": True},
            14,
        ),
        # The depthwise ones, the queries', keys' and values' kernel, the
        # output norm's scale and offset, frequencies and decays.
        ("retention", RetentionCoefficientEncoder, {"window_length": 8}, 11),
        # The retention's and the gate's kernel and bias.
        (
            "gated_retention",
            GatedRetentionCoefficientEncoder,
            {"window_length": 8},
            13,
        ),
    )
    def test_layer_basics(self, cls, own, num_weights):
        self.run_layer_test(
            cls=cls,
            init_kwargs={
                "num_atoms": 4,
                "kernel_size": 3,
                "dilation_rates": [1, 2],
                **own,
            },
            input_data=keras.random.normal((2, 7, 6)),
            expected_output_shape=(2, 7, 4),
            expected_num_trainable_weights=num_weights,
        )

    @parameterized.named_parameters(MIXERS)
    def test_invalid_arguments(self, cls, own):
        with self.assertRaisesRegex(ValueError, "dilation_rates"):
            cls(4, dilation_rates=[], **own)
        with self.assertRaisesRegex(ValueError, "dilation_rates"):
            cls(4, dilation_rates=[1, 0], **own)
        with self.assertRaisesRegex(ValueError, "kernel_size"):
            cls(4, kernel_size=0, **own)

    @parameterized.named_parameters(CASES)
    def test_causal_and_sees_its_receptive_field(
        self, cls, own, kernel_size, rates
    ):
        encoder = cls(5, kernel_size=kernel_size, dilation_rates=rates, **own)
        x = np.random.RandomState(0).randn(1, 24, 4).astype("float32")
        base = ops.convert_to_numpy(encoder(x))
        t = 12
        changed = x.copy()
        changed[:, t] += 1.0
        out = ops.convert_to_numpy(encoder(changed))
        # Nothing before t moves ...
        self.assertAllClose(base[:, :t], out[:, :t], atol=0, rtol=0)
        # ... position t does, and nothing past the receptive field does.
        self.assertGreater(np.abs(base[:, t] - out[:, t]).max(), 1e-4)
        if encoder.receptive_field is None:
            # Every later position sees it, the last one included.
            self.assertGreater(np.abs(base[:, -1] - out[:, -1]).max(), 1e-6)
            return
        reach = t + encoder.receptive_field
        if reach < 24:
            self.assertAllClose(base[:, reach:], out[:, reach:], atol=1e-6)
            # The last position inside it does move.
            last = reach - 1
            self.assertGreater(np.abs(base[:, last] - out[:, last]).max(), 1e-6)

    @parameterized.named_parameters(CASES)
    def test_step_matches_full_call(self, cls, own, kernel_size, rates):
        encoder = cls(6, kernel_size=kernel_size, dilation_rates=rates, **own)
        # Eight features: two retention heads of an even number each.
        x = keras.random.normal((2, 15, 8))
        full = ops.convert_to_numpy(encoder(x))

        # From an empty context, one position at a time.
        states = encoder.initial_cache(batch_size=2)
        for t in range(15):
            c, states = encoder(x[:, t : t + 1], cache=states)
            self.assertAllClose(full[:, t : t + 1], c, atol=1e-5)

        # From the states of a prefix, as cached generation uses them.
        prefix, states = encoder(x[:, :4], cache_update_index=4)
        self.assertAllClose(full[:, :4], prefix, atol=1e-6)
        for t in range(4, 15):
            c, states = encoder(x[:, t : t + 1], cache=states)
            self.assertAllClose(full[:, t : t + 1], c, atol=1e-5)

        # From the states at a position inside a longer (padded) input.
        _, states = encoder(x, cache_update_index=6)
        for t in range(6, 15):
            c, states = encoder(x[:, t : t + 1], cache=states)
            self.assertAllClose(full[:, t : t + 1], c, atol=1e-5)

    @parameterized.named_parameters(
        ("retention", RetentionCoefficientEncoder),
        ("gated_retention", GatedRetentionCoefficientEncoder),
    )
    def test_retention_heads_and_chunks(self, cls):
        with self.assertRaisesRegex(ValueError, "num_heads"):
            cls(4, window_length=8, num_heads=0)
        with self.assertRaisesRegex(ValueError, "chunk_size"):
            cls(4, window_length=8, chunk_size=0)
        # 12 features: not 5 heads, nor 4 heads of an odd size.
        x = keras.random.normal((2, 21, 12))
        for heads in (5, 4):
            with self.assertRaisesRegex(ValueError, "num_heads"):
                cls(4, window_length=8, num_heads=heads)(x)
        # Every chunk size gives the same result: one chunk, chunks that
        # divide the length, and a padded last chunk; the states of 21
        # chunks are carried by the product over pairs of chunks, those of
        # 7 and 5 by the loop.
        self.assertLess(7, MAX_LOOPED_CHUNKS)
        self.assertLess(MAX_LOOPED_CHUNKS, 21)
        one_chunk = cls(4, window_length=8, num_heads=3)
        expected = ops.convert_to_numpy(one_chunk(x))
        for size in (1, 3, 5, 21):
            chunked = cls(4, window_length=8, num_heads=3, chunk_size=size)
            chunked.build(x.shape)
            chunked.set_weights(one_chunk.get_weights())
            self.assertAllClose(expected, chunked(x), atol=1e-5)
        # Its weightless FLOPs (D = 12, head_dim 4, S = 4): inside the
        # chunks 4 S D; with more than one chunk, also the states (4 d D)
        # and their carry (8 d D / S).
        counted = cls(4, window_length=8, num_heads=3, chunk_size=4)
        counted.build(x.shape)
        self.assertEqual(counted.sequence_flops_per_token(4), 4 * 4 * 12)
        self.assertEqual(
            counted.sequence_flops_per_token(21),
            4 * 4 * 12 + 4 * 4 * 12 + 8 * 4 * 12 / 4,
        )

    @parameterized.named_parameters(
        ("retention", RetentionCoefficientEncoder),
        ("gated_retention", GatedRetentionCoefficientEncoder),
    )
    def test_retention_of_a_length_unknown_when_traced(self, cls):
        # A length known when traced carries the states between up to
        # `MAX_LOOPED_CHUNKS` chunks by a loop over them (more by one
        # product over every pair of chunks, as chunks of 1 position do in
        # the test above); an unknown one (exported signatures, whose
        # length is `None`) always by the product. Only
        # TensorFlow traces such a length (JAX and torch always know it),
        # and every backend exports through it.
        if keras.config.backend() != "tensorflow":
            self.skipTest("Only TensorFlow traces an unknown length.")
        import tensorflow as tf

        encoder = cls(4, window_length=8, num_heads=3, chunk_size=4)
        x = keras.random.normal((2, 21, 12))
        expected = ops.convert_to_numpy(encoder(x))
        traced = tf.function(
            encoder, input_signature=[tf.TensorSpec((None, None, 12))]
        )
        concrete = traced.get_concrete_function()
        self.assertIsNone(concrete.structured_outputs.shape[1])
        self.assertAllClose(expected, traced(x), atol=1e-5)
