import numpy as np

from keras_sdgm.models import SDGMCausalLMPreprocessor
from tests.fixtures import tiny_tokenizer
from tests.testing import TestCase


class SDGMCausalLMPreprocessorTest(TestCase):
    def setUp(self):
        super().setUp()
        self.tokenizer = tiny_tokenizer()
        self.init_kwargs = {"tokenizer": self.tokenizer, "sequence_length": 6}

    def test_preprocessor_basics(self):
        ids = list(np.asarray(self.tokenizer("the cat sat")))
        self.assertLen(ids, 3)
        eos = self.tokenizer.end_token_id
        self.run_preprocessing_layer_test(
            cls=SDGMCausalLMPreprocessor,
            init_kwargs=self.init_kwargs,
            input_data=["the cat sat"],
            # Packed to 7 ids and shifted by one: x = ids[:-1], y = ids[1:],
            # sample_weight = mask[1:]; padding is <eos>, masked out.
            expected_output=(
                {
                    "token_ids": [ids + [eos] * 3],
                    "padding_mask": [[1, 1, 1, 0, 0, 0]],
                },
                [ids[1:] + [eos] * 4],
                [[1, 1, 0, 0, 0, 0]],
            ),
        )

    def test_token_windows_are_only_shifted(self):
        preprocessor = SDGMCausalLMPreprocessor(**self.init_kwargs)
        windows = np.arange(14, dtype="int32").reshape(2, 7) % 9
        x, y, sample_weight = preprocessor(windows)
        self.assertAllEqual(x["token_ids"], windows[:, :-1])
        self.assertAllEqual(y, windows[:, 1:])
        self.assertAllEqual(sample_weight, np.ones((2, 6)))
