"""Generation benchmark: per-token latency vs context, and sample quality.

    KERAS_BACKEND=jax python benchmarks/generate.py
    KERAS_BACKEND=jax python benchmarks/generate.py \
        --quality-model saved_models/ptb_sdgm_small/model.keras \
        --judge-model runs/ptb-gpt2/best.keras

Latency: SDGM (`--preset`, its token mixer `--encoder-type`, default the
preset's) and keras-hub's GPT-2 and RWKV-7 of the same hidden size, depth
and vocabulary, measured side by side in one run (`--models`, default all
three). For each context C, the timed call is one compiled cached decoding
step at position C, which is the body of `generate()`'s loop: SDGM's
`call_with_cache` (its cache is a fixed number of convolution frames per
block, whatever C), GPT-2's `call_with_cache` with a key/value cache of
C + 1 positions, as keras-hub allocates for `max_length = C + 1`, and
RWKV-7's `call_with_cache` (`RWKV7CausalLM`'s own step, `rnn_mode=True`),
whose cache is what its `_build_cache` allocates: per layer one
`(heads, head_size, head_size)` state and the last token of its time and
channel mixes, the same size whatever C. RWKV-7 has head size
`--rwkv-head-size` (default `hidden_dim // num_heads`), a `4 * hidden_dim`
channel mix and keras-hub's default LoRA widths, as in
`benchmarks/run.py`; its step runs keras-hub's `rnn_generalized_delta_rule`
for one position unless the `rwkv_ops` package (GPU kernels, not a
dependency here) is installed (`model_details` in the JSON says which).
Cache contents do not change the cost, so the caches are zeros and prefill
is not timed. Median of `--steps` calls after two warm-up calls (of all
`--rounds` sweeps' calls, see `latency_benchmark`); weights untrained.

Quality (with `--quality-model`): samples from a trained SDGM in each
`coefficient_sampling` mode (`encoder`, `prior`, `posterior`; the GMM
priors are first fitted to training-split coefficients with
`fit_coefficient_gmm`), all with the same top-k token sampler, scored by
distinct-1/2 (unique n-grams over all n-grams of all samples), repetition
(the fraction of each sample's 4-grams that repeat an earlier 4-gram of the
same sample) and, with `--judge-model`, the perplexity of the samples under
that separately trained model (same vocabulary).

Writes `generate.json`, `generate.md` (per context each model's ms/token,
the peers' over SDGM's side by side, i.e. how many times faster SDGM is,
and SDGM's against its own at the shortest context) and
`generate_latency.png` to `--output-dir`; `--contexts` with no value skips
the latency part.
"""

import argparse
import collections
import os
import statistics

import keras
import keras_hub
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_sdgm  # noqa: E402
from keras_sdgm.datasets import load_lines  # noqa: E402
from keras_sdgm.datasets import token_windows  # noqa: E402
from keras_sdgm.datasets import tokenize_corpus  # noqa: E402
from keras_sdgm.training import model_builders  # noqa: E402
from keras_sdgm.training import reporting  # noqa: E402
from keras_sdgm.utils import arguments  # noqa: E402
from keras_sdgm.utils import timing  # noqa: E402
from keras_sdgm.utils.arguments import run_command  # noqa: E402

MODELS = ("sdgm", "gpt2", "rwkv7")
NAMES = {"sdgm": "SDGM", "gpt2": "GPT-2", "rwkv7": "RWKV-7"}
PLOT_LABELS = {"gpt2": "GPT-2 (KV cache)", "rwkv7": "RWKV-7 (state)"}


def rwkv_head_size(args):
    """`--rwkv-head-size`, or `hidden_dim // num_heads`; 0 if it does not
    divide `hidden_dim`."""
    return model_builders.rwkv7_head_size(
        args.hidden_dim, args.num_heads, args.rwkv_head_size
    )


def build_models(args, max_context):
    builders = {
        "sdgm": lambda: model_builders.sdgm_causal_lm(
            args.preset,
            args.vocabulary_size,
            hidden_dim=args.hidden_dim,
            num_layers=args.num_layers,
            **arguments.sdgm_block_overrides(args),
        ),
        "gpt2": lambda: model_builders.gpt2_causal_lm(
            args.vocabulary_size,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            hidden_dim=args.hidden_dim,
            max_sequence_length=max_context + 1,
        ),
        "rwkv7": lambda: model_builders.rwkv7_causal_lm(
            args.vocabulary_size,
            num_layers=args.num_layers,
            hidden_dim=args.hidden_dim,
            head_size=rwkv_head_size(args),
        ),
    }
    return {name: builders[name]() for name in args.models}


