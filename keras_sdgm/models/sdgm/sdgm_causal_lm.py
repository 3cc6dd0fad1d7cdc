import inspect
import warnings

import keras
import keras_hub
import numpy as np
from keras import ops
from keras_hub.models import CausalLM
from keras_hub.src.utils.python_utils import classproperty
from keras_hub.src.utils.tensor_utils import any_equal

from keras_sdgm.layers.add_loss import AddLoss
from keras_sdgm.losses.auxiliary_losses import prior_loss
from keras_sdgm.losses.auxiliary_losses import reconstruction_loss
from keras_sdgm.losses.auxiliary_losses import stft_loss
from keras_sdgm.models.sdgm.sdgm_backbone import SDGMBackbone
from keras_sdgm.models.sdgm.sdgm_causal_lm_preprocessor import (
    SDGMCausalLMPreprocessor,
)
from keras_sdgm.models.sdgm.sdgm_presets import backbone_presets
from keras_sdgm.models.sdgm.sdgm_presets import listed_presets
from keras_sdgm.models.sdgm.sdgm_presets import resolve_trained_preset
from keras_sdgm.models.sdgm.spectral_dictionary_block import RENAMED_KEYS
from keras_sdgm.utils.replicas import replica_count
from keras_sdgm.utils.validation import check_ids
from keras_sdgm.utils.validation import check_token_inputs
from keras_sdgm.utils.validation import require_model_kwargs
from keras_sdgm.utils.validation import require_non_negative_float
from keras_sdgm.utils.validation import require_positive_int

AUXILIARY_TERMS = ("reconstruction", "stft", "prior")
COEFFICIENT_SAMPLING = ("encoder", "prior", "posterior")


