import keras
from keras import ops

from keras_sdgm.layers.coefficient_encoder import CoefficientEncoder
from keras_sdgm.layers.gaussian_mixture_prior import GaussianMixturePrior
from keras_sdgm.layers.spectral_dictionary import SpectralDictionary
from keras_sdgm.utils.validation import require_non_negative_float
from keras_sdgm.utils.validation import require_positive_int

DICTIONARY_TYPES = ("spectral", "static")


@keras.saving.register_keras_serializable(package="keras_sdgm")
class SpectralDictionaryBlock(keras.layers.Layer):
    """One SDGM block: coefficients from a causal encoder mix the atoms.

    For hidden states `h` of shape `(batch, length, hidden_dim)`:

    ```
    x     = layer_norm(h) * padding_mask       # what the block reconstructs
    C     = CoefficientEncoder(x)              # (batch, length, num_atoms)
    X_hat = SpectralDictionary(C)              # sum_k C[., t, k] S[k, t, .]
                                               # or C @ W, dictionary="static"
    h     = h + dropout(X_hat)                 # or h = X_hat, residual=False
    h     = h + dropout(FFN(layer_norm(h)))    # if intermediate_dim > 0
    ```

    With `residual=False` and `intermediate_dim=0` this is the paper's
    single-dictionary model (plus the input layer norm). The block keeps
    `x`, `X_hat` and `C` of its latest call in `auxiliary_outputs` for the
    auxiliary loss terms (`SDGMCausalLM.compute_loss` reads them in the same
    trace), and owns the `GaussianMixturePrior` over its coefficients.

    Args:
        num_atoms: int. Dictionary size `K`.
        sequence_length: int. Window `L0` that positions are divided by.
        kernel_size: int. Width of the encoder's causal convolutions.
        dilation_rates: list of ints. Encoder dilations, one convolution each.
        coefficient_activation: activation of the coefficients.
        intermediate_dim: int. Width of the feed-forward; 0 for none.
        residual: bool. Add the reconstruction to `h` (True) or replace `h`
            by it (False, the paper's single block).
        num_mixture_components: int. Components of the coefficient prior.
        dictionary: `"spectral"` (the method's sinusoidal atoms, which
            depend on the position) or `"static"` (an ablation: one learned
            `(num_atoms, hidden_dim)` matrix `W`, the same at every position,
            so the block knows positions only through its causal encoder).
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

    Example:
    >>> block = SpectralDictionaryBlock(num_atoms=8, sequence_length=16)
    >>> h = keras.random.normal((2, 16, 32))
    >>> block(h).shape
    (2, 16, 32)
    """

    def __init__(
        self,
        num_atoms,
        sequence_length,
        kernel_size=3,
        dilation_rates=(1,),
        coefficient_activation="gelu",
        intermediate_dim=0,
        residual=True,
        num_mixture_components=8,
        dictionary="spectral",
        max_position_offset=0,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        kernel_initializer="glorot_uniform",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_atoms = require_positive_int("num_atoms", num_atoms)
        self.sequence_length = require_positive_int(
            "sequence_length", sequence_length
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
        if dictionary not in DICTIONARY_TYPES:
            raise ValueError(
                f"`dictionary` must be one of {DICTIONARY_TYPES}. "
                f"Received: dictionary={dictionary!r}"
            )
        self.dictionary_type = dictionary
        self.max_position_offset = int(max_position_offset)
        if self.max_position_offset < 0 or self.max_position_offset != (
            max_position_offset
        ):
            raise ValueError(
                "`max_position_offset` must be a non-negative int. "
                f"Received: max_position_offset={max_position_offset!r}"
            )
        if self.max_position_offset and dictionary == "static":
            raise ValueError(
                "`max_position_offset` shifts the positions of the spectral "
                "dictionary; a static dictionary has none. Use "
                "`max_position_offset=0` with `dictionary=\"static\"`."
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
        self.auxiliary_outputs = None

        self.input_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy,
            name="input_layer_norm",
        )
        self.encoder = CoefficientEncoder(
            num_atoms=num_atoms,
            kernel_size=kernel_size,
            dilation_rates=dilation_rates,
            activation=coefficient_activation,
            kernel_initializer=kernel_initializer,
            dtype=self.dtype_policy,
            name="encoder",
        )
        self.prior = GaussianMixturePrior(
            num_components=num_mixture_components,
            dtype=self.dtype_policy,
            name="prior",
        )
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout"
        )
        if self.intermediate_dim:
            self.feedforward_layer_norm = keras.layers.LayerNormalization(
                epsilon=layer_norm_epsilon, dtype=self.dtype_policy,
                name="feedforward_layer_norm",
            )
            self.feedforward_intermediate = keras.layers.Dense(
                self.intermediate_dim, activation="gelu",
                kernel_initializer=kernel_initializer,
                dtype=self.dtype_policy, name="feedforward_intermediate",
            )

    def build(self, hidden_shape, padding_mask_shape=None):
        hidden_dim = hidden_shape[-1]
        self.input_layer_norm.build(hidden_shape)
        self.encoder.build(hidden_shape)
        coefficients_shape = tuple(hidden_shape[:-1]) + (self.num_atoms,)
        self.prior.build(coefficients_shape)
        if self.dictionary_type == "static":
            self.dictionary = keras.layers.Dense(
                hidden_dim, use_bias=False,
                kernel_initializer=keras.initializers.RandomNormal(
                    stddev=0.02
                ),
                dtype=self.dtype_policy, name="dictionary",
            )
        else:
            self.dictionary = SpectralDictionary(
                num_atoms=self.num_atoms,
                hidden_dim=hidden_dim,
                sequence_length=self.sequence_length,
                dtype=self.dtype_policy,
                name="dictionary",
            )
        self.dictionary.build(coefficients_shape)
        if self.intermediate_dim:
            self.feedforward_layer_norm.build(hidden_shape)
            self.feedforward_intermediate.build(hidden_shape)
            self.feedforward_output = keras.layers.Dense(
                hidden_dim, kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy, name="feedforward_output",
            )
            self.feedforward_output.build(
                tuple(hidden_shape[:-1]) + (self.intermediate_dim,)
            )

    def _mix(self, hidden, coefficients, start_index, training):
        if self.dictionary_type == "static":
            reconstruction = self.dictionary(coefficients)
        else:
            reconstruction = self.dictionary(
                coefficients, start_index=start_index
            )
        mixed = self.dropout_layer(reconstruction, training=training)
        hidden = hidden + mixed if self.residual else mixed
        if self.intermediate_dim:
            y = self.feedforward_layer_norm(hidden)
            y = self.feedforward_output(self.feedforward_intermediate(y))
            hidden = hidden + self.dropout_layer(y, training=training)
        return hidden, reconstruction

    def _normalized_input(self, hidden, padding_mask):
        x = self.input_layer_norm(hidden)
        if padding_mask is not None:
            x = x * ops.cast(padding_mask, x.dtype)[..., None]
        return x

    def call(self, hidden, padding_mask=None, training=None, state_index=None):
        """Applies the block to a whole sequence.

        Args:
            hidden: tensor `(batch, length, hidden_dim)`.
            padding_mask: `(batch, length)` mask of real tokens, or `None`.
            training: bool, for dropout.
            state_index: `None`, or an int or scalar int tensor: also return
                the encoder states that `call_with_cache()` at that position
                reads (for seeding a decoding cache).

        Returns:
            The new hidden states, or `(hidden, encoder_states)` when
            `state_index` is given.
        """
        x = self._normalized_input(hidden, padding_mask)
        if state_index is None:
            coefficients = self.encoder(x)
        else:
            coefficients, states = self.encoder(
                x, return_states=True, state_index=state_index
            )
        start_index = 0
        if training and self.max_position_offset:
            start_index = keras.random.randint(
                (), 0, self.max_position_offset + 1,
                seed=self.seed_generator, dtype="int32",
            )
        hidden, reconstruction = self._mix(
            hidden, coefficients, start_index, training
        )
        # Not tracked by Keras: tensors of this call, for the loss terms.
        object.__setattr__(
            self, "auxiliary_outputs", (x, reconstruction, coefficients)
        )
        if state_index is None:
            return hidden
        return hidden, states

    def call_with_cache(
        self, hidden, encoder_states, position, coefficient_sampling="encoder",
        noise=None,
    ):
        """Applies the block to one new position, at a constant cost.

        The encoder advances its convolution states by one frame and the
        dictionary is evaluated at `position` only, so the cost does not
        depend on how many positions came before.

        Args:
            hidden: tensor `(batch, 1, hidden_dim)`, the new position.
            encoder_states: the encoder's states before `position`, from
                `call(..., state_index=position)` or a previous
                `call_with_cache()`.
            position: int or scalar int tensor, the absolute position.
            coefficient_sampling: what mixes the atoms: `"encoder"` (the
                encoder's coefficients), `"prior"` (a draw from the GMM
                prior, ignoring the context) or `"posterior"` (a draw from
                the GMM component responsible for the encoder's
                coefficients). See `GaussianMixturePrior.sample`.
            noise: for the sampling modes, `(gumbel_noise, normal_noise)`
                of shapes `(batch, 1, num_components)` and
                `(batch, 1, num_atoms)`.

        Returns:
            `(hidden, encoder_states)` for the next position.
        """
        x = self.input_layer_norm(hidden)
        coefficients, encoder_states = self.encoder.step(x, encoder_states)
        if coefficient_sampling != "encoder":
            given = coefficients if coefficient_sampling == "posterior" else None
            coefficients = ops.cast(
                self.prior.sample(*noise, given=given), coefficients.dtype
            )
        hidden, _ = self._mix(hidden, coefficients, position, False)
        return hidden, encoder_states

    def compute_output_shape(self, hidden_shape, padding_mask_shape=None):
        return hidden_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_atoms": self.num_atoms,
                "sequence_length": self.sequence_length,
                "kernel_size": self.kernel_size,
                "dilation_rates": list(self.dilation_rates),
                "coefficient_activation": keras.activations.serialize(
                    self.coefficient_activation
                ),
                "intermediate_dim": self.intermediate_dim,
                "residual": self.residual,
                "num_mixture_components": self.num_mixture_components,
                "dictionary": self.dictionary_type,
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