def model_details(models):
    """What each model was built as, beyond the sizes in the config."""
    details = {}
    if "sdgm" in models:
        backbone = models["sdgm"].backbone
        details["sdgm"] = {
            "encoder_type": backbone.encoder_type,
            "dictionary_type": backbone.dictionary_type,
            "modes_per_feature": backbone.modes_per_feature,
            "data_dependent_decay": backbone.data_dependent_decay,
        }
    if "rwkv7" in models:
        lm = models["rwkv7"]
        op = lm.backbone.rwkv_layers[0].att.RWKV7_OP_RNN
        details["rwkv7"] = {
            "head_size": lm.backbone.head_size,
            "delta_rule_operator": f"{op.__module__}.{op.__name__}",
        }
    return details


def empty_cache(name, lm, batch_size, context):
    if name == "sdgm":
        return [
            block.encoder.initial_cache(batch_size)
            for block in lm.backbone.blocks
        ]
    backbone = lm.backbone
    if name == "rwkv7":
        # The shapes of `RWKV7CausalLM._build_cache`, without its prefill.
        heads = backbone.hidden_size // backbone.head_size
        return [
            ops.zeros(
                (
                    batch_size,
                    backbone.num_layers,
                    heads,
                    backbone.head_size,
                    backbone.head_size,
                ),
                lm.compute_dtype,
            ),
            ops.zeros(
                (batch_size, backbone.num_layers, 2, 1, backbone.hidden_size),
                lm.compute_dtype,
            ),
        ]
    head_dim = backbone.hidden_dim // backbone.num_heads
    return ops.zeros(
        (
            batch_size,
            backbone.num_layers,
            2,
            context + 1,
            backbone.num_heads,
            head_dim,
        )
    )


def cached_step(name, lm):
    """`lm`'s cached decoding step, compiled as the backend compiles
    `generate()`'s loop: `step(token_ids, cache, index) -> logits`.

    One compiled function per model, reused at every context (JAX and
    TensorFlow retrace it for GPT-2's larger caches).
    """
    if name == "rwkv7":
        # Its state holds the whole context: the step takes no position.
        def call(t, c, i):
            return lm.call_with_cache(t, c)[0]
    else:

        def call(t, c, i):
            return lm.call_with_cache(t, c, i)[0]

    return timing.compiled(
        call, lm.trainable_variables + lm.non_trainable_variables
    )


def step_seconds(name, lm, batch_size, context, steps, step=None):
    """Seconds of `steps` compiled cached steps at position `context`.

    `step`: `cached_step(name, lm)`, or `None` to compile it here.
    """
    step = step or cached_step(name, lm)
    token_ids = ops.ones((batch_size, 1), "int32")
    cache = empty_cache(name, lm, batch_size, context)
    index = ops.convert_to_tensor(context, "int32")
    return timing.call_seconds(lambda: step(token_ids, cache, index), steps)


def latency_benchmark(args):
    """Each model's median step time at each context.

    With `--rounds R`, the whole sweep (every context, every model in
    turn) runs `R` times and each median is over all `R * --steps` calls,
    so that a slow spell of the machine, or the first measurement of the
    process, weighs on every model alike instead of on whichever model was
    being timed.
    """
    models = build_models(args, max(args.contexts))
    steps = {name: cached_step(name, lm) for name, lm in models.items()}
    samples = collections.defaultdict(list)
    for round_index in range(args.rounds):
        for context in args.contexts:
            for name, lm in models.items():
                seconds = step_seconds(
                    name, lm, args.batch_size, context, args.steps, steps[name]
                )
                samples[name, context] += seconds
                print(
                    f"round {round_index + 1}/{args.rounds} {name:5s} "
                    f"context {context:6d}: "
                    f"{1e3 * statistics.median(seconds):8.2f} ms/token",
                    flush=True,
                )
    rows = []
    for context in args.contexts:
        for name in models:
            seconds = statistics.median(samples[name, context])
            rows.append(
                {
                    "model": name,
                    "context": context,
                    "latency_ms": 1e3 * seconds,
                    "tokens_per_second": args.batch_size / seconds,
                }
            )
    parameters = {name: lm.count_params() for name, lm in models.items()}
    return rows, parameters, model_details(models)


