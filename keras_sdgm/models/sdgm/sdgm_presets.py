"""Named SDGM presets.

`backbone_presets` are architectures: configs without trained weights or a
vocabulary (`from_preset(name, load_weights=False, vocabulary_size=...)`).
`trained_presets` are keras-hub preset directories shipped in the package
(`keras_sdgm/presets/`): config, trained weights and vocabulary.
"""

import copy
import os

from keras_hub.src.utils.python_utils import classproperty

import keras_sdgm.presets

backbone_presets = {
    "sdgm_paper": {
        "description": (
            "The paper's model: one dictionary (D=512, K=256, L=128) whose "
            "reconstruction replaces the embedding, coefficients from one "
            "kernel-3 causal convolution, no feed-forward. Architecture "
            "only: pass `load_weights=False` and `vocabulary_size`."
        ),
        "config": {
            "hidden_dim": 512,
            "num_atoms": 256,
            "window_length": 128,
            "num_layers": 1,
            "encoder_type": "dilated_convolution",
            "dictionary_type": "spectral",
            "kernel_size": 3,
            "dilation_rates": [1],
            "intermediate_dim": 0,
            "residual": False,
        },
    },
    "sdgm_base": {
        "description": (
            "The package default at the paper's width and window (D=512, "
            "L=128) with half its atoms (K=128): two residual blocks, each "
            "with a gated retention mixer (a linear attention over every "
            "past position whose lag kernels are damped sinusoids, at a "
            "constant cost per generated token), a position-independent "
            "dictionary and a 2x feed-forward (chosen at convergence, "
            "docs/ABLATIONS.md). Architecture only: pass "
            "`load_weights=False` and `vocabulary_size`."
        ),
        "config": {
            "hidden_dim": 512,
            "num_atoms": 128,
            "window_length": 128,
            "num_layers": 2,
        },
    },
    "sdgm_tiny": {
        "description": (
            "A tiny model for tests and demos (D=64, K=16, L=64, two "
            "blocks with the gated retention mixer (one head), the "
            "position-independent dictionary and a 2x feed-forward). "
            "Architecture only: pass `load_weights=False` "
            "and `vocabulary_size`."
        ),
        "config": {
            "hidden_dim": 64,
            "num_atoms": 16,
            "window_length": 64,
            "num_layers": 2,
        },
    },
}

trained_presets = {
    "ptb_sdgm_small": {
        "description": (
            "A small SDGM (D=256, K=128, L=128: `sdgm_base`, the gated "
            "retention mixer and the static dictionary, at half its width; "
            "3.75M parameters, 2.56M of them the embedding) trained on Penn "
            "Treebank for 10 epochs with dropout 0.1 and weight decay 0.1 "
            "(its best validation perplexity at epoch 8), with its "
            "10,000-word vocabulary: ready to `generate`. Test perplexity "
            "102.4 in windows of 128. "
            "The command that trained it, its perplexities under both "
            "protocols and its TF Serving export are in "
            "`saved_models/ptb_sdgm_small/` of the repository."
        ),
        "directory": "ptb_sdgm_small",
    },
}


def trained_preset_directory(name):
    """The package directory that holds the trained preset `name`."""
    return os.path.join(
        os.path.dirname(keras_sdgm.presets.__file__),
        trained_presets[name]["directory"],
    )


def listed_presets(architectures=True):
    """The named presets, as the classes' `presets` show them.

    Args:
        architectures: bool. Include the architecture-only presets (the
            tokenizer and preprocessor need a vocabulary, which only the
            trained presets have).
    """
    listed = {
        name: {**preset, "directory": trained_preset_directory(name)}
        for name, preset in trained_presets.items()
    }
    if architectures:
        listed.update(copy.deepcopy(backbone_presets))
    return listed


def resolve_trained_preset(preset, architectures=True):
    """`preset`, or the directory of the trained preset it names.

    Args:
        preset: what a `from_preset` received.
        architectures: bool. Whether the caller builds architecture-only
            presets itself; if not, naming one raises a `ValueError`
            saying that it has no vocabulary.

    Raises:
        ValueError: `preset` is neither a known name, a directory nor a
            handle (`scheme://...`); the message lists the known names.
    """
    if preset in trained_presets:
        return trained_preset_directory(preset)
    if preset in backbone_presets:
        if architectures:
            return preset
        raise ValueError(
            f"Preset {preset!r} is an architecture without a vocabulary or "
            "trained weights. Pass a trained preset "
            f"({', '.join(sorted(trained_presets))}) or a preset directory "
            "saved with `save_to_preset()` (a recipe run's "
            "`<output-dir>/preset`); or build an `SDGMTokenizer` from a "
            "vocabulary (`SDGMTokenizer.build_vocabulary`)."
        )
    if not os.path.isdir(str(preset)) and "://" not in str(preset):
        known = listed_presets(architectures)
        raise ValueError(
            f"Unknown SDGM preset {preset!r}. Known presets: "
            f"{', '.join(sorted(known))}; or pass a preset directory saved "
            "with `save_to_preset()`, or a keras-hub handle (`kaggle://`, "
            "`hf://`)."
        )
    return preset


class TrainedPresetsMixin:
    """`presets` and `from_preset` by trained preset name, for the classes
    that need a vocabulary (`SDGMTokenizer`, `SDGMCausalLMPreprocessor`)."""

    @classproperty
    def presets(cls):
        """The trained presets the package ships (they have a vocabulary)."""
        return listed_presets(architectures=False)

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """Loads from a trained preset or a preset directory.

        Args:
            preset: one of `cls.presets` (e.g. `"ptb_sdgm_small"`), or a
                path or handle that keras-hub's `from_preset` reads. An
                architecture-only preset has no vocabulary: it raises
                `ValueError`.
            **kwargs: keras-hub's `from_preset` arguments (`config_file`)
                and overrides of the saved config (e.g. `sequence_length`).
        """
        return super().from_preset(
            resolve_trained_preset(preset, architectures=False), **kwargs
        )
