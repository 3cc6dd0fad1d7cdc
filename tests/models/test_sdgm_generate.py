import os

import keras
import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLM
from keras_sdgm.models import SDGMCausalLMPreprocessor
from keras_sdgm.models import SDGMTokenizer
from tests.fixtures import SMALL_BACKBONE
from tests.testing import TestCase

VOCABULARY_SIZE = SMALL_BACKBONE["vocabulary_size"]


def random_lm(preprocessor=None, sampler="greedy", **backbone_kwargs):
    """A tiny untrained model whose argmax is not constant.

    Two blocks, a window of 16 so that generation runs past it, and the
    separable-frequency dictionary with its amplitudes scaled up, unless
    `backbone_kwargs` say otherwise. Its atoms depend on the position, so
    the argmax varies along a generation (and a cache at the wrong position
    shows). With the default static dictionary an untrained model's greedy
    generation falls into loops of 2-4 tokens under some mixers and
    backends: it is checked by the logits of `call_with_cache` instead.
    """
    backbone = SDGMBackbone(
        **{
            **SMALL_BACKBONE,
            "dictionary_type": "separable_frequency",
            **backbone_kwargs,
        }
    )
    for block in backbone.blocks:
        scale = (
            block.dictionary.kernel
            if block.dictionary_type == "static"
            else block.dictionary.amplitude
        )
        scale.assign(scale * 20.0)
    lm = SDGMCausalLM(backbone, preprocessor=preprocessor)
    lm.compile(sampler=sampler)
    return lm


def left_aligned_prompts(lengths, max_length, seed=0):
    rng = np.random.default_rng(seed)
    token_ids = np.zeros((len(lengths), max_length), "int32")
    padding_mask = np.zeros((len(lengths), max_length), bool)
    for row, length in enumerate(lengths):
        token_ids[row, :length] = rng.integers(1, VOCABULARY_SIZE, length)
        padding_mask[row, :length] = True
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def uncached_greedy(lm, prompts, lengths):
    """Argmax continuation from a full forward pass at every step.

    Each step runs the whole `max_length` sequence (later positions hold
    placeholders, which a causal model does not read) and takes the argmax
    at the last filled position of every row still generating.
    """
    token_ids = prompts["token_ids"].copy()
    padding_mask = np.ones_like(token_ids)
    for t in range(min(lengths), token_ids.shape[1]):
        logits = ops.convert_to_numpy(
            lm.predict_on_batch(
                {"token_ids": token_ids, "padding_mask": padding_mask}
            )
        )
        for row, length in enumerate(lengths):
            if t >= length:
                token_ids[row, t] = int(np.argmax(logits[row, t - 1]))
    return token_ids


# Every token mixer with the separable-frequency dictionary (`random_lm`),
# and every other sinusoidal dictionary, whose atoms depend on the
# position, with the gated spectral mixer.
BLOCK_TYPES = [
    ("dilated_convolution", {"encoder_type": "dilated_convolution"}),
    ("depthwise", {"encoder_type": "depthwise"}),
    ("gated", {"encoder_type": "gated"}),
    ("spectral", {"encoder_type": "spectral"}),
    ("gated_spectral", {"encoder_type": "gated_spectral"}),
    (
        "gated_spectral_modes_per_feature",
        {"encoder_type": "gated_spectral", "modes_per_feature": True},
    ),
    (
        "gated_spectral_data_dependent_decay",
        {"encoder_type": "gated_spectral", "data_dependent_decay": True},
    ),
    ("retention", {"encoder_type": "retention"}),
    ("gated_retention", {"encoder_type": "gated_retention"}),
    (
        "gated_spectral_shared_frequency_dictionary",
        {
            "encoder_type": "gated_spectral",
            "dictionary_type": "shared_frequency",
        },
    ),
    (
        "gated_spectral_spectral_dictionary",
        {"encoder_type": "gated_spectral", "dictionary_type": "spectral"},
    ),
]
# And the default model: the gated retention mixer, the static dictionary.
LOGIT_BLOCK_TYPES = BLOCK_TYPES + [
    (
        "default",
        {"encoder_type": "gated_retention", "dictionary_type": "static"},
    )
]


