import os

import keras
import numpy as np

from keras_sdgm import datasets
from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLM
from keras_sdgm.models import SDGMCausalLMPreprocessor
from keras_sdgm.models import SDGMTokenizer
from tests.conftest import shared_data_dir
from tests.testing import TestCase


class SDGMTokenizerTest(TestCase):
    def setUp(self):
        super().setUp()
        self.vocabulary = SDGMTokenizer.build_vocabulary(
            ["the cat sat on the mat", "a <unk> @-@ cat"]
        )
        self.tokenizer = SDGMTokenizer(self.vocabulary)

    def test_vocabulary_order(self):
        self.assertEqual(self.vocabulary[:4], ["<eos>", "<unk>", "cat", "the"])

    def test_vocabulary_size_cap_and_minimum_count(self):
        lines = ["a a a b b c", "a b d"]
        self.assertEqual(
            SDGMTokenizer.build_vocabulary(lines),
            ["<eos>", "<unk>", "a", "b", "c", "d"],
        )
        self.assertEqual(
            SDGMTokenizer.build_vocabulary(lines, max_size=4),
            ["<eos>", "<unk>", "a", "b"],
        )
        # c and d, seen once each, become <unk>.
        self.assertEqual(
            SDGMTokenizer.build_vocabulary(lines, min_count=2),
            ["<eos>", "<unk>", "a", "b"],
        )
        self.assertEqual(
            SDGMTokenizer.build_vocabulary(lines, max_size=3, min_count=2),
            ["<eos>", "<unk>", "a"],
        )
        for bad in (2, 0, 3.5, True):
            with self.assertRaisesRegex(ValueError, "`max_size`"):
                SDGMTokenizer.build_vocabulary(lines, max_size=bad)
        for bad in (0, -1, 1.5, None):
            with self.assertRaisesRegex(ValueError, "`min_count`"):
                SDGMTokenizer.build_vocabulary(lines, min_count=bad)

    def test_round_trip_and_unknown_words(self):
        ids = self.tokenizer(["the cat sat", "the zebra @-@ sat"])
        self.assertEqual(self.tokenizer.detokenize(ids[0]), "the cat sat")
        unk = self.tokenizer.token_to_id("<unk>")
        self.assertEqual(list(ids[1])[1], unk)
        self.assertEqual(self.tokenizer.detokenize(ids[1]), "the <unk> @-@ sat")

    def test_integer_input_passes_through(self):
        ids = np.array([[3, 4, 5]], "int32")
        self.assertAllEqual(self.tokenizer(ids), ids)

    def test_published_vocabulary_sizes(self):
        for corpus, size in (("ptb", 10000), ("wikitext2", 33278)):
            lines = datasets.load_lines(corpus, "train", shared_data_dir())
            self.assertLen(SDGMTokenizer.build_vocabulary(lines), size)

    def test_serialization(self):
        self.run_serialization_test(self.tokenizer)

    def test_saved_model_tokenizes_identically(self):
        preprocessor = SDGMCausalLMPreprocessor(
            self.tokenizer, sequence_length=6
        )
        backbone = SDGMBackbone(
            vocabulary_size=self.tokenizer.vocabulary_size(),
            hidden_dim=8,
            num_atoms=4,
            window_length=6,
        )
        lm = SDGMCausalLM(backbone, preprocessor=preprocessor)
        path = os.path.join(self.get_temp_dir(), "lm.keras")
        lm.save(path)
        restored = keras.models.load_model(path)
        self.assertEqual(
            restored.preprocessor.tokenizer.get_vocabulary(), self.vocabulary
        )
        text = ["the mat sat on a cat"]
        original_x, _, _ = preprocessor(text)
        restored_x, _, _ = restored.preprocessor(text)
        self.assertAllEqual(original_x["token_ids"], restored_x["token_ids"])
        self.assertAllClose(
            lm.predict(text, verbose=0),
            restored.predict(text, verbose=0),
            atol=1e-6,
        )