def text_quality(samples):
    """distinct-1/2 over all samples, and the within-sample 4-gram repetition."""

    def ngrams(tokens, n):
        return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]

    result = {}
    for n in (1, 2):
        grams = [g for s in samples for g in ngrams(s, n)]
        result[f"distinct_{n}"] = len(set(grams)) / max(len(grams), 1)
    repeats = []
    for s in samples:
        grams = ngrams(s, 4)
        if grams:
            repeats.append(1 - len(set(grams)) / len(grams))
    result["repetition_4gram"] = float(np.mean(repeats)) if repeats else 0.0
    return result


def quality_benchmark(args):
    lm = keras.saving.load_model(args.quality_model, compile=False)
    tokenizer = lm.preprocessor.tokenizer
    train = tokenize_corpus(
        tokenizer, load_lines(args.corpus, "train", args.data_dir)
    )
    windows = token_windows(train, lm.backbone.window_length)[:, :-1]
    rng = np.random.default_rng(args.seed)
    windows = windows[rng.permutation(len(windows))[: args.gmm_windows]]
    keras_sdgm.fit_coefficient_gmm(
        lm, np.array_split(windows, 8), seed=args.seed
    )
    judge = None
    if args.judge_model:
        judge = keras.saving.load_model(args.judge_model, compile=False)
        if (
            judge.preprocessor.tokenizer.get_vocabulary()
            != tokenizer.get_vocabulary()
        ):
            raise ValueError(
                f"{args.judge_model} has another vocabulary than "
                f"{args.quality_model}; the judge must share it."
            )
    valid = load_lines(args.corpus, "valid", args.data_dir)
    prompts = [
        " ".join(line.split()[: args.prompt_words])
        for line in valid
        if len(line.split()) > args.prompt_words
    ]
    prompts = prompts[: args.samples]
    results = {}
    for mode in ("encoder", "prior", "posterior"):
        lm.compile(
            sampler=keras_hub.samplers.TopKSampler(
                k=args.top_k, seed=args.seed
            ),
            coefficient_sampling=mode,
            coefficient_seed=args.seed,
        )
        texts = lm.generate(
            prompts, max_length=args.length, stop_token_ids=None
        )
        samples = [
            [int(t) for t in tokenizer(text)][args.prompt_words :]
            for text in texts
        ]
        scores = text_quality(samples)
        if judge is not None:
            # One <eos> after each sample, as in the corpus.
            stream = np.concatenate(
                [
                    np.asarray(tokenizer(text), "int32").tolist() + [0]
                    for text in texts
                ]
            )
            scores["judge_perplexity"] = keras_sdgm.evaluate_perplexity(
                judge, stream, verbose=0
            )["perplexity"]
        scores["example"] = texts[0]
        results[mode] = scores
        print(
            mode,
            {k: v for k, v in scores.items() if k != "example"},
            flush=True,
        )
    return results


def write_outputs(args, rows, parameters, quality, details=None):
    os.makedirs(args.output_dir, exist_ok=True)
    result = {
        "backend": keras.config.backend(),
        "config": {k: v for k, v in vars(args).items()},
        "parameters": parameters,
        "model_details": details or {},
        "latency": rows,
        "quality": quality,
        "versions": reporting.library_versions(),
        "environment": reporting.speed_settings(),
        # Each plot's legend: the models it draws.
        "plots": {},
    }
    lines = []
    if rows:
        lines += latency_table(args, rows)
        result["plots"]["generate_latency.png"] = plot_latency(args, rows)
    reporting.write_json(os.path.join(args.output_dir, "generate.json"), result)
    if quality:
        lines.append(
            reporting.markdown_table(
                [
                    "mode",
                    "distinct-1",
                    "distinct-2",
                    "4-gram repetition",
                    "judge perplexity",
                ],
                [
                    [
                        mode,
                        f"{q['distinct_1']:.3f}",
                        f"{q['distinct_2']:.3f}",
                        f"{q['repetition_4gram']:.3f}",
                        "-"
                        if q.get("judge_perplexity") is None
                        else f"{q['judge_perplexity']:.1f}",
                    ]
                    for mode, q in quality.items()
                ],
            )
        )
    reporting.write_markdown(
        os.path.join(args.output_dir, "generate.md"), "\n".join(lines)
    )


