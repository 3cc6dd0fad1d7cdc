"""The model families the recipes and benchmarks train and time.

`gpt2_causal_lm` is the one GPT-2 baseline of the package (the recipes,
`recipes/ablate.py` and `benchmarks/` all build it here), `rwkv7_causal_lm`
the attention-free peer (the recipes and benchmarks), `sdgm_causal_lm` the
SDGM they are compared with; `build_causal_lm` picks one from a recipe's config.
"""

import inspect

import keras
import keras_hub

from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLM
from keras_sdgm.models.sdgm.sdgm_presets import backbone_presets

# Recipe flags that override the SDGM preset when given (not None).
SDGM_OVERRIDES = (
    "hidden_dim",
    "num_atoms",
    "num_layers",
    "kernel_size",
    "dilation_rates",
    "coefficient_activation",
    "intermediate_dim",
    "residual",
    "num_mixture_components",
    "dictionary_type",
    "encoder_type",
    "modes_per_feature",
    "data_dependent_decay",
    "max_position_offset",
    "dropout",
)
LOSS_WEIGHTS = (
    "nll_weight",
    "reconstruction_weight",
    "stft_weight",
    "prior_weight",
)


def gpt2_causal_lm(
    vocabulary_size,
    num_layers,
    num_heads,
    hidden_dim,
    max_sequence_length,
    intermediate_dim=None,
    dropout=0.0,
    preprocessor=None,
):
    """keras-hub's `GPT2CausalLM`, the baseline SDGM is compared with.

    Args:
        vocabulary_size: int.
        num_layers: int. Transformer layers.
        num_heads: int. Attention heads.
        hidden_dim: int.
        max_sequence_length: int. Its learned positions end here.
        intermediate_dim: feed-forward width; `None` or 0 gives
            `4 * hidden_dim`.
        dropout: float.
        preprocessor: a `CausalLMPreprocessor`, or `None`.
    """
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim or 4 * hidden_dim,
        dropout=dropout,
        max_sequence_length=max_sequence_length,
    )
    return keras_hub.models.GPT2CausalLM(backbone, preprocessor=preprocessor)


def rwkv7_head_size(hidden_dim, num_heads, head_size=None):
    """`head_size`, or `hidden_dim // num_heads`; 0 if it does not divide
    `hidden_dim`."""
    size = head_size or hidden_dim // num_heads
    return size if size >= 1 and hidden_dim % size == 0 else 0


def rwkv7_causal_lm(
    vocabulary_size,
    num_layers,
    hidden_dim,
    head_size,
    intermediate_dim=None,
    dropout=0.0,
    preprocessor=None,
):
    """keras-hub's `RWKV7CausalLM`, the attention-free peer.

    keras-hub's default LoRA widths; its output head is its own (not tied
    to the token embedding, as keras-hub builds it).

    Args:
        vocabulary_size: int.
        num_layers: int.
        hidden_dim: int.
        head_size: int, a divisor of `hidden_dim`.
        intermediate_dim: channel-mix width; `None` or 0 gives
            `4 * hidden_dim` (as GPT-2's feed-forward).
        dropout: float. keras-hub's `dropout_rate`, after every layer.
        preprocessor: a `CausalLMPreprocessor`, or `None`.
    """
    backbone = keras_hub.models.RWKV7Backbone(
        hidden_size=hidden_dim,
        head_size=head_size,
        num_layers=num_layers,
        vocabulary_size=vocabulary_size,
        intermediate_dim=intermediate_dim or 4 * hidden_dim,
        dropout_rate=dropout,
    )
    return keras_hub.models.RWKV7CausalLM(backbone, preprocessor=preprocessor)


def sdgm_causal_lm(
    preset, vocabulary_size, preprocessor=None, loss_weights=None, **overrides
):
    """An `SDGMCausalLM` of the named `preset`.

    Args:
        preset: a name in `SDGMBackbone.presets` (an architecture, or
            a trained preset's architecture: its weights are not loaded).
        vocabulary_size: int.
        preprocessor: an `SDGMCausalLMPreprocessor`, or `None`.
        loss_weights: dict of `SDGMCausalLM`'s loss weights
            (`nll_weight`, ...); `None`: its defaults.
        **overrides: `SDGMBackbone` arguments that replace the preset's;
            those that are `None` keep the preset's.
    """
    backbone = SDGMBackbone.from_preset(
        preset,
        load_weights=False,
        vocabulary_size=vocabulary_size,
        **{k: v for k, v in overrides.items() if v is not None},
    )
    return SDGMCausalLM(
        backbone, preprocessor=preprocessor, **(loss_weights or {})
    )


def sdgm_overrides(args):
    """The `SDGMBackbone` arguments a recipe's config gives over its preset
    (`None`: the preset's)."""
    return {
        "window_length": args.sequence_length,  # the dictionary's L0
        **{name: getattr(args, name) for name in SDGM_OVERRIDES},
    }


def sdgm_architecture(preset, **overrides):
    """The `SDGMBackbone` arguments that `sdgm_causal_lm(preset, ...,
    **overrides)` builds with, but the vocabulary size: the constructor's
    defaults, then the architecture preset's config, then the overrides
    that are not `None`. Recorded with a recipe run, it tells a run made
    before a default changed from one made after, which the flags alone
    do not (a flag left out means the default of its day)."""
    signature = inspect.signature(SDGMBackbone.__init__).parameters
    return {
        **{
            name: parameter.default
            for name, parameter in signature.items()
            if parameter.default is not inspect.Parameter.empty
        },
        **backbone_presets[preset]["config"],
        **{k: v for k, v in overrides.items() if v is not None},
    }


def build_causal_lm(args, preprocessor):
    """An `SDGMCausalLM`, or a same-size keras-hub GPT-2 or RWKV-7.

    All share the vocabulary, window, hidden size and depth; the recipe
    compiles them with the same optimizer. `args` is a recipe's config
    (`keras_sdgm.training.recipe.RecipeConfig`) or anything with its
    attributes.
    """
    vocabulary_size = preprocessor.tokenizer.vocabulary_size()
    if args.model == "rwkv7":
        return rwkv7_causal_lm(
            vocabulary_size,
            num_layers=args.num_layers,
            hidden_dim=args.hidden_dim,
            head_size=rwkv7_head_size(
                args.hidden_dim, args.num_heads, args.rwkv_head_size
            ),
            intermediate_dim=args.intermediate_dim,
            dropout=args.dropout,
            preprocessor=preprocessor,
        )
    if args.model == "gpt2":
        return gpt2_causal_lm(
            vocabulary_size,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            hidden_dim=args.hidden_dim,
            max_sequence_length=args.sequence_length,
            intermediate_dim=args.intermediate_dim,
            dropout=args.dropout,
            preprocessor=preprocessor,
        )
    return sdgm_causal_lm(
        args.preset,
        vocabulary_size,
        preprocessor=preprocessor,
        loss_weights={name: getattr(args, name) for name in LOSS_WEIGHTS},
        **sdgm_overrides(args),
    )


def parameter_counts(lm):
    """Embedding and non-embedding parameter counts (tied output counted once)."""
    embedding = lm.backbone.token_embedding.count_params()
    position = getattr(lm.backbone, "position_embedding", None)
    if position is not None:
        embedding += position.count_params()
    total = sum(int(keras.ops.size(v)) for v in lm.backbone.trainable_variables)
    return {
        "total": total,
        "embedding": embedding,
        "non_embedding": total - embedding,
    }
