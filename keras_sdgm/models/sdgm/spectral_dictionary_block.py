import keras
from keras import ops

from keras_sdgm.layers.coefficient_encoder import CoefficientEncoder
from keras_sdgm.layers.depthwise_coefficient_encoder import (
    DepthwiseCoefficientEncoder,
)
from keras_sdgm.layers.gated_coefficient_encoder import GatedCoefficientEncoder
from keras_sdgm.layers.gated_retention_coefficient_encoder import (
    GatedRetentionCoefficientEncoder,
)
from keras_sdgm.layers.gated_spectral_coefficient_encoder import (
    GatedSpectralCoefficientEncoder,
)
from keras_sdgm.layers.gaussian_mixture_prior import GaussianMixturePrior
from keras_sdgm.layers.retention_coefficient_encoder import (
    RetentionCoefficientEncoder,
)
from keras_sdgm.layers.separable_frequency_dictionary import (
    SeparableFrequencyDictionary,
)
from keras_sdgm.layers.shared_frequency_dictionary import (
    SharedFrequencyDictionary,
)
from keras_sdgm.layers.spectral_coefficient_encoder import (
    SpectralCoefficientEncoder,
)
from keras_sdgm.layers.spectral_coefficient_encoder import require_mode_options
from keras_sdgm.layers.spectral_dictionary import SpectralDictionary
from keras_sdgm.layers.static_dictionary import StaticDictionary
from keras_sdgm.utils.config_keys import renamed_config
from keras_sdgm.utils.config_keys import with_earlier_defaults
from keras_sdgm.utils.initializers import clone_initializer
from keras_sdgm.utils.rows import apply_to_rows
from keras_sdgm.utils.validation import require_non_negative_float
from keras_sdgm.utils.validation import require_one_of
from keras_sdgm.utils.validation import require_positive_int

# The token mixers by `encoder_type`: each a `CausalMixer` with the same
# constructor (the spectral one also takes the window), call signature and
# cache interface.
ENCODERS = {
    "dilated_convolution": CoefficientEncoder,
    "depthwise": DepthwiseCoefficientEncoder,
    "gated": GatedCoefficientEncoder,
    "spectral": SpectralCoefficientEncoder,
    "gated_spectral": GatedSpectralCoefficientEncoder,
    "retention": RetentionCoefficientEncoder,
    "gated_retention": GatedRetentionCoefficientEncoder,
}
ENCODER_TYPES = tuple(ENCODERS)
# The mixers with damped sinusoidal modes, whose options
# `modes_per_feature` and `data_dependent_decay` set how the modes work.
SPECTRAL_ENCODER_TYPES = tuple(
    name
    for name, encoder in ENCODERS.items()
    if issubclass(encoder, SpectralCoefficientEncoder)
)
# The mixers that see every past position: they take the window (the unit of
# their frequencies) and need no dilations.
WINDOWED_ENCODER_TYPES = tuple(
    name
    for name, encoder in ENCODERS.items()
    if issubclass(
        encoder, (SpectralCoefficientEncoder, RetentionCoefficientEncoder)
    )
)
# The dictionaries by `dictionary_type`, each taking `(C, start_index=0)`;
# all but the static one have sinusoidal atoms and take the window.
DICTIONARIES = {
    "spectral": SpectralDictionary,
    "separable_frequency": SeparableFrequencyDictionary,
    "shared_frequency": SharedFrequencyDictionary,
    "static": StaticDictionary,
}
DICTIONARY_TYPES = tuple(DICTIONARIES)
SINUSOIDAL_DICTIONARY_TYPES = tuple(
    name for name in DICTIONARY_TYPES if name != "static"
)
# Arguments renamed since earlier releases, whose saved configs still load:
# old key -> argument (the block's and `SDGMBackbone`'s).
RENAMED_KEYS = {
    "dictionary": "dictionary_type",
    "sequence_length": "window_length",
}
# Arguments that configs of earlier releases lack, with the behaviour those
# releases had (the block's and `SDGMBackbone`'s): the dense mixer was the
# only one, and the default until "gated_spectral"; the dictionary was
# "spectral" (the paper's; the default until "separable_frequency", but for
# a spell of "shared_frequency").
EARLIER_DEFAULTS = {
    "encoder_type": "dilated_convolution",
    "dictionary_type": "spectral",
}


