"""A preset directory (`save_to_preset`) through every SDGM class and
through keras-hub's generic `CausalLM`, the trained presets the package
ships by name, and `SDGMCausalLM.score()`."""

import os

import keras_hub
import numpy as np
from keras import ops

from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLM
from keras_sdgm.models import SDGMCausalLMPreprocessor
from keras_sdgm.models import SDGMTokenizer
from tests.fixtures import SMALL_BACKBONE
from tests.fixtures import tiny_inputs
from tests.fixtures import tiny_lm
from tests.fixtures import tiny_preprocessor
from tests.testing import TestCase


class PresetDirectoryTest(TestCase):
    def test_round_trip_through_each_class(self):
        preprocessor = tiny_preprocessor()
        vocabulary_size = preprocessor.tokenizer.vocabulary_size()
        lm = SDGMCausalLM(
            SDGMBackbone(
                **{**SMALL_BACKBONE, "vocabulary_size": vocabulary_size}
            ),
            preprocessor=preprocessor,
        )
        preset = os.path.join(self.get_temp_dir(), "preset")
        lm.save_to_preset(preset)

        tokenizer = SDGMTokenizer.from_preset(preset)
        self.assertIsInstance(
            keras_hub.tokenizers.Tokenizer.from_preset(preset), SDGMTokenizer
        )
        self.assertEqual(
            tokenizer.get_vocabulary(), preprocessor.tokenizer.get_vocabulary()
        )
        loaded_preprocessor = SDGMCausalLMPreprocessor.from_preset(preset)
        self.assertEqual(loaded_preprocessor.sequence_length, 8)
        x = tiny_inputs(batch=2, length=8, vocabulary_size=vocabulary_size)
        expected = ops.convert_to_numpy(lm.logits(x))
        for cls in (SDGMCausalLM, keras_hub.models.CausalLM):
            loaded = cls.from_preset(preset)
            self.assertIsInstance(loaded, SDGMCausalLM)
            self.assertAllClose(
                ops.convert_to_numpy(loaded.logits(x)), expected, atol=0
            )
        backbone = keras_hub.models.Backbone.from_preset(preset)
        self.assertAllClose(
            ops.convert_to_numpy(backbone(x)),
            ops.convert_to_numpy(lm.backbone(x)),
            atol=0,
        )
        # Generation needs nothing but the directory: the vocabulary is in it.
        loaded = keras_hub.models.CausalLM.from_preset(preset)
        text = loaded.generate("the cat", max_length=6)
        self.assertTrue(text.startswith("the cat"))
        self.assertLessEqual(set(text.split()), set(tokenizer.get_vocabulary()))


class TrainedPresetTest(TestCase):
    """`ptb_sdgm_small`, by name. That it gives its release's logits is
    `tests/test_saved_models.py`; that the wheel ships it, test_packaging."""

    def test_each_class_loads_it_by_name(self):
        name = "ptb_sdgm_small"
        for cls in (
            SDGMBackbone,
            SDGMCausalLM,
            SDGMCausalLMPreprocessor,
            SDGMTokenizer,
        ):
            self.assertIn(name, cls.presets, cls.__name__)
            self.assertTrue(
                os.path.isfile(
                    os.path.join(cls.presets[name]["directory"], "config.json")
                )
            )
        tokenizer = SDGMTokenizer.from_preset(name)
        self.assertEqual(tokenizer.vocabulary_size(), 10000)
        preprocessor = SDGMCausalLMPreprocessor.from_preset(
            name, sequence_length=16
        )
        self.assertEqual(preprocessor.sequence_length, 16)
        self.assertEqual(
            preprocessor.tokenizer.get_vocabulary(), tokenizer.get_vocabulary()
        )
        lm = SDGMCausalLM.from_preset(name)
        self.assertIsNotNone(lm.preprocessor)
        backbone = SDGMBackbone.from_preset(name)
        x = tiny_inputs(batch=2, length=16, vocabulary_size=10000)
        self.assertAllClose(
            ops.convert_to_numpy(backbone(x)),
            ops.convert_to_numpy(lm.backbone(x)),
            atol=0,
        )
        # load_weights=False: the preset's architecture, newly initialized.
        untrained = SDGMBackbone.from_preset(name, load_weights=False)
        self.assertEqual(untrained.get_config(), backbone.get_config())
        self.assertNotAllClose(
            ops.convert_to_numpy(untrained(x)),
            ops.convert_to_numpy(backbone(x)),
        )

    def test_architectures_are_not_tokenizers(self):
        self.assertNotIn("sdgm_tiny", SDGMTokenizer.presets)
        for cls in (SDGMTokenizer, SDGMCausalLMPreprocessor):
            with self.assertRaisesRegex(
                ValueError, "architecture without a vocabulary.*ptb_sdgm_small"
            ):
                cls.from_preset("sdgm_tiny")

    def test_an_unknown_name_lists_the_presets(self):
        for cls in (SDGMBackbone, SDGMCausalLM):
            with self.assertRaisesRegex(
                ValueError, "Unknown SDGM preset.*ptb_sdgm_small, sdgm_base"
            ):
                cls.from_preset("ptb_sdgm_huge")


