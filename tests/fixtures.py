"""The tiny configs and inputs every model test shares."""

import numpy as np

from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLM
from keras_sdgm.models import SDGMCausalLMPreprocessor
from keras_sdgm.models import SDGMTokenizer
from tests.conftest import shared_data_dir

TINY_BACKBONE = {
    "vocabulary_size": 10,
    "hidden_dim": 8,
    "num_atoms": 4,
    "window_length": 8,
    "num_layers": 2,
    "intermediate_dim": 16,
    "num_mixture_components": 2,
}
# Wide enough for generation and export tests whose argmax must vary: a
# window of 16 so that generation runs past it.
SMALL_BACKBONE = {
    "vocabulary_size": 50,
    "hidden_dim": 16,
    "num_atoms": 8,
    "window_length": 16,
    "num_layers": 2,
    "intermediate_dim": 32,
}
# Every auxiliary term on, at distinct weights.
ALL_TERMS = {
    "reconstruction_weight": 0.5,
    "stft_weight": 0.25,
    "prior_weight": 0.01,
}
TINY_TEXT = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog",
]


def tiny_inputs(batch=2, length=8, vocabulary_size=10, seed=0):
    """Random `{"token_ids", "padding_mask"}` with every position real."""
    rng = np.random.RandomState(seed)
    return {
        "token_ids": rng.randint(0, vocabulary_size, (batch, length)).astype(
            "int32"
        ),
        "padding_mask": np.ones((batch, length), "int32"),
    }


def lm_batch(batch=4, length=8, vocabulary_size=10, seed=0):
    """`(x, y, sample_weight)` of random next-token windows."""
    rng = np.random.RandomState(seed)
    tokens = rng.randint(0, vocabulary_size, (batch, length + 1))
    x = {
        "token_ids": tokens[:, :-1].astype("int32"),
        "padding_mask": np.ones((batch, length), "int32"),
    }
    return x, tokens[:, 1:].astype("int32"), np.ones((batch, length), "float32")


def tiny_lm(**kwargs):
    """An `SDGMCausalLM` on `TINY_BACKBONE`; `backbone={...}` overrides it."""
    backbone = SDGMBackbone(**{**TINY_BACKBONE, **kwargs.pop("backbone", {})})
    return SDGMCausalLM(backbone, **kwargs)


def tiny_tokenizer():
    """An `SDGMTokenizer` over `TINY_TEXT`."""
    return SDGMTokenizer(SDGMTokenizer.build_vocabulary(TINY_TEXT))


def tiny_preprocessor(sequence_length=8):
    return SDGMCausalLMPreprocessor(
        tiny_tokenizer(), sequence_length=sequence_length
    )


# The recipes' tiny run: a one-block model and a window of 32.
RECIPE_TINY = [
    "--hidden-dim",
    "16",
    "--sequence-length",
    "32",
    "--num-layers",
    "1",
    "--batch-size",
    "64",
]
# The tiny size's flags that only some models read (the recipe refuses
# them for the others): SDGM's atoms, the baselines' heads.
MODEL_TINY = {
    "sdgm": ["--num-atoms", "8"],
    "gpt2": ["--model", "gpt2", "--num-heads", "2"],
    "rwkv7": ["--model", "rwkv7", "--num-heads", "2"],
}
# Validation and test on the first 4,096 tokens of each split: what the
# tiny runs check does not depend on the splits' size.
EVAL_SUBSET = ["--eval-tokens", "4096"]


def recipe_args(output_dir, *extra, model="sdgm", whole_splits=False):
    """The flags of a tiny, quiet recipe run of `model` on the shared PTB
    into `output_dir`; `extra` flags last."""
    return (
        RECIPE_TINY
        + MODEL_TINY[model]
        + ([] if whole_splits else EVAL_SUBSET)
        + [
            "--data-dir",
            shared_data_dir(),
            "--output-dir",
            output_dir,
            "--verbose",
            "0",
            *extra,
        ]
    )
