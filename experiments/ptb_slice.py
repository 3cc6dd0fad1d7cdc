"""Quick comparisons on a PTB slice: same data, budget and seeds for all.

Trains each variant on the first 3,000 lines of PTB train (L=32, D=64,
batch 32, Adam, 5 epochs) and evaluates on the first 400 lines of PTB
valid (non-overlapping windows), for several seeds. Prints a table and
writes JSON.

    KERAS_BACKEND=jax python experiments/ptb_slice.py --seeds 0 1 2

Variants:
- `sdgm`: the package default (`sdgm_base` shape at this size).
- `sdgm_unit_amplitude`: the same, with the dictionary amplitudes started
  at standard deviation sqrt(2 / K) (a unit-variance reconstruction)
  instead of the default 0.02.
- `gpt2`: keras-hub's GPT-2 with the same vocabulary, window, width and
  depth (2 heads).
"""

import argparse
import json
import math
import time

import keras
import keras_hub
import numpy as np

from keras_sdgm import datasets
from keras_sdgm import evaluate_perplexity
from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLM
from keras_sdgm.models import SDGMCausalLMPreprocessor
from keras_sdgm.models import SDGMTokenizer

LENGTH, HIDDEN, ATOMS, LAYERS = 32, 64, 32, 2


def build(variant, preprocessor, seed):
    vocabulary_size = preprocessor.tokenizer.vocabulary_size()
    if variant == "gpt2":
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=vocabulary_size, num_layers=LAYERS, num_heads=2,
            hidden_dim=HIDDEN, intermediate_dim=4 * HIDDEN, dropout=0.0,
            max_sequence_length=LENGTH,
        )
        return keras_hub.models.GPT2CausalLM(backbone, preprocessor=preprocessor)
    backbone = SDGMBackbone(
        vocabulary_size=vocabulary_size, hidden_dim=HIDDEN, num_atoms=ATOMS,
        sequence_length=LENGTH, num_layers=LAYERS,
    )
    if variant == "sdgm_unit_amplitude":
        for block in backbone.blocks:
            amplitude = block.dictionary.amplitude
            amplitude.assign(keras.random.normal(
                amplitude.shape, stddev=math.sqrt(2.0 / ATOMS), seed=seed
            ))
    return SDGMCausalLM(backbone, preprocessor=preprocessor)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+",
                        default=["sdgm", "sdgm_unit_amplitude", "gpt2"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default="ptb_slice.json")
    args = parser.parse_args()

    train_lines = datasets.load_lines("ptb", "train", args.data_dir)[:3000]
    valid_lines = datasets.load_lines("ptb", "valid", args.data_dir)[:400]
    tokenizer = SDGMTokenizer(SDGMTokenizer.build_vocabulary(train_lines))
    preprocessor = SDGMCausalLMPreprocessor(tokenizer, sequence_length=LENGTH)
    train_ids = datasets.tokenize_corpus(tokenizer, train_lines)
    valid_ids = datasets.tokenize_corpus(tokenizer, valid_lines)

    results = []
    for variant in args.variants:
        for seed in args.seeds:
            keras.utils.set_random_seed(seed)
            lm = build(variant, preprocessor, seed)
            lm.compile(
                optimizer=keras.optimizers.Adam(args.learning_rate),
                weighted_metrics=[keras_hub.metrics.Perplexity(from_logits=True)],
            )
            started = time.time()
            lm.fit(
                datasets.language_model_dataset(train_ids, LENGTH, 32, seed=seed),
                epochs=args.epochs, verbose=0,
            )
            perplexity = evaluate_perplexity(lm, valid_ids, verbose=0)["perplexity"]
            results.append({"variant": variant, "seed": seed,
                            "val_perplexity": perplexity,
                            "train_seconds": time.time() - started})
            print(f"{variant:22s} seed {seed}: {perplexity:7.1f}", flush=True)

    print(f"\n{'variant':22s} {'val ppl per seed':>28s} {'mean':>7s}")
    for variant in args.variants:
        values = [r["val_perplexity"] for r in results if r["variant"] == variant]
        cells = " ".join(f"{v:6.1f}" for v in values)
        print(f"{variant:22s} {cells:>28s} {np.mean(values):7.1f}")
    with open(args.output, "w") as f:
        json.dump({"backend": keras.config.backend(), "args": vars(args),
                   "results": results}, f, indent=2)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