class ScoreTest(TestCase):
    def test_logits_and_loss_match_the_forward_pass(self):
        lm = tiny_lm()
        x = tiny_inputs(batch=2, length=8)
        x["padding_mask"][1, 5:] = 0
        expected = ops.convert_to_numpy(lm(x)).astype("float64")
        logits = lm.score(x["token_ids"], x["padding_mask"])
        self.assertAllClose(ops.convert_to_numpy(logits), expected, atol=1e-5)

        targets = np.roll(x["token_ids"], -1, axis=1)
        loss = lm.score(
            x["token_ids"],
            x["padding_mask"],
            scoring_mode="loss",
            target_ids=targets,
        )
        log_z = np.log(np.exp(expected).sum(-1))
        nll = (
            log_z - np.take_along_axis(expected, targets[..., None], -1)[..., 0]
        )
        self.assertAllClose(ops.convert_to_numpy(loss), nll, atol=1e-5)

    def test_layer_intercept_fn_sees_and_changes_each_layer(self):
        lm = tiny_lm()
        x = tiny_inputs(batch=2, length=8)
        seen = []

        def record(activations, index):
            seen.append((index, tuple(activations.shape)))
            return activations

        lm.score(x["token_ids"], layer_intercept_fn=record)
        self.assertEqual(
            seen, [(-1, (2, 8, 8)), (0, (2, 8, 8)), (1, (2, 8, 8))]
        )

        # Zeroing the last block's output leaves the layer norm's bias.
        def zero_last(activations, index):
            return activations * 0 if index == 1 else activations

        logits = ops.convert_to_numpy(
            lm.score(x["token_ids"], layer_intercept_fn=zero_last)
        )
        self.assertAllClose(logits[0, 0], logits[1, 7], atol=1e-6)
        self.assertNotAllClose(logits, ops.convert_to_numpy(lm(x)))

    def test_invalid_arguments(self):
        lm = tiny_lm()
        ids = tiny_inputs()["token_ids"]
        with self.assertRaisesRegex(ValueError, "scoring_mode"):
            lm.score(ids, scoring_mode="probabilities")
        with self.assertRaisesRegex(ValueError, "target_ids"):
            lm.score(ids, scoring_mode="loss")
        with self.assertRaisesRegex(ValueError, r"`target_ids` must be in"):
            lm.score(ids, scoring_mode="loss", target_ids=ids + 10)
        with self.assertRaisesRegex(ValueError, "shape of `token_ids`"):
            lm.score(ids, scoring_mode="loss", target_ids=ids[:, :1])
        with self.assertRaisesRegex(ValueError, r"`token_ids` must be in"):
            lm.score(ids + 10)