def latency_table(args, rows):
    """Per context: each model's ms/token, then the peers' over SDGM's."""
    by = {(r["model"], r["context"]): r["latency_ms"] for r in rows}
    models = [m for m in MODELS if m in args.models]
    peers = [m for m in models if m != "sdgm"] if "sdgm" in models else []
    cells = []
    for context in args.contexts:
        row = [str(context)]
        row += [f"{by[(m, context)]:.2f}" for m in models]
        sdgm = by.get(("sdgm", context))
        row += [f"{by[(p, context)] / sdgm:.2f}x" for p in peers]
        if sdgm is not None:
            row.append(f"{sdgm / by[('sdgm', args.contexts[0])]:.2f}x")
        cells.append(row)
    header = ["context"] + [f"{NAMES[m]} ms/token" for m in models]
    header += [f"{NAMES[p]} / SDGM" for p in peers]
    if "sdgm" in models:
        header.append("SDGM vs its own at the shortest")
    return [reporting.markdown_table(header, cells), ""]


def plot_latency(args, rows):
    """Writes the latency plot; returns its legend labels."""
    by = {(r["model"], r["context"]): r for r in rows}
    figure, axis = plt.subplots(figsize=(6, 4))
    for name in (m for m in MODELS if m in args.models):
        axis.plot(
            args.contexts,
            [by[(name, c)]["latency_ms"] for c in args.contexts],
            marker="o",
            label=PLOT_LABELS.get(name, NAMES[name]),
        )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("context (tokens)")
    axis.set_ylabel("ms per generated token")
    axis.set_title(
        f"Cached decoding step, {keras.config.backend()}, "
        f"batch {args.batch_size}"
    )
    labels = axis.get_legend_handles_labels()[1]
    axis.legend()
    figure.tight_layout()
    figure.savefig(
        os.path.join(args.output_dir, "generate_latency.png"), dpi=100
    )
    plt.close(figure)
    return labels


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--contexts",
        type=int,
        nargs="*",
        default=[128, 1024, 4096, 8192],
        help="Contexts of the latency benchmark; none to skip it.",
    )
    add(
        "--models",
        nargs="+",
        default=list(MODELS),
        choices=MODELS,
        help="Models of the latency benchmark.",
    )
    add("--preset", default="sdgm_base")
    arguments.add_sdgm_block_flags(parser)
    add("--hidden-dim", type=int, default=512)
    add("--num-layers", type=int, default=2)
    add("--num-heads", type=int, default=8)
    add(
        "--rwkv-head-size",
        type=int,
        default=None,
        help="RWKV-7's head size, a divisor of --hidden-dim; default: "
        "hidden_dim // num_heads.",
    )
    add("--vocabulary-size", type=int, default=10000)
    add("--batch-size", type=int, default=1)
    add("--steps", type=int, default=20)
    add(
        "--rounds",
        type=arguments.positive_int,
        default=1,
        help="Sweeps over every context and model, one after the other; "
        "each latency is the median over all of them.",
    )
    add("--quality-model", default=None)
    add("--judge-model", default=None)
    add("--corpus", default="ptb")
    add("--data-dir", default=None)
    add("--samples", type=int, default=32)
    add("--prompt-words", type=int, default=4)
    add("--length", type=int, default=48)
    add("--top-k", type=int, default=40)
    add("--gmm-windows", type=int, default=400)
    add("--seed", type=int, default=0)
    add("--output-dir", default="benchmarks/results")
    args = parser.parse_args(argv)
    if "rwkv7" in args.models and args.contexts and not rwkv_head_size(args):
        parser.error(
            "RWKV-7's head size must divide --hidden-dim "
            f"{args.hidden_dim}; pass another --rwkv-head-size."
        )
    return args


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    rows, parameters, details = (
        latency_benchmark(args) if args.contexts else ([], {}, {})
    )
    quality = quality_benchmark(args) if args.quality_model else None
    write_outputs(args, rows, parameters, quality, details)


if __name__ == "__main__":
    run_command(main)