class SDGMGenerateTest(TestCase):
    @parameterized.named_parameters(BLOCK_TYPES)
    def test_greedy_cached_generation_equals_full_forward(self, block_kwargs):
        keras.utils.set_random_seed(1)
        lm = random_lm(**block_kwargs)
        # Ragged prompts; 64+ generated tokens, far past the window of 16.
        lengths = [3, 8]
        prompts = left_aligned_prompts(lengths, max_length=72)
        outputs = lm.generate(prompts, max_length=72, stop_token_ids=None)
        expected = uncached_greedy(lm, prompts, lengths)
        self.assertAllEqual(outputs["token_ids"], expected)
        self.assertTrue(np.all(ops.convert_to_numpy(outputs["padding_mask"])))
        # The argmax is not constant, so the comparison is not trivial.
        self.assertGreater(len(np.unique(expected[:, 8:])), 5)

    # Every mixer at 4,000 and 16,000 (SPEC section 8), from one full pass.
    @parameterized.named_parameters(LOGIT_BLOCK_TYPES)
    def test_cached_logits_equal_full_logits(self, block_kwargs):
        keras.utils.set_random_seed(2)
        lm = random_lm(**block_kwargs)
        steps = 4
        token_ids = (
            np.random.default_rng(0)
            .integers(0, VOCABULARY_SIZE, (2, 16000 + steps))
            .astype("int32")
        )
        padding_mask = np.ones_like(token_ids)
        full = ops.convert_to_numpy(
            lm({"token_ids": token_ids, "padding_mask": padding_mask})
        )
        for position in (40, 4000, 16000):
            # The prompt up to the position is all the cache may read.
            _, cache = lm._build_cache(
                token_ids[:, :position], padding_mask[:, :position], position
            )
            for t in range(position, position + steps):
                logits, _, cache = lm.call_with_cache(
                    token_ids[:, t : t + 1], cache, t
                )
                self.assertAllClose(logits[:, 0], full[:, t], atol=1e-4, rtol=0)

    def test_cache_size_does_not_grow_with_context(self):
        lm = random_lm()
        short = left_aligned_prompts([10], max_length=10)
        long = left_aligned_prompts([1000], max_length=1000)
        _, short_cache = lm._build_cache(
            short["token_ids"], short["padding_mask"], 9
        )
        _, long_cache = lm._build_cache(
            long["token_ids"], long["padding_mask"], 999
        )
        short_shapes = [tuple(s.shape) for b in short_cache for s in b]
        long_shapes = [tuple(s.shape) for b in long_cache for s in b]
        self.assertEqual(short_shapes, long_shapes)

    def test_stop_token_ends_each_row(self):
        keras.utils.set_random_seed(1)
        lm = random_lm()
        prompts = left_aligned_prompts([3, 5], max_length=30)
        free = ops.convert_to_numpy(
            lm.generate(prompts, max_length=30, stop_token_ids=None)[
                "token_ids"
            ]
        )
        stop = int(free[0, 6])  # a token row 0 generates after its prompt
        outputs = lm.generate(prompts, max_length=30, stop_token_ids=(stop,))
        token_ids = ops.convert_to_numpy(outputs["token_ids"])
        padding_mask = ops.convert_to_numpy(outputs["padding_mask"])
        for row, length in enumerate([3, 5]):
            generated = list(free[row, length:])
            if stop not in generated:
                self.assertTrue(np.all(padding_mask[row]))
                continue
            end = length + generated.index(stop)
            self.assertAllEqual(token_ids[row, : end + 1], free[row, : end + 1])
            self.assertTrue(np.all(padding_mask[row, : end + 1]))
            self.assertFalse(np.any(padding_mask[row, end + 1 :]))

    @parameterized.named_parameters(
        ("top_k", "top_k"),
        ("top_p", "top_p"),
        ("random", "random"),
        ("beam", "beam"),
    )
    def test_samplers_run_with_the_cache(self, sampler):
        keras.utils.set_random_seed(3)
        lm = random_lm(sampler=sampler)
        prompts = left_aligned_prompts([2, 4], max_length=20)
        outputs = ops.convert_to_numpy(
            lm.generate(prompts, max_length=20, stop_token_ids=None)[
                "token_ids"
            ]
        )
        self.assertAllEqual(outputs[0, :2], prompts["token_ids"][0, :2])
        self.assertAllEqual(outputs[1, :4], prompts["token_ids"][1, :4])
        self.assertTrue(np.all((outputs >= 0) & (outputs < VOCABULARY_SIZE)))

    def test_generate_from_strings_and_after_reload(self):
        keras.utils.set_random_seed(4)
        words = "the cat sat on a mat and the dog ran to the park".split()
        tokenizer = SDGMTokenizer(
            SDGMTokenizer.build_vocabulary([" ".join(words)])
        )
        preprocessor = SDGMCausalLMPreprocessor(tokenizer, sequence_length=16)
        backbone = SDGMBackbone(
            vocabulary_size=tokenizer.vocabulary_size(),
            hidden_dim=16,
            num_atoms=8,
            window_length=16,
            num_layers=1,
        )
        lm = SDGMCausalLM(backbone, preprocessor=preprocessor)
        lm.compile(sampler="greedy")
        prompts = ["the cat", "a dog ran to"]
        texts = lm.generate(prompts, max_length=12)
        self.assertEqual(len(texts), 2)
        continued = 0
        for prompt, text in zip(prompts, texts):
            # Generation stops at `<eos>`, which is also the pad id of the
            # positions to fill: it must stop only where the model itself
            # picks `<eos>`, so after the prompt exactly when its greedy
            # first token is `<eos>` (an untrained model may pick it).
            inputs = preprocessor.generate_preprocess([prompt], 12)
            length = int(np.sum(ops.convert_to_numpy(inputs["padding_mask"])))
            ids = ops.convert_to_numpy(inputs["token_ids"])[:, :length]
            logits = lm.logits(
                {"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}
            )
            first = np.argmax(ops.convert_to_numpy(logits)[0, -1])
            if first == tokenizer.end_token_id:
                self.assertEqual(text, prompt)
            else:
                self.assertTrue(text.startswith(prompt + " "), text)
                continued += 1
            self.assertTrue(
                set(text.split()) <= set(tokenizer.get_vocabulary())
            )
        # At least one prompt exercises the stop after generated tokens.
        self.assertGreater(continued, 0)

        path = os.path.join(self.get_temp_dir(), "lm.keras")
        lm.save(path)
        restored = keras.saving.load_model(path)
        restored.compile(sampler="greedy")
        self.assertEqual(restored.generate(prompts, max_length=12), texts)


class CoefficientSamplingTest(TestCase):
    def generate(self, lm, prompts, mode, seed):
        lm.compile(
            sampler="greedy", coefficient_sampling=mode, coefficient_seed=seed
        )
        return ops.convert_to_numpy(
            lm.generate(prompts, max_length=24, stop_token_ids=None)[
                "token_ids"
            ]
        )

    def test_prior_mode_ignores_the_context_in_the_paper_model(self):
        keras.utils.set_random_seed(5)
        # One non-residual block, no feed-forward: the next token depends
        # on the mixing coefficients (and the position) only.
        backbone = SDGMBackbone(
            vocabulary_size=VOCABULARY_SIZE,
            hidden_dim=16,
            num_atoms=8,
            window_length=16,
            num_layers=1,
            dilation_rates=[1],
            intermediate_dim=0,
            residual=False,
        )
        lm = SDGMCausalLM(backbone)
        prompts_a = left_aligned_prompts([4, 4], max_length=24, seed=0)
        prompts_b = left_aligned_prompts([4, 4], max_length=24, seed=1)
        prior_a = self.generate(lm, prompts_a, "prior", seed=7)
        prior_b = self.generate(lm, prompts_b, "prior", seed=7)
        self.assertAllEqual(prior_a[:, 4:], prior_b[:, 4:])
        encoder_a = self.generate(lm, prompts_a, "encoder", seed=7)
        encoder_b = self.generate(lm, prompts_b, "encoder", seed=7)
        self.assertNotAllEqual(encoder_a[:, 4:], encoder_b[:, 4:])

    @parameterized.named_parameters(
        ("prior", "prior"), ("posterior", "posterior")
    )
    def test_sampling_modes_are_reproducible_with_a_seed(self, mode):
        keras.utils.set_random_seed(6)
        lm = random_lm()
        prompts = left_aligned_prompts([3, 6], max_length=24)
        first = self.generate(lm, prompts, mode, seed=1)
        again = self.generate(lm, prompts, mode, seed=1)
        other = self.generate(lm, prompts, mode, seed=2)
        encoder = self.generate(lm, prompts, "encoder", seed=1)
        self.assertAllEqual(first, again)
        self.assertNotAllEqual(first, other)
        self.assertNotAllEqual(first, encoder)
        self.assertAllEqual(first[1, :6], prompts["token_ids"][1, :6])

    def test_invalid_mode(self):
        lm = random_lm()
        with self.assertRaisesRegex(ValueError, "coefficient_sampling"):
            lm.compile(coefficient_sampling="gmm")
