"""The two model families a recipe trains, built from the same arguments."""

import keras
import keras_hub

from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLM


def build_causal_lm(args, preprocessor):
    """An `SDGMCausalLM` or a same-size keras-hub `GPT2CausalLM`.

    Both share the vocabulary, window, hidden size and depth; the recipe
    compiles both with the same optimizer.
    """
    vocabulary_size = preprocessor.tokenizer.vocabulary_size()
    if args.model == "gpt2":
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=vocabulary_size,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            hidden_dim=args.hidden_dim,
            intermediate_dim=args.intermediate_dim or 4 * args.hidden_dim,
            dropout=args.dropout,
            max_sequence_length=args.sequence_length,
        )
        return keras_hub.models.GPT2CausalLM(backbone, preprocessor=preprocessor)
    backbone = SDGMBackbone.from_preset(
        args.preset,
        vocabulary_size=vocabulary_size,
        hidden_dim=args.hidden_dim,
        num_atoms=args.num_atoms,
        sequence_length=args.sequence_length,
        num_layers=args.num_layers,
        **{
            name: getattr(args, name)
            for name in (
                "kernel_size",
                "dilation_rates",
                "coefficient_activation",
                "intermediate_dim",
                "residual",
                "num_mixture_components",
                "dictionary",
                "max_position_offset",
                "dropout",
            )
            if getattr(args, name) is not None
        },
    )
    return SDGMCausalLM(
        backbone,
        preprocessor=preprocessor,
        nll_weight=args.nll_weight,
        reconstruction_weight=args.reconstruction_weight,
        stft_weight=args.stft_weight,
        prior_weight=args.prior_weight,
    )


def parameter_counts(lm):
    """Embedding and non-embedding parameter counts (tied output counted once)."""
    embedding = lm.backbone.token_embedding.count_params()
    position = getattr(lm.backbone, "position_embedding", None)
    if position is not None:
        embedding += position.count_params()
    total = sum(
        int(keras.ops.size(v)) for v in lm.backbone.trainable_variables
    )
    return {
        "total": total,
        "embedding": embedding,
        "non_embedding": total - embedding,
    }
