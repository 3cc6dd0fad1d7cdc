import numpy as np

from keras_sdgm import datasets
from keras_sdgm.models import SDGMCausalLMPreprocessor
from keras_sdgm.models import SDGMTokenizer
from tests.testing import TestCase


class PipelineTest(TestCase):
    def setUp(self):
        super().setUp()
        self.lines = [" the cat sat ", " ", " the dog ran far "]
        self.tokenizer = SDGMTokenizer(
            SDGMTokenizer.build_vocabulary(self.lines)
        )

    def test_tokenize_corpus_ends_each_line_with_eos(self):
        ids = datasets.tokenize_corpus(self.tokenizer, self.lines)
        words = self.tokenizer.get_vocabulary()
        self.assertEqual(
            " ".join(words[i] for i in ids),
            "the cat sat <eos> <eos> the dog ran far <eos>",
        )

    def test_windows_predict_every_token_once(self):
        ids = np.arange(23, dtype="int32")
        windows = datasets.token_windows(ids, 5)
        self.assertEqual(windows.shape, (4, 6))
        targets = windows[:, 1:].reshape(-1)
        self.assertAllEqual(targets, np.arange(1, 21))

    def test_dataset_feeds_the_preprocessor_shift(self):
        ids = np.arange(40, dtype="int32") % 7
        preprocessor = SDGMCausalLMPreprocessor(
            self.tokenizer, sequence_length=4
        )
        dataset = datasets.language_model_dataset(
            ids, 4, batch_size=3, preprocessor=preprocessor, shuffle=False
        )
        x, y, sample_weight = next(iter(dataset))
        self.assertAllEqual(x["token_ids"][0], ids[0:4])
        self.assertAllEqual(y[0], ids[1:5])
        self.assertAllEqual(x["token_ids"][1], ids[4:8])
        self.assertTrue(np.all(sample_weight))

    def test_drop_remainder_leaves_out_the_smaller_last_batch(self):
        ids = np.arange(40, dtype="int32")  # 9 windows of 4 + 1
        for drop_remainder, sizes in ((False, [4, 4, 1]), (True, [4, 4])):
            dataset = datasets.language_model_dataset(
                ids,
                4,
                batch_size=4,
                shuffle=False,
                drop_remainder=drop_remainder,
            )
            self.assertEqual([len(batch) for batch in dataset], sizes)

    def test_too_short_corpus(self):
        with self.assertRaisesRegex(ValueError, "fewer than one window"):
            datasets.language_model_dataset(np.arange(3), 8, batch_size=2)
