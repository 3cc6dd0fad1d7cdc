import keras
import numpy as np
from absl.testing import parameterized

from keras_sdgm.layers import SeparableFrequencyDictionary
from keras_sdgm.layers import SharedFrequencyDictionary
from keras_sdgm.layers import SpectralDictionary
from keras_sdgm.layers import StaticDictionary
from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models.sdgm.sdgm_backbone import covering_dilation_rates
from keras_sdgm.models.sdgm.spectral_dictionary_block import ENCODER_TYPES
from keras_sdgm.models.sdgm.spectral_dictionary_block import (
    SpectralDictionaryBlock,
)
from tests.fixtures import TINY_BACKBONE
from tests.fixtures import tiny_inputs
from tests.testing import TestCase

# One test per token mixer, named after it.
PER_MIXER = parameterized.named_parameters(*((t, t) for t in ENCODER_TYPES))


class SDGMBackboneTest(TestCase):
    def test_backbone_basics(self):
        self.run_backbone_test(
            cls=SDGMBackbone,
            init_kwargs=TINY_BACKBONE,
            input_data=tiny_inputs(),
            expected_output_shape=(2, 8, 8),
        )

    @PER_MIXER
    def test_saved_model(self, encoder_type):
        self.run_model_saving_test(
            cls=SDGMBackbone,
            init_kwargs={**TINY_BACKBONE, "encoder_type": encoder_type},
            input_data=tiny_inputs(),
        )

    @PER_MIXER
    def test_every_random_weight_draws_its_own_values(self, encoder_type):
        # An unseeded Keras initializer reused for several weights gives
        # them all the same values; each weight must get its own draw.
        backbone = SDGMBackbone(
            **{**TINY_BACKBONE, "encoder_type": encoder_type}
        )
        # The decays are a fixed spread of time scales, the same in every
        # block by design, and so are the retention's frequencies (rotary
        # embeddings'); constant weights (zeros, ones) are not drawn.
        fixed = ("decay",)
        if "retention" in encoder_type:
            fixed += ("frequency",)
        drawn = [
            (w.path, keras.ops.convert_to_numpy(w).ravel())
            for w in backbone.weights
            if not w.path.endswith(fixed)
            and np.ptp(keras.ops.convert_to_numpy(w)) > 0
        ]
        self.assertGreater(len(drawn), 4)
        for i, (path, values) in enumerate(drawn):
            for other_path, other in drawn[i + 1 :]:
                size = min(values.size, other.size)
                self.assertFalse(
                    np.array_equal(values[:size], other[:size]),
                    f"{path} and {other_path} start with the same values",
                )

    def test_config_of_the_older_keys_loads(self):
        config = SDGMBackbone(
            **{**TINY_BACKBONE, "dictionary_type": "static"}
        ).get_config()
        config["dictionary"] = config.pop("dictionary_type")
        config["sequence_length"] = config.pop("window_length")
        backbone = SDGMBackbone.from_config(config)
        self.assertEqual(backbone.dictionary_type, "static")
        self.assertEqual(backbone.blocks[0].dictionary_type, "static")
        self.assertEqual(backbone.window_length, TINY_BACKBONE["window_length"])
        self.assertEqual(
            backbone.blocks[0].window_length, TINY_BACKBONE["window_length"]
        )
        # Configs saved before `encoder_type` existed held the dense mixer,
        # the default then; since then every config names its mixer.
        del config["encoder_type"]
        self.assertEqual(
            SDGMBackbone.from_config(config).blocks[0].encoder_type,
            "dilated_convolution",
        )
        self.assertEqual(
            SDGMBackbone(**TINY_BACKBONE).encoder_type, "gated_retention"
        )
        # Likewise the dictionary: configs without it held the paper's free
        # per-feature frequencies, the default then; one that names
        # "shared_frequency" (the default for a while) keeps it, and so
        # does one that names "separable_frequency" (the default before
        # "static").
        for dictionary_type, layer in (
            ("shared_frequency", SharedFrequencyDictionary),
            ("separable_frequency", SeparableFrequencyDictionary),
        ):
            saved = SDGMBackbone(
                **TINY_BACKBONE, dictionary_type=dictionary_type
            ).get_config()
            self.assertIsInstance(
                SDGMBackbone.from_config(saved).blocks[0].dictionary, layer
            )
        del config["dictionary"]
        older = SDGMBackbone.from_config(config)
        self.assertEqual(older.dictionary_type, "spectral")
        self.assertIsInstance(older.blocks[0].dictionary, SpectralDictionary)
        default = SDGMBackbone(**TINY_BACKBONE)
        self.assertEqual(default.dictionary_type, "static")
        self.assertIsInstance(default.blocks[0].dictionary, StaticDictionary)
        # Through from_preset's keyword arguments too.
        paper = SDGMBackbone.from_preset(
            "sdgm_paper",
            load_weights=False,
            vocabulary_size=10,
            sequence_length=32,
        )
        self.assertEqual(paper.window_length, 32)
        config["window_length"] = 8
        with self.assertRaisesRegex(ValueError, "sequence_length.*window"):
            SDGMBackbone.from_config(config)
        # The constructor names what Keras would have dropped silently.
        with self.assertRaisesRegex(
            TypeError, r"`sequence_length` \(now `window_length`\), `windw`"
        ):
            SDGMBackbone(**TINY_BACKBONE, sequence_length=8, windw=3)

    def test_dense_encoder_covers_the_window(self):
        backbone = SDGMBackbone(
            vocabulary_size=10,
            hidden_dim=8,
            num_atoms=4,
            window_length=128,
            encoder_type="dilated_convolution",
        )
        self.assertEqual(backbone.dilation_rates, [1, 2, 4, 8, 16, 32, 64])
        # The default feed-forward: 2 * hidden_dim.
        self.assertEqual(backbone.intermediate_dim, 16)
        receptive_field = backbone.blocks[0].encoder.receptive_field
        self.assertGreaterEqual(receptive_field, 128)
        self.assertEqual(covering_dilation_rates(2, 4), [1, 2])

    def test_presets(self):
        self.assertIn("sdgm_paper", SDGMBackbone.presets)
        paper = SDGMBackbone.from_preset(
            "sdgm_paper", load_weights=False, vocabulary_size=100
        )
        self.assertEqual(
            (
                paper.hidden_dim,
                paper.num_atoms,
                paper.window_length,
                paper.num_layers,
                paper.dilation_rates,
                paper.intermediate_dim,
                paper.residual,
            ),
            (512, 256, 128, 1, [1], 0, False),
        )
        tiny = SDGMBackbone.from_preset(
            "sdgm_tiny", load_weights=False, vocabulary_size=20, num_layers=1
        )
        self.assertEqual(tiny.num_layers, 1)
        base = SDGMBackbone.from_preset(
            "sdgm_base", load_weights=False, vocabulary_size=20
        )
        self.assertEqual(
            (
                base.num_layers,
                base.max_position_offset,
                paper.max_position_offset,
            ),
            (2, 0, 0),
        )
        # The default mixer and dictionary (docs/ABLATIONS.md), and the
        # paper's convolution and sinusoidal atoms.
        self.assertEqual(
            [
                (model.encoder_type, model.dictionary_type)
                for model in (base, tiny, paper)
            ],
            [
                ("gated_retention", "static"),
                ("gated_retention", "static"),
                ("dilated_convolution", "spectral"),
            ],
        )
        self.assertEqual(base.dilation_rates, [1])
        with self.assertRaisesRegex(ValueError, "sdgm_paper"):
            SDGMBackbone.from_preset("sdgm_huge", vocabulary_size=10)
        with self.assertRaisesRegex(ValueError, "vocabulary_size"):
            SDGMBackbone.from_preset("sdgm_paper", load_weights=False)
        # A named preset has no trained weights: asked for them (keras-hub's
        # default), it says so instead of giving random ones.
        architectures = {
            name: preset
            for name, preset in SDGMBackbone.presets.items()
            if "config" in preset
        }
        self.assertEqual(
            sorted(architectures), ["sdgm_base", "sdgm_paper", "sdgm_tiny"]
        )
        for name, preset in architectures.items():
            self.assertIn("Architecture only", preset["description"], name)
            with self.assertRaisesRegex(
                ValueError, "architecture without trained weights"
            ):
                SDGMBackbone.from_preset(name, vocabulary_size=10)

    @parameterized.named_parameters(
        ("vocabulary_size", "vocabulary_size", 0),
        ("hidden_dim", "hidden_dim", -4),
        ("num_atoms", "num_atoms", 0),
        ("window_length", "window_length", 0),
        ("num_layers", "num_layers", 0),
        ("kernel_size", "kernel_size", 0),
        ("intermediate_dim", "intermediate_dim", -1),
        ("num_mixture_components", "num_mixture_components", 0),
        ("dilation_rates", "dilation_rates", [1, -2]),
        ("float_dim", "hidden_dim", 8.5),
    )
    def test_invalid_config(self, argument, value):
        with self.assertRaisesRegex(ValueError, argument):
            SDGMBackbone(**{**TINY_BACKBONE, argument: value})

    def test_mode_options_need_a_spectral_mixer(self):
        with self.assertRaisesRegex(ValueError, "modes_per_feature"):
            SDGMBackbone(
                **TINY_BACKBONE,
                encoder_type="depthwise",
                modes_per_feature=True,
            )
        with self.assertRaisesRegex(ValueError, "modes_per_feature"):
            SDGMBackbone(
                **TINY_BACKBONE,
                encoder_type="gated_retention",
                modes_per_feature=True,
            )
        with self.assertRaisesRegex(ValueError, "modes_per_feature"):
            SDGMBackbone(
                **TINY_BACKBONE, encoder_type="spectral", modes_per_feature=1
            )
        with self.assertRaisesRegex(ValueError, "data_dependent_decay"):
            SDGMBackbone(
                **TINY_BACKBONE,
                encoder_type="gated",
                data_dependent_decay=True,
            )
        # Both together: refused at construction, by the block too.
        with self.assertRaisesRegex(ValueError, "modes shared by the"):
            SDGMBackbone(
                **TINY_BACKBONE,
                modes_per_feature=True,
                data_dependent_decay=True,
            )
        with self.assertRaisesRegex(ValueError, "modes shared by the"):
            SpectralDictionaryBlock(
                num_atoms=4,
                window_length=8,
                encoder_type="spectral",
                modes_per_feature=True,
                data_dependent_decay=True,
            )
        backbone = SDGMBackbone(
            **TINY_BACKBONE,
            encoder_type="gated_spectral",
            modes_per_feature=True,
        )
        self.assertTrue(backbone.get_config()["modes_per_feature"])
        self.assertTrue(backbone.blocks[0].encoder.modes_per_feature)

    def test_invalid_inputs(self):
        backbone = SDGMBackbone(**TINY_BACKBONE)
        good = tiny_inputs()
        with self.assertRaisesRegex(ValueError, r"\[0, 10\)"):
            backbone({**good, "token_ids": good["token_ids"] + 5})
        with self.assertRaisesRegex(ValueError, r"\[0, 10\)"):
            backbone({**good, "token_ids": good["token_ids"] - 1})
        with self.assertRaisesRegex(ValueError, "integer"):
            backbone({**good, "token_ids": good["token_ids"].astype("float32")})
        with self.assertRaisesRegex(ValueError, "rank 2"):
            backbone({**good, "token_ids": good["token_ids"][..., None]})
        with self.assertRaisesRegex(ValueError, "shape of `token_ids`"):
            backbone({**good, "padding_mask": good["padding_mask"][:, :4]})
        with self.assertRaisesRegex(ValueError, "padding_mask"):
            backbone(good["token_ids"])

    def test_out_of_range_ids_are_nan_inside_compiled_predict(self):
        backbone = SDGMBackbone(**TINY_BACKBONE)
        bad = tiny_inputs()
        bad["token_ids"][1, 2] = 10
        if keras.config.backend() == "torch":
            # torch runs eagerly: the value check raises.
            with self.assertRaisesRegex(ValueError, r"\[0, 10\)"):
                backbone.predict(bad, verbose=0)
            return
        output = backbone.predict(bad, verbose=0)
        # The row with the bad id is NaN from that position on; the other
        # row is untouched.
        self.assertTrue(np.all(np.isnan(output[1, 2:])))
        self.assertTrue(np.all(np.isfinite(output[0])))