@keras.saving.register_keras_serializable(package="keras_sdgm")
class SDGMCausalLM(CausalLM):
    """An SDGM language model: next-token logits plus the paper's objective.

    Calling the model gives plain logits `(batch, length, vocabulary_size)`
    through the tied token embedding, as keras-hub's `GPT2CausalLM` does, so
    `predict`, export and keras-hub utilities see an ordinary causal LM.

    `fit()` minimizes the SDGM objective (SPEC section 4)

    `nll_weight * NLL + reconstruction_weight * R + stft_weight * S
    + prior_weight * P`

    - NLL: the compiled loss (sparse categorical cross-entropy of the next
      token by default), weighted by `sample_weight` (the padding mask).
    - R: mean over (batch, position, feature) of `(X_hat - stop_grad(X))^2`
      where `X` is what a block reconstructs (its normalized input).
    - S: `STFTMagnitudeLoss` between `X_hat` and `stop_grad(X)`, padded
      positions zeroed in both.
    - P: `-mean log p(C)` of the coefficients under each block's
      `GaussianMixturePrior`.

    Padded positions are left out of R and P; R, S and P are averaged over
    the blocks. `fit()` and `evaluate()` log `loss` (the weighted total),
    `nll`, `perplexity` (from the NLL alone) and each term whose weight is
    above 0 (`reconstruction_loss`, `stft_loss`, `prior_loss`). A term
    whose weight is 0 is neither computed nor logged: it would cost every
    step its work (the STFT's framing and FFTs, the prior's log-densities)
    and compile time (docs/PERFORMANCE.md). `auxiliary_terms()` computes
    any of them on demand.

    The terms are functions in `keras_sdgm.losses`. Every call of the
    model computes the weighted ones from the blocks' `auxiliary_outputs`
    (see `SDGMBackbone`) and records them with Keras's `add_loss` as the
    loss of its sublayer `auxiliary_loss` (an `AddLoss`), a vector
    `(R, S, P)` with zeros for the unweighted terms; `compute_loss`
    weights that vector. A compiled `predict` drops the terms; an eager
    torch call computes them.

    The defaults weight the auxiliary terms at 0: the paper's weights
    raised validation perplexity in our ablations (docs/ABLATIONS.md). Set
    them to 1.0 for the paper's objective.

    Args:
        backbone: an `SDGMBackbone`.
        preprocessor: a `keras_hub.models.CausalLMPreprocessor` or `None`.
        nll_weight: float. Weight of the next-token NLL (gamma).
        reconstruction_weight: float. Weight of R (alpha).
        stft_weight: float. Weight of S (beta).
        prior_weight: float. Weight of P (delta).
        stft_fft_length: int. FFT length of S (paper: 256).
        stft_frame_step: int. Hop of S (paper: 64).

    Example:
    >>> backbone = SDGMBackbone(vocabulary_size=50, hidden_dim=16,
    ...     num_atoms=8, window_length=32)
    >>> lm = SDGMCausalLM(backbone, stft_weight=1.0)
    >>> x = {"token_ids": np.ones((4, 32), "int32"),
    ...      "padding_mask": np.ones((4, 32), "int32")}
    >>> lm.fit(x, np.ones((4, 32), "int32"), epochs=1)  # doctest: +SKIP
    >>> logits = lm(x)  # (4, 32, 50)
    """

    backbone_cls = SDGMBackbone
    preprocessor_cls = SDGMCausalLMPreprocessor

    def __init__(
        self,
        backbone,
        preprocessor=None,
        nll_weight=1.0,
        reconstruction_weight=0.0,
        stft_weight=0.0,
        prior_weight=0.0,
        stft_fft_length=256,
        stft_frame_step=64,
        **kwargs,
    ):
        require_model_kwargs("SDGMCausalLM", kwargs)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Functional Model ===
        inputs = backbone.input
        hidden_states = backbone(inputs)
        outputs = backbone.token_embedding(hidden_states, reverse=True)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        self.auxiliary_loss = AddLoss(name="auxiliary_loss")

        # === Config ===
        self.nll_weight = require_non_negative_float("nll_weight", nll_weight)
        self.reconstruction_weight = require_non_negative_float(
            "reconstruction_weight", reconstruction_weight
        )
        self.stft_weight = require_non_negative_float(
            "stft_weight", stft_weight
        )
        self.prior_weight = require_non_negative_float(
            "prior_weight", prior_weight
        )
        self.stft_fft_length = require_positive_int(
            "stft_fft_length", stft_fft_length
        )
        self.stft_frame_step = require_positive_int(
            "stft_frame_step", stft_frame_step
        )

        # === Loss trackers ===
        self.nll_tracker = keras.metrics.Mean(name="nll")
        self.term_trackers = {
            term: keras.metrics.Mean(name=f"{term}_loss")
            for term in self.weighted_terms()
        }

    def weighted_terms(self):
        """The auxiliary terms with a weight above 0, in `AUXILIARY_TERMS` order.

        Those that `fit()` and `evaluate()` compute and log.
        """
        return tuple(
            term
            for term in AUXILIARY_TERMS
            if getattr(self, f"{term}_weight") > 0
        )

    def call(self, inputs, training=None, mask=None):
        """Logits `(batch, length, vocabulary_size)`; records the terms.

        Runs what the functional graph runs (backbone, then the tied
        embedding reversed), keeping the blocks' `auxiliary_outputs` to
        record the auxiliary terms (see class doc).
        """
        check_token_inputs(inputs, self.backbone.vocabulary_size)
        outputs = self.backbone(
            inputs, training=training, return_auxiliary_outputs=True
        )
        terms = self.auxiliary_terms(
            outputs["auxiliary_outputs"],
            inputs["padding_mask"],
            terms=self.weighted_terms(),
        )
        self.auxiliary_loss(
            ops.stack(
                [terms.get(term, ops.zeros(())) for term in AUXILIARY_TERMS]
            )
        )
        return self._tied_logits(outputs["sequence_output"])

    def fit(self, x=None, *args, **kwargs):
        """keras-hub's `fit`; a dict of token ids is checked first.

        A `{"token_ids", "padding_mask"}` dict passes the preprocessor
        unchanged (see `SDGMCausalLMPreprocessor`); pass `y` and
        `sample_weight` with it, as without a preprocessor.
        """
        self._check_input_dict(x)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        """keras-hub's `evaluate`; a dict of token ids is checked first."""
        self._check_input_dict(x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x=None, *args, **kwargs):
        """keras-hub's `predict`; a dict of token ids is checked first."""
        self._check_input_dict(x)
        return super().predict(x, *args, **kwargs)

    def _check_input_dict(self, x):
        """Checks a dict of model inputs once, on the host, before batching.

        Its ids are concrete here; once batched into a compiled step they
        are not, and an out-of-range id would give NaN instead of an error
        (see `check_token_inputs`).
        """
        if not isinstance(x, dict):
            return
        if self.preprocessor is not None and hasattr(
            self.preprocessor, "check_model_inputs"
        ):
            self.preprocessor.check_model_inputs(x)
        check_token_inputs(x, self.backbone.vocabulary_size)

    def logits(self, inputs, training=False):
        """What `call` returns, without computing the objective's terms.

        For inference and export, where the terms would be wasted work
        (and the STFT needs a concrete length, which JAX's shape-polymorphic
        export does not give).
        """
        check_token_inputs(inputs, self.backbone.vocabulary_size)
        hidden_states = self.backbone(inputs, training=training)
        return self._tied_logits(hidden_states)

    def _tied_logits(self, hidden_states):
        """Logits `(batch, length, vocabulary_size)` of final hidden states.

        The tied token embedding reversed, multiplied as one `(batch *
        length, hidden_dim)` matrix. The same product on the 3-D tensor
        makes XLA on CPU copy the logits' gradient transposed, `(vocabulary,
        batch * length)`, before the embedding's gradient: at D=64,
        V=10,000 that copy was ~40% of the output layer's training time
        (docs/PERFORMANCE.md, "The output layer").
        """
        shape = ops.shape(hidden_states)
        flat = ops.reshape(hidden_states, (-1, shape[-1]))
        logits = self.backbone.token_embedding(flat, reverse=True)
        return ops.reshape(
            logits, (shape[0], shape[1], self.backbone.vocabulary_size)
        )

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        *,
        weighted_metrics="auto",
        sampler="top_k",
        coefficient_sampling="encoder",
        coefficient_seed=None,
        **kwargs,
    ):
        """Configures training and generation; defaults follow the paper.

        `optimizer="auto"` is Adam with learning rate 1e-3 and weight decay
        1e-5 (Keras applies it decoupled, as AdamW does); `loss="auto"` is
        the next-token sparse categorical cross-entropy from logits (the
        NLL term); `weighted_metrics="auto"` adds keras-hub's `Perplexity`
        and token accuracy, weighted by the padding mask. `sampler` picks
        the next token in `generate()`; other arguments are those of
        `keras_hub.models.CausalLM.compile`.

        `coefficient_sampling` sets what mixes the atoms at each generated
        position (the prompt is always encoded as usual):

        - `"encoder"` (default): the encoder's coefficients, i.e. ordinary
          autoregressive generation, the model as trained.
        - `"prior"`: coefficients drawn from each block's GMM prior,
          ignoring the context: the paper's generation by sampling the
          fitted mixture. In the paper's model (one non-residual block)
          the next token then does not depend on the text at all; in
          residual models only the current token's embedding carries the
          context. Useful to see what the prior has captured, not to write
          good text.
        - `"posterior"`: for each block, the mixture component is drawn
          from its responsibility for the encoder's coefficients, and the
          coefficients from that component: the context picks a mode of
          the prior, the prior supplies the variation. Useful for varied
          continuations that stay near what the encoder would say.

        Fit the priors first (`keras_sdgm.fit_coefficient_gmm`) or train
        with the prior term; an untrained prior samples noise. The noise of
        these modes comes from `coefficient_seed` (an int; `None` draws one
        now): the same seed, prompt and sampler give the same text, and a
        new `compile()` with another seed gives another sample.
        """
        if coefficient_sampling not in COEFFICIENT_SAMPLING:
            raise ValueError(
                "`coefficient_sampling` must be one of "
                f"{COEFFICIENT_SAMPLING}. Received: "
                f"coefficient_sampling={coefficient_sampling!r}"
            )
        if coefficient_seed is None:
            coefficient_seed = int(np.random.randint(2**30))
        self.coefficient_sampling = coefficient_sampling
        self.coefficient_seed = int(coefficient_seed)
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(
                learning_rate=1e-3, weight_decay=1e-5
            )
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.nll_loss = keras.losses.get(loss)
        if not isinstance(self.nll_loss, keras.losses.Loss):
            self.nll_loss = keras.losses.LossFunctionWrapper(self.nll_loss)
        if weighted_metrics == "auto":
            weighted_metrics = [
                keras_hub.metrics.Perplexity(from_logits=True),
                # Top-1 by rank (a compare and a sum), not by argmax: the
                # same accuracy (a tie counts as a hit), but XLA on CPU
                # compiles argmax over the vocabulary to a slow variadic
                # reduce, ~12% of a D=64 training step.
                keras.metrics.SparseTopKCategoricalAccuracy(
                    k=1, name="accuracy"
                ),
            ]
        # `compute_loss` applies `self.nll_loss` itself: Keras gets no loss
        # to compile (it would build one that nothing calls).
        super().compile(
            optimizer=optimizer,
            loss=None,
            weighted_metrics=weighted_metrics,
            sampler=sampler,
            **kwargs,
        )

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        """The weighted SDGM objective; logs every term (see class doc).

        `self.losses` holds the `(R, S, P)` vector that `call` recorded (the
        one loss of shape `(3,)`; Keras's other losses, e.g. regularizers,
        are scalars and are added as Keras adds them). Under
        `tf.distribute` each replica returns its share of the loss (the
        compiled loss is already divided by the number of replicas, and the
        replicas' gradients are summed); the other terms are divided the
        same way, and every term is logged whole.

        Keras calls it after the forward pass of a step. Keras may also
        trace it on symbolic `y_pred` without a forward pass, to build
        state; the auxiliary terms are zeros there. Called on a real
        `y_pred` with no terms recorded (no forward pass since the last
        step), it raises rather than return the NLL alone.
        """
        auxiliary, other_losses = _split_losses(self.losses, y_pred)
        replicas = replica_count()
        nll = self.nll_loss(y, y_pred, sample_weight)
        self.nll_tracker.update_state(nll * replicas)
        total = self.nll_weight * nll
        for term in self.weighted_terms():
            value = auxiliary[AUXILIARY_TERMS.index(term)]
            self.term_trackers[term].update_state(value)
            total = total + getattr(self, f"{term}_weight") * value / replicas
        for loss in other_losses:
            total = total + ops.sum(ops.cast(loss, "float32")) / replicas
        return total

    def auxiliary_terms(
        self, auxiliary_outputs, padding_mask=None, terms=AUXILIARY_TERMS
    ):
        """R, S and P of the blocks' `auxiliary_outputs`, averaged over blocks.

        Args:
            auxiliary_outputs: list with one dict per block, as
                `SDGMBackbone(..., return_auxiliary_outputs=True)` returns
                under `"auxiliary_outputs"`.
            padding_mask: `(batch, length)` mask of real tokens, or `None`.
            terms: the terms to compute, a subset of `AUXILIARY_TERMS`
                (default: all three, whatever their weights).

        Returns:
            dict of float32 scalars keyed by the names in `terms`.
        """
        unknown = set(terms) - set(AUXILIARY_TERMS)
        if unknown:
            raise ValueError(
                f"`terms` must be a subset of {AUXILIARY_TERMS}. "
                f"Received: terms={tuple(terms)!r}"
            )
        totals = dict.fromkeys(terms, 0.0)
        for block, outputs in zip(self.backbone.blocks, auxiliary_outputs):
            target = ops.stop_gradient(outputs["target"])
            reconstruction = outputs["reconstruction"]
            if "reconstruction" in totals:
                totals["reconstruction"] += reconstruction_loss(
                    target, reconstruction, padding_mask
                )
            if "stft" in totals:
                totals["stft"] += stft_loss(
                    target,
                    reconstruction,
                    padding_mask,
                    fft_length=self.stft_fft_length,
                    frame_step=self.stft_frame_step,
                )
            if "prior" in totals:
                totals["prior"] += prior_loss(
                    block.prior.log_prob(outputs["coefficients"]),
                    padding_mask,
                )
        num_blocks = len(self.backbone.blocks)
        return {term: value / num_blocks for term, value in totals.items()}

    def score(
        self,
        token_ids,
        padding_mask=None,
        scoring_mode="logits",
        layer_intercept_fn=None,
        target_ids=None,
    ):
        """Scores token ids: per-token logits or loss (keras-hub's `score`).

        The forward pass of `call` (inference: no dropout, no position
        offsets, no auxiliary terms), with a hook on the activations
        between the layers, as keras-hub's `GPT2CausalLM.score`.

        Args:
            token_ids: int tensor `(batch, length)` of ids in
                `[0, vocabulary_size)`, e.g. `generate`'s output after
                `preprocessor.generate_preprocess`.
            padding_mask: tensor `(batch, length)`, 1 for a real token and
                0 for padding; default all ones.
            scoring_mode: `"logits"` (per-token logits) or `"loss"` (per
                token: the cross-entropy of `target_ids` under the logits).
            layer_intercept_fn: optional function `(activations, index) ->
                activations` of shape `(batch, length, hidden_dim)`. Index
                -1 is the token embedding; index `i` the output of block
                `i` (before the final layer norm).
            target_ids: int tensor `(batch, length)`, required with
                `scoring_mode="loss"`: the id that should follow each
                position (e.g. `token_ids` shifted left by one).

        Returns:
            `(batch, length, vocabulary_size)` logits, or `(batch, length)`
            per-token losses in nats.

        Raises:
            ValueError: an unknown `scoring_mode`, `"loss"` without
                `target_ids`, `target_ids` of another shape than
                `token_ids`, or ids outside the vocabulary.

        Example:
        >>> ids = np.array([[2, 3, 5, 4]], "int32")
        >>> losses = lm.score(ids, scoring_mode="loss",
        ...     target_ids=np.roll(ids, -1, axis=1))  # (1, 4)
        """
        if scoring_mode not in ("logits", "loss"):
            raise ValueError(
                "`scoring_mode` must be 'logits' or 'loss'. Received: "
                f"scoring_mode={scoring_mode!r}"
            )
        if scoring_mode == "loss" and target_ids is None:
            raise ValueError(
                "`scoring_mode='loss'` needs `target_ids`: the id that "
                "should follow each position of `token_ids`."
            )
        if padding_mask is None:
            padding_mask = ops.ones_like(token_ids, dtype="int32")
        check_token_inputs(
            {"token_ids": token_ids, "padding_mask": padding_mask},
            self.backbone.vocabulary_size,
        )
        if target_ids is not None:
            check_ids("target_ids", target_ids, self.backbone.vocabulary_size)
            if any(
                a is not None and b is not None and a != b
                for a, b in zip(target_ids.shape, token_ids.shape)
            ):
                raise ValueError(
                    "`target_ids` must have the shape of `token_ids` (one "
                    "target per position). Received: token_ids "
                    f"{tuple(token_ids.shape)}, target_ids "
                    f"{tuple(target_ids.shape)}"
                )
        if layer_intercept_fn is None:

            def layer_intercept_fn(x, unused_index):
                return x

        x = layer_intercept_fn(self.backbone.embed_tokens(token_ids), -1)
        for index, block in enumerate(self.backbone.blocks):
            x = layer_intercept_fn(block(x, padding_mask=padding_mask), index)
        # The functional graph's product (`_tied_logits` reshapes by the
        # concrete shape, which a symbolic trace of `score` does not have).
        logits = self.backbone.token_embedding(
            self.backbone.layer_norm(x), reverse=True
        )
        if scoring_mode == "logits":
            return logits
        per_token_loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="none"
        )
        return per_token_loss(target_ids, logits)

    def call_with_cache(self, token_ids, cache, cache_update_index, noise=None):
        """Forward pass of one new position with the decoding cache.

        The cache holds, for every block, its encoder's cache (a fixed
        number of frames each); the position is `cache_update_index`
        itself. One call costs the same at position 10 as at position
        10,000.

        Args:
            token_ids: int tensor `(batch, 1)`, the token at
                `cache_update_index`.
            cache: list (one entry per block) of encoder caches.
            cache_update_index: int or scalar int tensor, the absolute
                position of `token_ids`.
            noise: `None`, or per block the `(gumbel, normal)` noise of
                this position for `coefficient_sampling` (see `compile`).

        Returns:
            `(logits, hidden_states, cache)` for that position, logits of
            shape `(batch, 1, vocabulary_size)`.
        """
        x = self.backbone.embed_tokens(token_ids)
        next_cache = []
        noise = noise or [None] * len(cache)
        for block, block_cache, block_noise in zip(
            self.backbone.blocks, cache, noise
        ):
            x, block_cache = block(
                x,
                cache=block_cache,
                cache_update_index=cache_update_index,
                coefficient_sampler=self._coefficient_sampler(
                    block, block_noise
                ),
            )
            next_cache.append(block_cache)
        hidden_states = self.backbone.layer_norm(x)
        return self._tied_logits(hidden_states), hidden_states, next_cache

    def _coefficient_sampler(self, block, noise):
        """What replaces a block's coefficients in a step, for `compile`'s
        `coefficient_sampling`; `None` for `"encoder"`."""
        if self.coefficient_sampling == "encoder":
            return None
        posterior = self.coefficient_sampling == "posterior"

        def sample(coefficients):
            given = coefficients if posterior else None
            return ops.cast(
                block.prior.sample(*noise, given=given), coefficients.dtype
            )

        return sample

    def _build_cache(self, token_ids, padding_mask, cache_update_index):
        """Runs the prompt once; returns its hidden states and the cache.

        The cache holds the encoder caches before `cache_update_index`,
        which every row's prompt covers (it is below the shortest prompt's
        length), so rows with longer prompts stay correct as their
        remaining prompt tokens are fed one at a time.
        """
        x = self.backbone.embed_tokens(token_ids)
        cache = []
        for block in self.backbone.blocks:
            x, block_cache = block(
                x,
                padding_mask=padding_mask,
                cache_update_index=cache_update_index,
            )
            cache.append(block_cache)
        return self.backbone.layer_norm(x), cache

    def generate_step(self, inputs, stop_token_ids=None):
        """A compilable generation function for one batch of inputs.

        As keras-hub's `GPT2CausalLM.generate_step`: prompts are
        left-aligned in `inputs["token_ids"]` with `inputs["padding_mask"]`
        marking them; every position after a row's prompt is filled by the
        compiled sampler, one cached step at a time.

        Args:
            inputs: dict with `"token_ids"` and `"padding_mask"`, both
                `(batch, max_length)`.
            stop_token_ids: ids that end a row's generation, or `None`.
        """
        token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
        row_lengths = ops.sum(ops.cast(padding_mask, "int32"), axis=-1)
        # The first position that is not a prompt token in every row; the
        # first step recomputes the position before it from the cache.
        index = ops.min(row_lengths)
        hidden_states, cache = self._build_cache(
            token_ids, padding_mask, index - 1
        )
        # Positions to fill hold the pad id, which for `SDGMTokenizer` is
        # also the stop token `<eos>`: the sampler would take them for
        # generated stops and end at once. -1 matches no stop id; every such
        # position is overwritten or, after an early stop, masked out.
        token_ids = ops.where(
            padding_mask, token_ids, ops.cast(-1, token_ids.dtype)
        )

        noise = self._coefficient_noise(ops.shape(token_ids))

        def next(prompt, cache, index):
            cache_update_index = index - 1
            batch_size = ops.shape(prompt)[0]
            prompt = ops.slice(prompt, [0, cache_update_index], [batch_size, 1])
            step_noise = None
            if noise is not None:
                step_noise = [
                    tuple(
                        ops.slice(
                            n,
                            [0, cache_update_index, 0],
                            [batch_size, 1, ops.shape(n)[2]],
                        )
                        for n in block_noise
                    )
                    for block_noise in noise
                ]
            logits, hidden_states, cache = self.call_with_cache(
                prompt, cache, cache_update_index, noise=step_noise
            )
            return (
                ops.squeeze(logits, axis=1),
                ops.squeeze(hidden_states, axis=1),
                cache,
            )

        token_ids = self.sampler(
            next=next,
            prompt=token_ids,
            cache=cache,
            index=index,
            mask=padding_mask,
            stop_token_ids=stop_token_ids,
            hidden_states=hidden_states,
            model=self,
        )

        if stop_token_ids is not None:
            # Keep each row up to and including its first generated stop
            # token (positions not in the prompt).
            end_locations = ops.cast(
                any_equal(
                    token_ids, stop_token_ids, ops.logical_not(padding_mask)
                ),
                "int32",
            )
            cumsum = ops.cast(ops.cumsum(end_locations, axis=-1), "int32")
            overflow = cumsum - end_locations
            padding_mask = ops.logical_not(ops.cast(overflow, "bool"))
        else:
            padding_mask = ops.ones_like(token_ids, dtype="bool")
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    def generate(
        self,
        inputs,
        max_length=None,
        stop_token_ids="auto",
        strip_prompt=False,
    ):
        """Generates text (or token ids) after each prompt of `inputs`.

        keras-hub's `CausalLM.generate`, with its inputs checked first.

        Args:
            inputs: with a preprocessor: a string, a non-empty list of
                strings, an integer array of token ids, or an
                already-preprocessed dict (see `SDGMCausalLMPreprocessor`);
                without one: a dict of `"token_ids"` and `"padding_mask"`
                `(batch, max_length)`, prompts left-aligned. A
                `tf.data.Dataset` of either is also accepted (checked batch
                by batch as it is preprocessed).
            max_length: positive int or `None` (the preprocessor's
                `sequence_length`). Without a preprocessor, the dict's
                length is the generation length: leave it `None`.
            stop_token_ids: `"auto"`, `None` or a tuple of ids, as in
                keras-hub.
            strip_prompt: bool. Return only the generated continuation.

        Raises:
            ValueError: naming the argument: no prompts, a `max_length`
                that is not a positive int, ids outside the vocabulary, or
                inputs of another structure.

        A prompt whose words are all outside the vocabulary reads as
        `<unk>` only; it is generated from, with a `UserWarning`.
        """
        if max_length is not None:
            require_positive_int("max_length", max_length)
        if not _is_dataset(inputs):
            if self.preprocessor is None:
                self._check_unprocessed_prompts(inputs, max_length)
            else:
                self._check_prompts(inputs)
        return super().generate(
            inputs,
            max_length=max_length,
            stop_token_ids=stop_token_ids,
            strip_prompt=strip_prompt,
        )

    def _check_unprocessed_prompts(self, inputs, max_length):
        """Checks `generate`'s inputs for a model without a preprocessor."""
        check_token_inputs(inputs, self.backbone.vocabulary_size)
        if "padding_mask" not in inputs:
            raise ValueError(
                "`inputs` needs a 'padding_mask' marking each row's prompt "
                "(1) and the positions to generate (0)."
            )
        batch_size, length = tuple(inputs["token_ids"].shape)
        if batch_size == 0:
            raise ValueError("`inputs` holds no prompts (a batch of 0 rows).")
        if max_length is not None and max_length != length:
            raise ValueError(
                "Without a preprocessor the length of `inputs` is the "
                "generation length: pad the prompts to it and leave "
                f"`max_length=None`. Received: max_length={max_length}, "
                f"token_ids of length {length}."
            )

    def _check_prompts(self, inputs):
        """Checks `generate`'s prompts for a model with a preprocessor.

        The preprocessor checks dicts and token ids; here, an empty batch
        raises and a text prompt of only unknown words warns.
        """
        if isinstance(inputs, dict):
            return
        if isinstance(inputs, str):
            inputs = [inputs]
        if not hasattr(inputs, "__len__") or len(inputs) == 0:
            raise ValueError(
                "`inputs` must hold at least one prompt (a string, a list of "
                "strings, token ids or a dict of 'token_ids' and "
                f"'padding_mask'). Received: {inputs!r}"
            )
        texts = [text for text in inputs if isinstance(text, str)]
        tokenizer = self.preprocessor.tokenizer
        unknown_id = tokenizer.token_to_id(tokenizer.oov_token)
        for text in texts:
            ids = np.asarray(tokenizer.tokenize(text))
            if ids.size and np.all(ids == unknown_id):
                warnings.warn(
                    f"Every word of the prompt {text!r} is outside the "
                    f"vocabulary: the model sees only {tokenizer.oov_token} "
                    "and generates from that alone. The vocabulary is the "
                    "training corpus's words (e.g. PTB's are lowercase).",
                    stacklevel=3,
                )

    def _coefficient_noise(self, shape):
        """Noise of every position for the GMM sampling modes, or `None`.

        Drawn once per `generate()` from `coefficient_seed`, so the compiled
        loop needs no random state: per block, Gumbel noise
        `(batch, max_length, num_mixture_components)` to pick components and normal
        noise `(batch, max_length, num_atoms)`.
        """
        if self.coefficient_sampling == "encoder":
            return None
        batch_size, max_length = shape
        noise = []
        for i, block in enumerate(self.backbone.blocks):
            seed = self.coefficient_seed + 2 * i
            uniform = keras.random.uniform(
                (batch_size, max_length, block.num_mixture_components),
                minval=1e-7,
                maxval=1.0,
                seed=seed,
            )
            normal = keras.random.normal(
                (batch_size, max_length, block.num_atoms), seed=seed + 1
            )
            noise.append((-ops.log(-ops.log(uniform)), normal))
        return noise

    @classproperty
    def presets(cls):
        """The named presets `from_preset` accepts (`SDGMBackbone.presets`)."""
        return listed_presets()

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Builds the task from a named SDGM preset or a preset directory.

        A trained preset the package ships (e.g. `"ptb_sdgm_small"`) or a
        preset directory gives the trained model with its preprocessor,
        ready to `generate("text")`. An architecture (e.g. `"sdgm_base"`,
        `SDGMBackbone.from_preset`) needs `load_weights=False` and gives
        random weights and no preprocessor; keyword arguments that
        `SDGMBackbone` accepts then configure the backbone (e.g.
        `vocabulary_size`), the rest go to `SDGMCausalLM`.
        """
        if preset not in backbone_presets:
            return super().from_preset(
                resolve_trained_preset(preset),
                load_weights=load_weights,
                **kwargs,
            )
        backbone_args = set(inspect.signature(SDGMBackbone.__init__).parameters)
        backbone_args |= set(RENAMED_KEYS)  # older names, renamed there
        backbone_kwargs = {
            k: kwargs.pop(k) for k in list(kwargs) if k in backbone_args
        }
        backbone = SDGMBackbone.from_preset(
            preset, load_weights=load_weights, **backbone_kwargs
        )
        return cls(backbone=backbone, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "nll_weight": self.nll_weight,
                "reconstruction_weight": self.reconstruction_weight,
                "stft_weight": self.stft_weight,
                "prior_weight": self.prior_weight,
                "stft_fft_length": self.stft_fft_length,
                "stft_frame_step": self.stft_frame_step,
            }
        )
        return config


def _is_dataset(inputs):
    """Whether `inputs` is a `tf.data.Dataset` (checked as it is read)."""
    return type(inputs).__module__.startswith("tensorflow") and hasattr(
        inputs, "element_spec"
    )


def _split_losses(losses, y_pred):
    """The `(R, S, P)` vector among `losses`, and the other losses.

    No vector and a symbolic `y_pred`: Keras is building state from
    symbolic inputs without a call of the model; the terms are then zeros.
    No vector and a real `y_pred` is an error: the total would silently
    lose the terms.
    """
    shape = (len(AUXILIARY_TERMS),)
    auxiliary = [loss for loss in losses if tuple(loss.shape) == shape]
    if len(auxiliary) > 1:
        raise ValueError(
            "`SDGMCausalLM.compute_loss` reads the auxiliary terms that the "
            "model's latest call recorded, the one loss of shape "
            f"{shape}; found {len(auxiliary)}. Give losses of your own "
            "layers another shape (Keras expects scalars)."
        )
    if not auxiliary:
        if any(map(keras.backend.is_keras_tensor, keras.tree.flatten(y_pred))):
            return ops.zeros(shape), list(losses)
        raise ValueError(
            "`SDGMCausalLM.compute_loss` found no auxiliary terms: it reads "
            "the `(R, S, P)` vector that the model's forward pass records. "
            "Call the model on `x` (e.g. `y_pred = lm(x)`) right before "
            "`compute_loss(x, y, y_pred)`, as `fit` and `evaluate` do."
        )
    return auxiliary[0], [loss for loss in losses if loss is not auxiliary[0]]
