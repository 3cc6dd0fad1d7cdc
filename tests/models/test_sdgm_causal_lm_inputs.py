"""What `SDGMCausalLM` does with inputs it was not built for (issue 16).

Each check was run against the code before its fix; what that code gave
is in a comment beside it.
"""

import os

import keras
import numpy as np
from keras import ops

from keras_sdgm.models import SDGMCausalLM
from tests.fixtures import tiny_lm
from tests.fixtures import tiny_preprocessor
from tests.fixtures import tiny_tokenizer
from tests.testing import TestCase


def lm_with_preprocessor():
    """A tiny model whose vocabulary is its tokenizer's (11 words)."""
    preprocessor = tiny_preprocessor()
    vocabulary_size = preprocessor.tokenizer.vocabulary_size()
    lm = tiny_lm(
        preprocessor=preprocessor,
        backbone={"vocabulary_size": vocabulary_size},
    )
    lm.compile(sampler="greedy")
    return lm


def model_inputs(batch=5, length=8, high=11, seed=0):
    rng = np.random.RandomState(seed)
    return {
        "token_ids": rng.randint(0, high, (batch, length)).astype("int32"),
        "padding_mask": np.ones((batch, length), "int32"),
    }


class PreprocessedDictTest(TestCase):
    """A `{"token_ids", "padding_mask"}` dict passes the preprocessor."""

    def setUp(self):
        super().setUp()
        self.lm = lm_with_preprocessor()
        # The same network without a preprocessor: what the dict must give.
        self.bare = SDGMCausalLM(self.lm.backbone)
        self.bare.compile(sampler="greedy")
        self.x = model_inputs()

    def test_predict_gives_the_logits_of_the_ids(self):
        # Before: the dict was read as text, shape (1, 8, 11).
        logits = self.lm.predict(self.x, verbose=0)
        self.assertEqual(logits.shape, (5, 8, 11))
        self.assertAllClose(logits, self.bare.predict(self.x, verbose=0))

    def test_evaluate_and_fit_take_the_dict_with_its_labels(self):
        y = np.roll(self.x["token_ids"], -1, axis=1)
        weights = np.ones((5, 8), "float32")
        expected = self.bare.evaluate(
            self.x, y, sample_weight=weights, verbose=0, return_dict=True
        )
        result = self.lm.evaluate(
            self.x, y, sample_weight=weights, verbose=0, return_dict=True
        )
        self.assertAllClose(result["nll"], expected["nll"])
        # One step: its logged loss is that of the weights before the step.
        history = self.lm.fit(
            self.x, y, sample_weight=weights, batch_size=5, verbose=0
        )
        self.assertAllClose(
            history.history["nll"][0], expected["nll"], rtol=1e-5
        )

    def test_generate_from_the_dict_equals_generate_from_text(self):
        prompts = ["the cat", "a dog sat"]
        packed = self.lm.preprocessor.generate_preprocess(
            prompts, sequence_length=8
        )
        packed = {key: np.asarray(value) for key, value in packed.items()}
        # Before: the dict was stringified, one '<unk> <unk> ...' row.
        self.assertEqual(
            self.lm.generate(packed),
            self.lm.generate(prompts, max_length=8),
        )
        with self.assertRaisesRegex(ValueError, "max_length"):
            self.lm.generate(packed, max_length=6)

    def test_the_preprocessor_returns_the_dict_unchanged(self):
        y = self.x["token_ids"]
        x_out, y_out, weights = self.lm.preprocessor(
            self.x, y, sample_weight=self.x["padding_mask"]
        )
        for key in self.x:
            self.assertAllEqual(x_out[key], self.x[key])
        self.assertAllEqual(y_out, y)
        self.assertAllEqual(weights, self.x["padding_mask"])

    def test_bad_dicts_raise_naming_what_is_wrong(self):
        bad_ids = {**self.x, "token_ids": np.full((5, 8), 11, "int32")}
        for call in (
            lambda x: self.lm.predict(x, verbose=0),
            lambda x: self.lm.generate(x),
        ):
            with self.assertRaisesRegex(ValueError, "token_ids.*\\[0, 11\\)"):
                call(bad_ids)
            with self.assertRaisesRegex(ValueError, "keys"):
                call({**self.x, "segment_ids": self.x["token_ids"]})
            with self.assertRaisesRegex(ValueError, "keys"):
                call({"token_ids": self.x["token_ids"]})
        with self.assertRaisesRegex(ValueError, "token_ids.*integer"):
            self.lm.predict(
                {**self.x, "token_ids": self.x["token_ids"] * 1.0}, verbose=0
            )


