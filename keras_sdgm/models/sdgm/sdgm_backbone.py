import os
import warnings

import keras
from keras import ops
from keras_hub.models import Backbone
from keras_hub.src.utils.python_utils import classproperty

from keras_sdgm.models.sdgm.sdgm_presets import backbone_presets
from keras_sdgm.models.sdgm.sdgm_presets import listed_presets
from keras_sdgm.models.sdgm.sdgm_presets import resolve_trained_preset
from keras_sdgm.models.sdgm.sdgm_presets import trained_presets
from keras_sdgm.models.sdgm.spectral_dictionary_block import EARLIER_DEFAULTS
from keras_sdgm.models.sdgm.spectral_dictionary_block import RENAMED_KEYS
from keras_sdgm.models.sdgm.spectral_dictionary_block import (
    WINDOWED_ENCODER_TYPES,
)
from keras_sdgm.models.sdgm.spectral_dictionary_block import (
    SpectralDictionaryBlock,
)
from keras_sdgm.utils.config_keys import renamed_config
from keras_sdgm.utils.config_keys import with_earlier_defaults
from keras_sdgm.utils.validation import check_token_inputs
from keras_sdgm.utils.validation import require_model_kwargs
from keras_sdgm.utils.validation import require_positive_int


def covering_dilation_rates(kernel_size, window_length):
    """Dilations 1, 2, 4, ... until the receptive field covers the window.

    The receptive field of causal convolutions of width `kernel_size` and
    these dilations, `1 + (kernel_size - 1) * sum(rates)`, is then at least
    `window_length`, so the last position of a window sees the first.
    """
    if kernel_size == 1:
        raise ValueError(
            "`kernel_size=1` sees one position whatever the dilation; pass "
            "`dilation_rates=[1]` explicitly or use `kernel_size >= 2`."
        )
    rates = [1]
    while 1 + (kernel_size - 1) * sum(rates) < window_length:
        rates.append(2 * rates[-1])
    return rates


# XLA's CPU compiler schedules for concurrency by default, which computes
# the recomputed activations early and keeps them: rematerialized blocks
# then save no memory (docs/PERFORMANCE.md, "Long sequences").
XLA_CPU_REMAT_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def warn_if_remat_saves_nothing():
    """Warns where XLA on the CPU would undo `rematerialize_blocks`."""
    if keras.config.backend() not in ("jax", "tensorflow"):
        return
    if not keras.distribution.list_devices()[0].lower().startswith("cpu"):
        return
    if XLA_CPU_REMAT_FLAG in os.environ.get("XLA_FLAGS", ""):
        return
    warnings.warn(
        "`rematerialize_blocks=True` saves no memory on the CPU under XLA's "
        "default scheduler, which keeps the recomputed activations alive. "
        f"Start the process with XLA_FLAGS={XLA_CPU_REMAT_FLAG} (set before "
        f"{keras.config.backend()} starts) for it to take effect.",
        stacklevel=3,
    )


def rematerialized_call(block, hidden, padding_mask):
    """A training call of `block`, recomputed in the backward pass.

    `keras.remat` (JAX's `checkpoint`, TensorFlow's `recompute_grad`,
    torch's `checkpoint`) wraps a pure function of tensors: the block's
    `stateless_call`, with its variables' values as inputs. Its state
    updates (the random generators of dropout and position offsets) come
    out as outputs and are assigned after the call, so the recomputation
    draws the same numbers and no traced value leaves the wrapped function.

    Returns:
        `(hidden, auxiliary_outputs)`, as `block(hidden, padding_mask,
        training=True, return_auxiliary_outputs=True)`.
    """
    trainable = block.trainable_variables
    non_trainable = block.non_trainable_variables

    def forward(hidden, padding_mask, *values):
        outputs, non_trainable_values = block.stateless_call(
            list(values[: len(trainable)]),
            list(values[len(trainable) :]),
            hidden,
            padding_mask=padding_mask,
            training=True,
            return_auxiliary_outputs=True,
        )
        return outputs, non_trainable_values

    # Copies of the states: torch's checkpoint keeps its inputs for the
    # recomputation, and the assignments below change the states in place.
    values = [ops.convert_to_tensor(v) for v in trainable] + [
        ops.copy(v) for v in non_trainable
    ]
    outputs, non_trainable_values = keras.remat(forward)(
        hidden, padding_mask, *values
    )
    for variable, value in zip(non_trainable, non_trainable_values):
        variable.assign(value)
    return outputs


