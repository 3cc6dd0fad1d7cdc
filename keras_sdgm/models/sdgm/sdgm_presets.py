"""Named SDGM architectures: configs without trained weights or a
vocabulary (`from_preset(name, load_weights=False, vocabulary_size=...)`).
The trained PTB model is the preset directory
`saved_models/ptb_sdgm_tiny/preset`."""

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
            "kernel_size": 3,
            "dilation_rates": [1],
            "intermediate_dim": 0,
            "residual": False,
        },
    },
    "sdgm_base": {
        "description": (
            "The package default at the paper's size (D=512, K=256, L=128): "
            "two residual blocks, each with a gated spectral mixer (damped "
            "sinusoidal modes that see every past position, at a constant "
            "cost per generated token) and a 4x feed-forward; the "
            "dictionaries are trained at random position offsets up to "
            "three windows (docs/ABLATIONS.md). Architecture only: pass "
            "`load_weights=False` and `vocabulary_size`."
        ),
        "config": {
            "hidden_dim": 512,
            "num_atoms": 256,
            "window_length": 128,
            "num_layers": 2,
            "max_position_offset": 384,
        },
    },
    "sdgm_tiny": {
        "description": (
            "A tiny model for tests and demos (D=64, K=32, L=64, two "
            "blocks with the gated spectral mixer, position offsets up to "
            "three windows). Architecture only: pass `load_weights=False` "
            "and `vocabulary_size`."
        ),
        "config": {
            "hidden_dim": 64,
            "num_atoms": 32,
            "window_length": 64,
            "num_layers": 2,
            "max_position_offset": 192,
        },
    },
}