class ShippedModelTest(TestCase):
    def test_predict_on_a_dict_of_the_shipped_model(self):
        path = os.path.join(
            os.path.dirname(__file__),
            os.pardir,
            os.pardir,
            "saved_models",
            "ptb_sdgm_small",
            "model.keras",
        )
        lm = keras.saving.load_model(path, compile=False)
        x = model_inputs(batch=5, length=64, high=10000)
        # Before: shape (1, 64, 10000), the dict read as one line of text.
        logits = lm.predict(x, verbose=0)
        self.assertEqual(logits.shape, (5, 64, 10000))
        self.assertAllClose(
            logits, ops.convert_to_numpy(lm.logits(x)), atol=1e-4
        )


class GenerateArgumentsTest(TestCase):
    def setUp(self):
        super().setUp()
        self.lm = lm_with_preprocessor()

    def test_max_length_must_be_a_positive_int(self):
        # Before: 0 (and False) was taken as the default length, -1 gave
        # '', 2.5 a TypeError inside keras-hub's StartEndPacker.
        for max_length in (0, -1, 2.5, True, "8"):
            with self.assertRaisesRegex(ValueError, "max_length"):
                self.lm.generate(["the cat"], max_length=max_length)

    def test_no_prompts(self):
        # Before: a ValueError from a `Pad` layer inside the backbone.
        for empty in ([], (), np.zeros((0,), "U1")):
            with self.assertRaisesRegex(ValueError, "`inputs`.*one prompt"):
                self.lm.generate(empty, max_length=8)

    def test_prompts_that_are_neither_text_nor_ids(self):
        # Before: the numbers' digits were tokenized as words ('<unk>').
        for prompts in ([[1, 2]], np.ones((2, 3), "float32"), [None]):
            with self.assertRaisesRegex(TypeError, "`inputs` must be text"):
                self.lm.generate(prompts, max_length=8)

    def test_token_id_prompts_are_checked(self):
        with self.assertRaisesRegex(ValueError, "token_ids.*\\[0, 11\\)"):
            self.lm.generate(np.array([[1, 20]], "int32"), max_length=8)

    def test_a_prompt_of_unknown_words_warns(self):
        # Before: no warning; the model generated from '<unk> <unk>'.
        with self.assertWarnsRegex(UserWarning, "'zebra quux'.*<unk>"):
            output = self.lm.generate(["zebra quux"], max_length=8)
        self.assertTrue(output[0].startswith("<unk> <unk>"))

    def test_a_known_word_does_not_warn(self):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            self.lm.generate(["zebra cat"], max_length=8)

    def test_without_a_preprocessor(self):
        lm = tiny_lm()
        lm.compile(sampler="greedy")
        prompt = {
            "token_ids": np.array([[3, 50, 0, 0, 0, 0, 0, 0]], "int32"),
            "padding_mask": np.array([[1, 1, 0, 0, 0, 0, 0, 0]], "int32"),
        }
        # Before: generated token 0 at every position, no error.
        with self.assertRaisesRegex(ValueError, "token_ids.*\\[0, 10\\)"):
            lm.generate(prompt, stop_token_ids=None)
        prompt["token_ids"][0, 1] = 5
        with self.assertRaisesRegex(ValueError, "max_length"):
            lm.generate(prompt, max_length=4, stop_token_ids=None)
        with self.assertRaisesRegex(ValueError, "padding_mask"):
            lm.generate({"token_ids": prompt["token_ids"]}, stop_token_ids=None)
        with self.assertRaisesRegex(ValueError, "no prompts"):
            lm.generate(
                {k: v[:0] for k, v in prompt.items()}, stop_token_ids=None
            )
        with self.assertRaisesRegex(ValueError, "dict"):
            lm.generate(["the cat"], stop_token_ids=None)
        output = lm.generate(prompt, stop_token_ids=None)
        self.assertAllEqual(output["token_ids"][0, :2], [3, 5])


class TokenizerInputTest(TestCase):
    def test_non_text_raises(self):
        tokenizer = tiny_tokenizer()
        # Before: [[1, 2]] and floats were read as the words '1', '2'.
        for inputs in ([[1, 2]], np.ones((2,), "float32"), [None], [3.5]):
            with self.assertRaisesRegex(TypeError, "`inputs` must be text"):
                tokenizer(inputs)
        self.assertAllEqual(tokenizer(np.array([1, 2], "int32")), [1, 2])


class LoraTest(TestCase):
    # Before: `enable_lora(4)` froze every weight (SDGM has none of
    # keras-hub's default `query`/`value` layers) and trained nothing, with
    # no warning.
    def test_enable_lora_raises_saying_what_is_supported(self):
        backbone = tiny_lm().backbone
        with self.assertRaisesRegex(ValueError, "LoRA"):
            backbone.enable_lora(4)
        self.assertTrue(all(w.trainable for w in backbone.weights))