@keras.saving.register_keras_serializable(package="keras_sdgm")
class SDGMBackbone(Backbone):
    """The Spectral Dictionary Generative Model network, without a head.

    Token ids are embedded, passed through `num_layers`
    `SpectralDictionaryBlock`s (a causal coefficient encoder mixing a
    dictionary of learned atoms, at O(K L) cost in the length) and a final
    layer norm. The output is the final hidden states
    `(batch, length, hidden_dim)`; `SDGMCausalLM` turns them into logits
    through the tied token embedding.

    `num_layers=1`, `encoder_type="dilated_convolution"`,
    `dilation_rates=[1]`, `intermediate_dim=0`, `residual=False`,
    `dictionary_type="spectral"` is the paper's single-dictionary model
    (preset `"sdgm_paper"`). The defaults are our extension, chosen by
    training to convergence (docs/ABLATIONS.md): two residual blocks, each
    with its own dictionary, prior and reconstruction terms; a gated
    retention mixer, in which the method's damped sinusoids are the lag
    kernels of a linear attention over every past position (a constant
    cost per generated token); a position-independent dictionary; and a
    feed-forward. The paper's sinusoidal atoms, which depend on the
    position, generalized 21% worse at convergence on PTB.

    With a sinusoidal dictionary, positions are absolute token indices
    divided by `window_length` (the training window). Longer inputs are
    accepted: the atoms are defined at every position, though quality
    beyond the training window is whatever the model learned to
    extrapolate. The retention mixers measure their frequencies in
    cycles per `window_length` too, but see only lags, not positions.

    Args:
        vocabulary_size: int. Number of token ids.
        hidden_dim: int. Embedding and hidden size `D`.
        num_atoms: int. Atoms per dictionary `K`.
        window_length: int. Training window `L0`.
        num_layers: int. Number of blocks.
        encoder_type: str. Each block's token mixer (see
            `SpectralDictionaryBlock`): `"dilated_convolution"`,
            `"depthwise"`, `"gated"`, `"spectral"`, `"gated_spectral"`,
            `"retention"` or `"gated_retention"` (default).
        modes_per_feature: bool. With a spectral mixer, every feature
            drives its own copy of the modes (decoding state `num_atoms *
            hidden_dim` per block instead of `num_atoms`; see
            `SpectralCoefficientEncoder`).
        data_dependent_decay: bool. With a spectral mixer and shared modes,
            each position's features set the modes' decay there (see
            `SpectralCoefficientEncoder`).
        kernel_size: int. Encoder convolution width.
        dilation_rates: list of ints, encoder dilations per block, or
            `None` for 1, 2, 4, ... until the encoder's receptive field
            covers `window_length` positions (`[1]`, one short convolution,
            for the spectral and retention mixers, which see every past
            position).
        coefficient_activation: activation of the coefficients.
        intermediate_dim: int. Feed-forward width per block; 0 for none,
            `None` for `2 * hidden_dim` (as good as 4x after one epoch at
            D=512, and faster; docs/RESULTS.md).
        residual: bool. Residual blocks (True) or the paper's replacement of
            the hidden state by the reconstruction (False).
        num_mixture_components: int. Components of each block's GMM prior.
        dictionary_type: `"static"` (default: a position-independent
            `(num_atoms, hidden_dim)` matrix per block), `"spectral"` (the
            paper's sinusoidal atoms with free frequencies `f[k, d]`: a
            `(K, D)` table of sines per position), `"separable_frequency"`
            (the paper's atoms with one frequency per atom and feature,
            `f[k] + g[d]`, computed as two matrix products; the default
            until the convergence runs of docs/ABLATIONS.md) or
            `"shared_frequency"` (one frequency per atom, one matrix
            product: worse at D=512).
        max_position_offset: int. Train each block's sinusoidal dictionary
            at positions shifted by a random offset in
            `[0, max_position_offset]` (see `SpectralDictionaryBlock`); 0
            with `dictionary_type="static"`.
        dropout: float. Dropout on embeddings and inside the blocks.
        layer_norm_epsilon: float. Epsilon of the layer norms.
        rematerialize_blocks: bool. In training, keep only each block's
            input for the backward pass and recompute the block's
            activations there (`keras.remat`: gradient checkpointing), so
            that the activation memory of the blocks is one block's plus
            one `(batch, length, hidden_dim)` tensor per block, at the cost
            of a second forward pass of the blocks. The result is the same
            (docs/PERFORMANCE.md has what it saves). On the CPU under JAX
            or TensorFlow's XLA it takes effect only with `XLA_FLAGS` set
            to `XLA_CPU_REMAT_FLAG` before the backend starts; without it
            the constructor warns.
        dtype: dtype policy of the model, e.g. `"mixed_bfloat16"`.

    Example:
    >>> backbone = SDGMBackbone(
    ...     vocabulary_size=100, hidden_dim=32, num_atoms=16,
    ...     window_length=64, num_layers=2, dilation_rates=[1, 2, 4])
    >>> hidden = backbone({
    ...     "token_ids": np.ones((2, 64), "int32"),
    ...     "padding_mask": np.ones((2, 64), "int32")})
    >>> hidden.shape
    (2, 64, 32)
    >>> outputs = backbone({
    ...     "token_ids": np.ones((2, 64), "int32"),
    ...     "padding_mask": np.ones((2, 64), "int32")},
    ...     return_auxiliary_outputs=True)
    >>> outputs["auxiliary_outputs"][0]["coefficients"].shape
    (2, 64, 16)
    >>> paper = SDGMBackbone.from_preset(
    ...     "sdgm_paper", load_weights=False, vocabulary_size=10000
    ... )
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        num_atoms,
        window_length,
        num_layers=2,
        encoder_type="gated_retention",
        modes_per_feature=False,
        data_dependent_decay=False,
        kernel_size=3,
        dilation_rates=None,
        coefficient_activation="gelu",
        intermediate_dim=None,
        residual=True,
        num_mixture_components=8,
        dictionary_type="static",
        max_position_offset=0,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        rematerialize_blocks=False,
        dtype=None,
        **kwargs,
    ):
        require_model_kwargs("SDGMBackbone", kwargs, RENAMED_KEYS)
        vocabulary_size = require_positive_int(
            "vocabulary_size", vocabulary_size
        )
        hidden_dim = require_positive_int("hidden_dim", hidden_dim)
        num_layers = require_positive_int("num_layers", num_layers)
        window_length = require_positive_int("window_length", window_length)
        kernel_size = require_positive_int("kernel_size", kernel_size)
        if dilation_rates is None and encoder_type in WINDOWED_ENCODER_TYPES:
            dilation_rates = [1]
        elif dilation_rates is None:
            dilation_rates = covering_dilation_rates(kernel_size, window_length)
        if intermediate_dim is None:
            intermediate_dim = 2 * hidden_dim

        # === Layers ===
        self.token_embedding = keras.layers.ReversibleEmbedding(
            input_dim=vocabulary_size,
            output_dim=hidden_dim,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02),
            dtype=dtype,
            name="token_embedding",
        )
        self.embeddings_dropout = keras.layers.Dropout(
            dropout, dtype=dtype, name="embeddings_dropout"
        )
        self.blocks = [
            SpectralDictionaryBlock(
                num_atoms=num_atoms,
                window_length=window_length,
                encoder_type=encoder_type,
                modes_per_feature=modes_per_feature,
                data_dependent_decay=data_dependent_decay,
                kernel_size=kernel_size,
                dilation_rates=dilation_rates,
                coefficient_activation=coefficient_activation,
                intermediate_dim=intermediate_dim,
                residual=residual,
                num_mixture_components=num_mixture_components,
                dictionary_type=dictionary_type,
                max_position_offset=max_position_offset,
                dropout=dropout,
                layer_norm_epsilon=layer_norm_epsilon,
                dtype=dtype,
                name=f"block_{i}",
            )
            for i in range(num_layers)
        ]
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="layer_norm"
        )

        # === Functional Model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(
            shape=(None,), dtype="int32", name="padding_mask"
        )
        sequence_output = self._forward(token_ids, padding_mask)[
            "sequence_output"
        ]
        super().__init__(
            inputs={"token_ids": token_ids, "padding_mask": padding_mask},
            outputs=sequence_output,
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.hidden_dim = hidden_dim
        self.num_atoms = num_atoms
        self.window_length = window_length
        self.num_layers = num_layers
        self.encoder_type = encoder_type
        self.modes_per_feature = modes_per_feature
        self.data_dependent_decay = data_dependent_decay
        self.kernel_size = kernel_size
        self.dilation_rates = list(dilation_rates)
        self.coefficient_activation = coefficient_activation
        self.intermediate_dim = intermediate_dim
        self.residual = residual
        self.num_mixture_components = num_mixture_components
        self.dictionary_type = dictionary_type
        self.max_position_offset = max_position_offset
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.rematerialize_blocks = bool(rematerialize_blocks)
        if self.rematerialize_blocks:
            warn_if_remat_saves_nothing()

    def embed_tokens(self, token_ids):
        """Embeds ids; an id outside [0, vocabulary_size) gives NaN.

        The explicit NaN makes an invalid id visible in compiled code, where
        `check_token_inputs` cannot see values and the backends differ
        (JAX returns NaN, TensorFlow on GPU zeros, torch raises).
        """
        vocabulary_size = self.token_embedding.input_dim
        in_range = ops.logical_and(
            ops.greater_equal(token_ids, 0),
            ops.less(token_ids, vocabulary_size),
        )
        x = self.token_embedding(ops.clip(token_ids, 0, vocabulary_size - 1))
        return ops.where(in_range[..., None], x, float("nan"))

    def _forward(self, token_ids, padding_mask, training=None):
        """The network: the functional graph and `call` both run this."""
        x = self.embed_tokens(token_ids)
        x = self.embeddings_dropout(x, training=training)
        auxiliary_outputs = []
        for block in self.blocks:
            if training and self.rematerialize_blocks:
                x, block_outputs = rematerialized_call(block, x, padding_mask)
            else:
                x, block_outputs = block(
                    x,
                    padding_mask=padding_mask,
                    training=training,
                    return_auxiliary_outputs=True,
                )
            auxiliary_outputs.append(block_outputs)
        return {
            "sequence_output": self.layer_norm(x),
            "auxiliary_outputs": auxiliary_outputs,
        }

    def call(
        self, inputs, training=None, mask=None, return_auxiliary_outputs=False
    ):
        check_token_inputs(inputs, self.vocabulary_size)
        if not return_auxiliary_outputs:
            return super().call(inputs, training=training, mask=mask)
        return self._forward(
            inputs["token_ids"], inputs["padding_mask"], training=training
        )

    @classproperty
    def presets(cls):
        """The named presets `from_preset` accepts: the architectures
        (`"config"`, no weights) and the trained presets the package ships
        (`"directory"`)."""
        return listed_presets()

    def enable_lora(self, rank, target_layer_names=None):
        """Not supported: raises `ValueError` saying what to do instead.

        keras-hub's LoRA targets attention `query`/`value` layers, which
        SDGM has none of (every weight would be frozen and nothing
        trained), and `save_lora_weights` cannot store the tied token
        embedding.
        """
        raise ValueError(
            "SDGMBackbone does not support LoRA: keras-hub's `enable_lora` "
            "targets attention query/value layers, which SDGM does not "
            "have (every weight would be frozen and nothing trained), and "
            "`save_lora_weights` cannot store the tied token embedding. "
            "Fine-tune all weights, or freeze layers with "
            "`layer.trainable = False`. Received: "
            f"rank={rank!r}, target_layer_names={target_layer_names!r}"
        )

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Builds a backbone from a named preset or a saved preset directory.

        Args:
            preset: one of `SDGMBackbone.presets`: a trained preset the
                package ships (e.g. `"ptb_sdgm_small"`), or an architecture
                (e.g. `"sdgm_base"`: no trained weights and no vocabulary;
                pass `load_weights=False` and `vocabulary_size`); or a path
                or handle that keras-hub's `from_preset` reads (e.g. a
                recipe run's `<output-dir>/preset`).
            load_weights: bool. Load the preset's trained weights; an
                architecture has none, so it needs `False` (a randomly
                initialized model).
            **kwargs: overrides of the preset's config.
        """
        if preset in backbone_presets:
            if load_weights:
                raise ValueError(
                    f"Preset {preset!r} is an architecture without trained "
                    "weights. Pass `load_weights=False` (and "
                    "`vocabulary_size`) for a randomly initialized model to "
                    "train, or load a trained preset: "
                    f"{', '.join(sorted(trained_presets))}, or a recipe "
                    "run's `<output-dir>/preset`."
                )
            config = dict(backbone_presets[preset]["config"])
            config.update(renamed_config(kwargs, RENAMED_KEYS))
            if "vocabulary_size" not in config:
                raise ValueError(
                    f"Preset {preset!r} defines an architecture without a "
                    "vocabulary: pass `vocabulary_size=...` (e.g. 10000 "
                    "for PTB, 33278 for WikiText-2)."
                )
            return cls(**config)
        return super().from_preset(
            resolve_trained_preset(preset),
            load_weights=load_weights,
            **kwargs,
        )

    @classmethod
    def from_config(cls, config):
        return super().from_config(
            with_earlier_defaults(
                renamed_config(config, RENAMED_KEYS), EARLIER_DEFAULTS
            )
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "num_atoms": self.num_atoms,
                "window_length": self.window_length,
                "num_layers": self.num_layers,
                "encoder_type": self.encoder_type,
                "modes_per_feature": self.modes_per_feature,
                "data_dependent_decay": self.data_dependent_decay,
                "kernel_size": self.kernel_size,
                "dilation_rates": self.dilation_rates,
                "coefficient_activation": self.coefficient_activation,
                "intermediate_dim": self.intermediate_dim,
                "residual": self.residual,
                "num_mixture_components": self.num_mixture_components,
                "dictionary_type": self.dictionary_type,
                "max_position_offset": self.max_position_offset,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "rematerialize_blocks": self.rematerialize_blocks,
            }
        )
        return config
