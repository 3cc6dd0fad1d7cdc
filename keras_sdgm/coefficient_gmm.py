"""Fitting each block's Gaussian mixture prior to its encoder coefficients."""

import keras
import numpy as np
from sklearn.mixture import GaussianMixture

from keras_sdgm.utils.validation import check_token_inputs
from keras_sdgm.utils.validation import require_positive_int


def fit_coefficient_gmm(
    lm,
    dataset,
    num_mixture_components=None,
    covariance_type="diag",
    max_samples=100_000,
    seed=0,
    verbose=1,
):
    """Fits a scikit-learn GMM to each block's coefficients; stores it.

    The paper fits a Gaussian mixture to the coefficients of the trained
    model and generates by sampling from it. This collects the encoder
    coefficients `C[b, t, :]` of every real (unpadded) position of
    `dataset`, up to `max_samples` per block, fits
    `sklearn.mixture.GaussianMixture` to each block's, and copies the result
    into that block's `GaussianMixturePrior` weights, so it is saved with
    the model and used by the prior loss term and by GMM sampling.

    Args:
        lm: an `SDGMCausalLM` (or an `SDGMBackbone`).
        dataset: batches of token ids: a `tf.data.Dataset` or any iterable
            of `(batch, length)` int arrays (e.g. windows from
            `keras_sdgm.datasets.token_windows`), of
            `{"token_ids", "padding_mask"}` dicts, or of `(x, y, ...)`
            tuples whose `x` is one of those.
        num_mixture_components: int, or `None` for the prior's number of
            components (the only number it can hold: set it with the
            backbone's `num_mixture_components`).
        covariance_type: `"diag"` or `"spherical"`; the prior holds
            diagonal covariances.
        max_samples: int. Coefficient vectors collected per block.
            Batches are checked as they are read: integer ids of rank 2 in
            `[0, vocabulary_size)`, else `ValueError`.
        seed: int. Seed of the mixture fit.
        verbose: 0 or 1. Show a progress bar while collecting.

    Returns:
        list of the fitted `GaussianMixture`s, one per block.

    Example:
    >>> windows = keras_sdgm.datasets.token_windows(train_ids, 128)[:, :-1]
    >>> keras_sdgm.fit_coefficient_gmm(lm, np.array_split(windows, 100))
    """
    backbone = getattr(lm, "backbone", lm)
    blocks = getattr(backbone, "blocks", None)
    if not blocks or not all(hasattr(b, "prior") for b in blocks):
        raise TypeError(
            "`lm` must be an `SDGMCausalLM` or an `SDGMBackbone` (blocks with "
            f"a coefficient prior). Received: {type(lm).__name__}"
        )
    if dataset is None or isinstance(dataset, (str, bytes, dict)):
        raise TypeError(
            "`dataset` must be an iterable of batches of token ids (arrays "
            "`(batch, length)`, dicts of 'token_ids' and 'padding_mask', or "
            f"`(x, y)` tuples). Received: {type(dataset).__name__}"
        )
    priors = [block.prior for block in blocks]
    if num_mixture_components is None:
        num_mixture_components = priors[0].num_mixture_components
    require_positive_int("num_mixture_components", num_mixture_components)
    if num_mixture_components != priors[0].num_mixture_components:
        raise ValueError(
            f"The model's priors hold {priors[0].num_mixture_components} components; "
            f"received num_mixture_components={num_mixture_components}. Build the backbone "
            "with `num_mixture_components` set to the number you want."
        )
    if covariance_type not in ("diag", "spherical"):
        raise ValueError(
            "GaussianMixturePrior holds diagonal covariances: use "
            "covariance_type='diag' or 'spherical'. Received: "
            f"covariance_type={covariance_type!r}"
        )
    require_positive_int("max_samples", max_samples)

    samples = collect_coefficients(backbone, dataset, max_samples, verbose)
    if len(samples[0]) < num_mixture_components:
        raise ValueError(
            f"Collected {len(samples[0])} coefficient vectors, fewer than "
            f"num_mixture_components={num_mixture_components}: pass more data."
        )
    mixtures = []
    for prior, coefficients in zip(priors, samples):
        mixture = GaussianMixture(
            n_components=num_mixture_components,
            covariance_type=covariance_type,
            random_state=seed,
        ).fit(coefficients)
        prior.set_from_sklearn(mixture)
        mixtures.append(mixture)
    return mixtures


def collect_coefficients(backbone, dataset, max_samples, verbose=1):
    """Coefficient vectors of real positions, per block, up to `max_samples`.

    Returns:
        list (one per block) of float64 arrays `(num_samples, num_atoms)`.
    """
    collected = [[] for _ in backbone.blocks]
    count = 0
    progress = keras.utils.Progbar(
        max_samples, verbose=verbose, unit_name="coefficient vector"
    )
    for batch in dataset:
        inputs = _as_inputs(batch)
        check_token_inputs(inputs, backbone.vocabulary_size)
        mask = keras.ops.convert_to_numpy(inputs["padding_mask"]).astype(bool)
        take = min(int(mask.sum()), max_samples - count)
        outputs = backbone(inputs, return_auxiliary_outputs=True)
        for block_samples, terms in zip(
            collected, outputs["auxiliary_outputs"]
        ):
            real = keras.ops.convert_to_numpy(
                keras.ops.cast(terms["coefficients"], "float32")
            )[mask]
            block_samples.append(real[:take].astype("float64"))
        count += take
        progress.update(count)
        if count >= max_samples:
            break
    if count == 0:
        raise ValueError("The dataset holds no real (unpadded) positions.")
    return [np.concatenate(block_samples) for block_samples in collected]


def _as_inputs(batch):
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if isinstance(batch, dict):
        token_ids = keras.ops.convert_to_numpy(batch["token_ids"])
        padding_mask = batch.get("padding_mask")
        if padding_mask is None:
            padding_mask = np.ones_like(token_ids)
        padding_mask = keras.ops.convert_to_numpy(padding_mask)
    else:
        token_ids = keras.ops.convert_to_numpy(batch)
        padding_mask = np.ones_like(token_ids)
    if token_ids.ndim != 2 or token_ids.dtype.kind not in "iu":
        raise ValueError(
            "`dataset` must yield batches of integer token ids of shape "
            f"(batch, length); received {token_ids.dtype} of shape "
            f"{token_ids.shape}."
        )
    return {
        "token_ids": token_ids.astype("int32"),
        "padding_mask": padding_mask.astype("int32"),
    }
