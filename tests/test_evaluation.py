from unittest import mock

import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_sdgm import evaluate_perplexity
from keras_sdgm.evaluation import scoring_windows
from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLM
from keras_sdgm.models import SpectralDictionaryBlock
from keras_sdgm.training import model_builders
from tests.fixtures import TINY_BACKBONE
from tests.fixtures import tiny_lm
from tests.fixtures import tiny_preprocessor
from tests.testing import TestCase


def direct_perplexity(lm, token_ids, length, stride):
    """Reference: each prediction from a row holding exactly its context.

    The prediction of token j sees the tokens of the window that scores it
    (SPEC section 6): for non-overlapping windows, those since the window's
    start; for sliding windows, at most `length` tokens. Row j - 1 of one
    batch holds that context, right-padded to `length` (which a causal
    model does not read), and its logits are read at the context's end.
    """
    rows = np.zeros((len(token_ids) - 1, length), "int32")
    mask = np.zeros_like(rows)
    ends = []
    for j in range(1, len(token_ids)):
        if stride == length:
            start = ((j - 1) // length) * length
        else:
            # The one window whose scored targets (the last `stride` of a
            # window, all of them for the first) contain j.
            start = 0
            while start + length < j:
                start += stride
        context = token_ids[start:j]
        rows[j - 1, : len(context)] = context
        mask[j - 1, : len(context)] = 1
        ends.append(len(context) - 1)
    logits = ops.convert_to_numpy(
        lm({"token_ids": rows, "padding_mask": mask})
    ).astype("float64")
    logits = logits[np.arange(len(ends)), ends]
    log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))
    log_z = log_z + logits.max(-1)
    return float(
        np.exp(np.mean(log_z - logits[np.arange(len(ends)), token_ids[1:]]))
    )


def window_6_lm():
    """A tiny model whose default scoring window is 6 positions."""
    return SDGMCausalLM(
        SDGMBackbone(
            **{**TINY_BACKBONE, "vocabulary_size": 12, "window_length": 6}
        )
    )


class EvaluatePerplexityTest(TestCase):
    @parameterized.named_parameters(("non_overlapping", 8), ("sliding", 3))
    def test_scores_every_token_once(self, stride):
        _, _, targets, weights = scoring_windows(np.arange(30), 8, stride)
        scored = targets[weights > 0]
        self.assertAllEqual(np.sort(scored), np.arange(1, 30))

    @parameterized.named_parameters(
        ("non_overlapping", 6, 64),
        ("sliding", 2, 64),
        # Several batches, the last one partial.
        ("sliding_small_batches", 2, 3),
    )
    def test_matches_token_by_token_reference(self, stride, batch_size):
        lm = window_6_lm()
        token_ids = np.random.RandomState(0).randint(0, 12, 23).astype("int32")
        result = evaluate_perplexity(
            lm, token_ids, stride=stride, batch_size=batch_size, verbose=0
        )
        self.assertEqual(result["num_predicted"], 22)
        expected = direct_perplexity(lm, token_ids, 6, stride)
        self.assertAllClose(result["perplexity"], expected, rtol=1e-4)

    @parameterized.named_parameters(
        # keras-hub's GPT-2 is scored through its `score()`, RWKV-7 (which
        # has none) through its logits.
        ("gpt2", "gpt2"),
        ("rwkv7", "rwkv7"),
    )
    def test_baselines_match_the_reference(self, model):
        if model == "gpt2":
            lm = model_builders.gpt2_causal_lm(
                vocabulary_size=12,
                num_layers=1,
                num_heads=2,
                hidden_dim=8,
                max_sequence_length=6,
            )
        else:
            lm = model_builders.rwkv7_causal_lm(
                vocabulary_size=12, num_layers=1, hidden_dim=8, head_size=4
            )
        token_ids = np.random.RandomState(1).randint(0, 12, 23).astype("int32")
        result = evaluate_perplexity(
            lm, token_ids, sequence_length=6, stride=2, verbose=0
        )
        expected = direct_perplexity(lm, token_ids, 6, 2)
        self.assertAllClose(result["perplexity"], expected, rtol=1e-4)

    def test_a_preprocessor_adds_no_pass_and_changes_nothing(self):
        # A keras-hub task tracks its preprocessor, which stays unbuilt when
        # scoring ids; Keras then ran every batch once more, eagerly (under
        # JAX, op by op: 8 passes where 2 do).
        preprocessor = tiny_preprocessor()
        vocabulary_size = preprocessor.tokenizer.vocabulary_size()
        token_ids = np.random.RandomState(0).randint(0, vocabulary_size, 200)
        plain = tiny_lm(backbone={"vocabulary_size": vocabulary_size})
        with_preprocessor = tiny_lm(
            backbone={"vocabulary_size": vocabulary_size},
            preprocessor=preprocessor,
        )
        with_preprocessor.set_weights(plain.get_weights())
        results, passes = [], []
        for lm in (plain, with_preprocessor):
            with mock.patch.object(
                SpectralDictionaryBlock,
                "call",
                autospec=True,
                side_effect=SpectralDictionaryBlock.call,
            ) as call:
                results.append(
                    evaluate_perplexity(lm, token_ids, batch_size=4, verbose=0)
                )
            passes.append(call.call_count)
        self.assertEqual(results[0], results[1])
        # Blocks ran (the count is not vacuous), and no pass more than
        # without it (tracing may differ by one).
        self.assertGreater(passes[0], 0)
        self.assertLessEqual(passes[1], passes[0])

    def test_nll_by_position(self):
        lm = window_6_lm()
        token_ids = np.random.RandomState(2).randint(0, 12, 23).astype("int32")
        result = evaluate_perplexity(
            lm, token_ids, batch_size=3, verbose=0, by_position=True
        )
        # Reference: windows of 6 from 0, 6, 12, 18 (the last predicts 4
        # tokens); position k's NLL in each, from the model's logits.
        nll = [[] for _ in range(6)]
        for start in range(0, 22, 6):
            window = token_ids[start : start + 7]
            logits = ops.convert_to_numpy(
                lm(
                    {
                        "token_ids": window[None, :-1],
                        "padding_mask": np.ones((1, len(window) - 1), "int32"),
                    }
                )
            )[0].astype("float64")
            for k, target in enumerate(window[1:]):
                log_z = np.log(np.exp(logits[k] - logits[k].max()).sum())
                nll[k].append(log_z + logits[k].max() - logits[k, target])
        expected = [np.mean(values) for values in nll]
        self.assertAllClose(result["nll_by_position"], expected, rtol=1e-4)
        counts = [len(values) for values in nll]  # 4, 4, 4, 4, 3, 3
        self.assertAllClose(
            np.dot(result["nll_by_position"], counts) / sum(counts),
            result["nll"],
        )
        self.assertNotIn("nll_by_position", evaluate_perplexity(lm, token_ids))
        # Sliding windows score the first positions in the first window only.
        sliding = evaluate_perplexity(
            lm, token_ids, stride=2, verbose=0, by_position=True
        )
        self.assertFalse(np.isnan(sliding["nll_by_position"]).any())

    def test_invalid_arguments(self):
        lm = window_6_lm()
        with self.assertRaisesRegex(ValueError, "by_position"):
            evaluate_perplexity(lm, np.arange(10), by_position="yes")
        with self.assertRaisesRegex(ValueError, "stride"):
            evaluate_perplexity(lm, np.arange(10), stride=7)
        with self.assertRaisesRegex(ValueError, "preprocessor"):
            evaluate_perplexity(lm, ["some text"])