@keras.saving.register_keras_serializable(package="keras_sdgm")
class SpectralDictionaryBlock(keras.layers.Layer):
    """One SDGM block: coefficients from a causal encoder mix the atoms.

    For hidden states `h` of shape `(batch, length, hidden_dim)`:

    ```
    x     = layer_norm(h) * padding_mask       # what the block reconstructs
    C     = encoder(x)                         # (batch, length, num_atoms)
    X_hat = dictionary(C, start_index)         # sum_k C[., t, k] S[k, t, .]
    h     = h + dropout(X_hat)                 # or h = X_hat, residual=False
    h     = h + dropout(FFN(layer_norm(h)))    # if intermediate_dim > 0
    ```

    The encoder is the block's token mixer, the only part that moves
    information between positions; `encoder_type` names it
    (`"dilated_convolution"`: `CoefficientEncoder`, full-width residual
    convolutions; `"depthwise"`: `DepthwiseCoefficientEncoder`, one kernel
    per channel and one projection to the coefficients; `"gated"`:
    `GatedCoefficientEncoder`, the same under a multiplicative gate;
    `"spectral"`: `SpectralCoefficientEncoder`, damped sinusoidal modes
    that carry every past position, after short depthwise convolutions;
    `"gated_spectral"`: `GatedSpectralCoefficientEncoder`, the same under
    the multiplicative gate; `"retention"`: `RetentionCoefficientEncoder`,
    a linear attention whose lag kernels are damped sinusoids, after short
    depthwise convolutions; `"gated_retention"`:
    `GatedRetentionCoefficientEncoder`, the same under the gate).
    The dictionary is a
    sublayer named by `dictionary_type`: `"spectral"` (`SpectralDictionary`,
    the method's sinusoidal atoms, which depend on the position),
    `"separable_frequency"` (`SeparableFrequencyDictionary`, the same atoms
    with each frequency the sum of an atom's and a feature's, mixed by two
    matrix products), `"shared_frequency"` (`SharedFrequencyDictionary`,
    one frequency per atom, one matrix product) or `"static"`
    (`StaticDictionary`, one `(num_atoms, hidden_dim)` matrix at every
    position; the default, see `SDGMBackbone`). Every encoder takes `(x, cache=None,
    cache_update_index=None)` and every dictionary `(C, start_index=0)`.

    With `encoder_type="dilated_convolution"`, `residual=False` and
    `intermediate_dim=0` this is the paper's single-dictionary model (plus
    the input layer norm). The block owns the
    `GaussianMixturePrior` over its coefficients; the objective's terms are
    computed by the task from the block's `auxiliary_outputs` (see
    `SDGMCausalLM`).

    Args:
        num_atoms: int. Dictionary size `K`.
        window_length: int. Window `L0` that positions are divided by.
        encoder_type: str. The token mixer, one of `ENCODER_TYPES`
            (default `"gated_retention"`).
        modes_per_feature: bool. With a spectral mixer, every feature drives
            its own copy of the modes (see `SpectralCoefficientEncoder`);
            `False` (default) for modes shared by the features.
        data_dependent_decay: bool. With a spectral mixer and shared
            modes, each position's features set the modes' decay there
            (see `SpectralCoefficientEncoder`); `False` (default) for
            decays that do not depend on the input.
        kernel_size: int. Width of the encoder's causal convolutions.
        dilation_rates: list of ints. Encoder dilations, one convolution each.
        coefficient_activation: activation of the coefficients.
        intermediate_dim: int. Width of the feed-forward; 0 for none.
        residual: bool. Add the reconstruction to `h` (True) or replace `h`
            by it (False, the paper's single block).
        num_mixture_components: int. Components of the coefficient prior.
        dictionary_type: str. The dictionary, one of `DICTIONARY_TYPES`
            (default `"static"`: with the retention mixer, the best at
            convergence, docs/ABLATIONS.md).
        max_position_offset: int. In training, the dictionary is evaluated
            at positions shifted by a random offset in
            `[0, max_position_offset]`, drawn per batch, so that its atoms
            are trained beyond the training window. 0 (default): positions
            start at 0 in every window.
        dropout: float. Dropout on the reconstruction and feed-forward.
        layer_norm_epsilon: float. Epsilon of the layer norms.
        kernel_initializer: initializer of the convolutions and dense layers.
        seed: int or `None`. Seed of the position offsets' random draws.
        **kwargs: other `keras.layers.Layer` arguments.

    Call arguments:
        hidden: tensor `(batch, length, hidden_dim)`; with a `cache`, the
            one new position `(batch, 1, hidden_dim)`.
        padding_mask: `(batch, length)` mask of real tokens, or `None`.
        cache: `None`, or the encoder's cache before the new position (from
            a call with `cache_update_index`, or a previous cached call):
            then the call processes that one position at a constant cost.
        cache_update_index: int or scalar int tensor, the absolute position
            of the new token with a `cache`; without one, the position whose
            cache to return (for seeding a decoding cache from a prompt).
        training: bool, for dropout and position offsets.
        return_auxiliary_outputs: bool. Also return a dict with `"target"`
            (`x`), `"reconstruction"` (`X_hat`) and `"coefficients"` (`C`).
        coefficient_sampler: `None`, or a function applied to the
            coefficients of a cached step before they mix the atoms (the
            task's GMM sampling modes).

    Returns:
        `hidden`; `(hidden, cache)` when `cache` or `cache_update_index` is
        given; with `return_auxiliary_outputs`, the `auxiliary_outputs` dict
        is appended.

    Example:
    >>> block = SpectralDictionaryBlock(num_atoms=8, window_length=16)
    >>> h = keras.random.normal((2, 16, 32))
    >>> block(h).shape
    (2, 16, 32)
    >>> h, auxiliary_outputs = block(h, return_auxiliary_outputs=True)
    >>> auxiliary_outputs["coefficients"].shape
    (2, 16, 8)
    """

    def __init__(
        self,
        num_atoms,
        window_length,
        encoder_type="gated_retention",
        modes_per_feature=False,
        data_dependent_decay=False,
        kernel_size=3,
        dilation_rates=(1,),
        coefficient_activation="gelu",
        intermediate_dim=0,
        residual=True,
        num_mixture_components=8,
        dictionary_type="static",
        max_position_offset=0,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        kernel_initializer="glorot_uniform",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_atoms = require_positive_int("num_atoms", num_atoms)
        self.window_length = require_positive_int(
            "window_length", window_length
        )
        self.encoder_type = require_one_of(
            "encoder_type", encoder_type, ENCODER_TYPES
        )
        self.modes_per_feature, self.data_dependent_decay = (
            require_mode_options(modes_per_feature, data_dependent_decay)
        )
        for name in ("modes_per_feature", "data_dependent_decay"):
            if getattr(self, name) and (
                self.encoder_type not in SPECTRAL_ENCODER_TYPES
            ):
                raise ValueError(
                    f"`{name}` sets how the spectral mixers' modes work; "
                    f"encoder_type={encoder_type!r} has no modes. Use one "
                    f"of {list(SPECTRAL_ENCODER_TYPES)} or `{name}=False`."
                )
        self.kernel_size = require_positive_int("kernel_size", kernel_size)
        self.dilation_rates = list(dilation_rates)
        self.coefficient_activation = keras.activations.get(
            coefficient_activation
        )
        if intermediate_dim != 0:
            require_positive_int("intermediate_dim", intermediate_dim)
        self.intermediate_dim = int(intermediate_dim)
        self.residual = bool(residual)
        self.num_mixture_components = require_positive_int(
            "num_mixture_components", num_mixture_components
        )
        self.dictionary_type = require_one_of(
            "dictionary_type", dictionary_type, DICTIONARY_TYPES
        )
        self.max_position_offset = int(max_position_offset)
        if self.max_position_offset < 0 or self.max_position_offset != (
            max_position_offset
        ):
            raise ValueError(
                "`max_position_offset` must be a non-negative int. "
                f"Received: max_position_offset={max_position_offset!r}"
            )
        if self.max_position_offset and dictionary_type == "static":
            raise ValueError(
                "`max_position_offset` shifts the positions of the spectral "
                "dictionary; a static dictionary has none. Use "
                '`max_position_offset=0` with `dictionary_type="static"`.'
            )
        self.seed = seed
        if self.max_position_offset:
            self.seed_generator = keras.random.SeedGenerator(seed)
        self.dropout = require_non_negative_float("dropout", dropout)
        if self.dropout >= 1:
            raise ValueError(
                f"`dropout` must be in [0, 1). Received: dropout={dropout}"
            )
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, hidden_shape, padding_mask_shape=None):
        hidden_dim = hidden_shape[-1]
        coefficients_shape = tuple(hidden_shape[:-1]) + (self.num_atoms,)
        self.input_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="input_layer_norm",
        )
        self.input_layer_norm.build(hidden_shape)
        self.encoder = self._make_encoder()
        self.encoder.build(hidden_shape)
        self.prior = GaussianMixturePrior(
            num_mixture_components=self.num_mixture_components,
            dtype=self.dtype_policy,
            name="prior",
        )
        self.prior.build(coefficients_shape)
        self.dictionary = self._make_dictionary(hidden_dim)
        self.dictionary.build(coefficients_shape)
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout"
        )
        if self.intermediate_dim:
            self.feedforward_layer_norm = keras.layers.LayerNormalization(
                epsilon=self.layer_norm_epsilon,
                dtype=self.dtype_policy,
                name="feedforward_layer_norm",
            )
            self.feedforward_layer_norm.build(hidden_shape)
            self.feedforward_intermediate = keras.layers.Dense(
                self.intermediate_dim,
                activation="gelu",
                kernel_initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name="feedforward_intermediate",
            )
            self.feedforward_intermediate.build(hidden_shape)
            self.feedforward_output = keras.layers.Dense(
                hidden_dim,
                kernel_initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name="feedforward_output",
            )
            self.feedforward_output.build(
                tuple(hidden_shape[:-1]) + (self.intermediate_dim,)
            )

    def _make_encoder(self):
        modes = {}  # The long-range mixers' own arguments.
        if self.encoder_type in WINDOWED_ENCODER_TYPES:
            modes["window_length"] = self.window_length
        if self.encoder_type in SPECTRAL_ENCODER_TYPES:
            modes["modes_per_feature"] = self.modes_per_feature
            modes["data_dependent_decay"] = self.data_dependent_decay
        return ENCODERS[self.encoder_type](
            **modes,
            num_atoms=self.num_atoms,
            kernel_size=self.kernel_size,
            dilation_rates=self.dilation_rates,
            activation=self.coefficient_activation,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="encoder",
        )

    def _make_dictionary(self, hidden_dim):
        window = {}
        if self.dictionary_type in SINUSOIDAL_DICTIONARY_TYPES:
            window["window_length"] = self.window_length
        return DICTIONARIES[self.dictionary_type](
            **window,
            num_atoms=self.num_atoms,
            hidden_dim=hidden_dim,
            dtype=self.dtype_policy,
            name="dictionary",
        )

    def _mix(self, hidden, coefficients, start_index, training):
        reconstruction = self.dictionary(coefficients, start_index=start_index)
        mixed = self.dropout_layer(reconstruction, training=training)
        hidden = hidden + mixed if self.residual else mixed
        if self.intermediate_dim:
            y = self.feedforward_layer_norm(hidden)
            y = apply_to_rows(self._feedforward, y)
            hidden = hidden + self.dropout_layer(y, training=training)
        return hidden, reconstruction

    def _feedforward(self, rows):
        return self.feedforward_output(self.feedforward_intermediate(rows))

    def _training_start_index(self, training):
        if training and self.max_position_offset:
            return keras.random.randint(
                (),
                0,
                self.max_position_offset + 1,
                seed=self.seed_generator,
                dtype="int32",
            )
        return 0

    def call(
        self,
        hidden,
        padding_mask=None,
        cache=None,
        cache_update_index=None,
        training=None,
        return_auxiliary_outputs=False,
        coefficient_sampler=None,
    ):
        # Keras casts `hidden` in eager and traced calls, not symbolic ones.
        hidden = ops.cast(hidden, self.compute_dtype)
        x = self.input_layer_norm(hidden)
        if cache is not None:
            coefficients, cache = self.encoder(x, cache=cache)
            if coefficient_sampler is not None:
                coefficients = coefficient_sampler(coefficients)
            start_index = cache_update_index
        else:
            if padding_mask is not None:
                x = x * ops.cast(padding_mask, x.dtype)[..., None]
            if cache_update_index is None:
                coefficients = self.encoder(x)
            else:
                coefficients, cache = self.encoder(
                    x, cache_update_index=cache_update_index
                )
            start_index = self._training_start_index(training)
        hidden, reconstruction = self._mix(
            hidden, coefficients, start_index, training
        )
        outputs = [hidden]
        if cache is not None:
            outputs.append(cache)
        if return_auxiliary_outputs:
            outputs.append(
                {
                    "target": x,
                    "reconstruction": reconstruction,
                    "coefficients": coefficients,
                }
            )
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_atoms": self.num_atoms,
                "window_length": self.window_length,
                "encoder_type": self.encoder_type,
                "modes_per_feature": self.modes_per_feature,
                "data_dependent_decay": self.data_dependent_decay,
                "kernel_size": self.kernel_size,
                "dilation_rates": list(self.dilation_rates),
                "coefficient_activation": keras.activations.serialize(
                    self.coefficient_activation
                ),
                "intermediate_dim": self.intermediate_dim,
                "residual": self.residual,
                "num_mixture_components": self.num_mixture_components,
                "dictionary_type": self.dictionary_type,
                "max_position_offset": self.max_position_offset,
                "seed": self.seed,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return super().from_config(
            with_earlier_defaults(
                renamed_config(config, RENAMED_KEYS), EARLIER_DEFAULTS
            )
        )
