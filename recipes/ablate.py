"""Ablations: variants of SDGM and the GPT-2 and RWKV-7 baselines under one budget.

Every variant is one run of the corpus recipe (`recipes/ptb.py`,
`recipes/wt2.py`) with the same shared arguments (size, budget, optimizer),
data order and seeds, in its own process; only the variant's own flags
differ. The table (markdown and JSON, rewritten after every run) has per
variant: total and non-embedding parameters, ms per training step,
validation and test perplexity under both protocols of SPEC section 6, the
validation perplexity on windows longer than the training window where
measured, and the change from the reference variant (`--reference`, by
default `base`).

A variant whose validation perplexity is within `--close` (5%) of the
reference's is run again with more seeds (`--close-seeds`), and so is the
reference; the table then shows mean ± half the range over the seeds.

    KERAS_BACKEND=jax python recipes/ablate.py --corpus ptb \\
        --output-dir runs/ablate-ptb -- --hidden-dim 128 --num-atoms 64 \\
        --max-steps 150

Arguments after `--` go to every run whose model reads them (`python
recipes/ptb.py --help`; e.g. `--num-atoms` only to the SDGM rows, `--num-heads`
only to GPT-2 and RWKV-7, and the table says which rows went without which);
`--variant-flags NAME='FLAGS'` gives one variant flags of its own after
them (the convergence protocol's regularization, tuned per model family).
Both are checked by the recipe's parser before any run starts; `--seed`,
`--output-dir` and `--verbose` are refused there, since ablate sets them
for every run itself (use its own `--seed` and `--output-dir`).
Finished runs are reused and unfinished ones resumed when the command is
run again. A run whose flags changed is refused before any run starts,
finished (the flags its `metrics.json` records) or not (by the recipe:
its folder holds another config). `--variants` picks a subset.
"""

import argparse
import concurrent.futures
import os
import shlex
import subprocess
import sys
import threading
import time

import numpy as np

from keras_sdgm.training import recipe
from keras_sdgm.training import reporting
from keras_sdgm.utils.arguments import run_command

# The variant the others are compared with (`--reference`).
REFERENCE = "base"
LONG_WINDOWS = ["--long-eval-lengths", "256,512,1024"]
# The previous default's dictionary, trained at random position offsets.
SEPARABLE_WITH_OFFSETS = [
    "--dictionary",
    "separable_frequency",
    "--max-position-offset",
    "384",
]

# The paper's auxiliary weights (alpha, beta, delta; gamma, the NLL's, is 1).
PAPER_OBJECTIVE = [
    "--reconstruction-weight",
    "1",
    "--stft-weight",
    "1",
    "--prior-weight",
    "1",
]

# name: (what it changes, the recipe flags that make it).
VARIANTS = {
    "base": (
        "`sdgm_base`: the gated retention mixer and the position-"
        "independent dictionary (the defaults since the convergence runs "
        "of docs/ABLATIONS.md)",
        LONG_WINDOWS,
    ),
    "previous-default": (
        "`sdgm_base` before the convergence runs: the gated spectral mixer, "
        "the separable-frequency dictionary, trained at random position "
        "offsets in [0, 384]",
        ["--encoder-type", "gated_spectral"]
        + SEPARABLE_WITH_OFFSETS
        + LONG_WINDOWS,
    ),
    "dense-mixer": (
        "token mixer: the dense dilated convolutions covering the window "
        "(`--encoder-type dilated_convolution`, the default before commit "
        "676e4f2)",
        ["--encoder-type", "dilated_convolution"] + LONG_WINDOWS,
    ),
    "paper-architecture": (
        "the paper's model: 1 non-residual block, kernel-3 encoder, no "
        "feed-forward (`sdgm_paper`)",
        ["--preset", "sdgm_paper"],
    ),
    "single-kernel-encoder": (
        "the dense mixer with one kernel-3 convolution (receptive field 3) "
        "instead of the dilated stack covering the window",
        ["--encoder-type", "dilated_convolution", "--dilation-rates", "1"],
    ),
    "depthwise-mixer": (
        "token mixer: depthwise causal convolutions covering the window, "
        "then one projection (`--encoder-type depthwise`)",
        ["--encoder-type", "depthwise"] + LONG_WINDOWS,
    ),
    "gated-mixer": (
        "token mixer: the depthwise convolutions under a sigmoid gate "
        "(`--encoder-type gated`)",
        ["--encoder-type", "gated"] + LONG_WINDOWS,
    ),
    "spectral-mixer": (
        "token mixer: damped sinusoidal modes over every past position after "
        "one kernel-3 depthwise convolution (`--encoder-type spectral`)",
        ["--encoder-type", "spectral"] + LONG_WINDOWS,
    ),
    "gated-spectral-mixer": (
        "token mixer: the spectral one under a sigmoid gate "
        "(`--encoder-type gated_spectral`, the default from commit 676e4f2 "
        "to the convergence runs)",
        ["--encoder-type", "gated_spectral"] + LONG_WINDOWS,
    ),
    "tanh-coefficients": (
        "coefficient activation tanh instead of gelu",
        ["--coefficient-activation", "tanh"],
    ),
    "linear-coefficients": (
        "coefficient activation linear instead of gelu",
        ["--coefficient-activation", "linear"],
    ),
    "no-feedforward": ("no feed-forward", ["--intermediate-dim", "0"]),
    "separable-frequency-dictionary": (
        "sinusoidal atoms with one frequency per atom and feature, computed "
        "by two matrix products (`--dictionary separable_frequency`, the "
        "default before the static one), instead of a position-independent "
        "(K, D) matrix",
        ["--dictionary", "separable_frequency"] + LONG_WINDOWS,
    ),
    "spectral-dictionary": (
        "the paper's dictionary, a free frequency per atom and feature "
        "(`--dictionary spectral`, the default before the separable one)",
        ["--dictionary", "spectral"] + LONG_WINDOWS,
    ),
    "shared-frequency-dictionary": (
        "sinusoidal atoms with one frequency per atom (amplitude and phase "
        "per feature), mixed by one matrix product "
        "(`--dictionary shared_frequency`, the default for a while)",
        ["--dictionary", "shared_frequency"] + LONG_WINDOWS,
    ),
    "reconstruction-0.1": (
        "+ 0.1 x time-domain reconstruction (alpha)",
        ["--reconstruction-weight", "0.1"],
    ),
    "stft-0.1": ("+ 0.1 x STFT magnitude (beta)", ["--stft-weight", "0.1"]),
    "prior-0.001": ("+ 0.001 x GMM prior (delta)", ["--prior-weight", "0.001"]),
    "reconstruction-0.1-prior-0.001": (
        "+ 0.1 x reconstruction and 0.001 x GMM prior",
        ["--reconstruction-weight", "0.1", "--prior-weight", "0.001"],
    ),
    "paper-objective": (
        "the paper's objective, alpha = beta = gamma = delta = 1",
        PAPER_OBJECTIVE,
    ),
    "paper": (
        "the paper's model (`sdgm_paper`) and objective, alpha = beta = "
        "gamma = delta = 1",
        ["--preset", "sdgm_paper"] + PAPER_OBJECTIVE,
    ),
    "paper-no-stft": (
        "the paper's model and objective without the STFT term (beta = 0)",
        ["--preset", "sdgm_paper"] + PAPER_OBJECTIVE + ["--stft-weight", "0"],
    ),
    "paper-no-nll": (
        "the paper's model and objective without the NLL term (gamma = 0)",
        ["--preset", "sdgm_paper"] + PAPER_OBJECTIVE + ["--nll-weight", "0"],
    ),
    "position-offsets": (
        "the separable-frequency dictionary trained at random position "
        "offsets in [0, 384]",
        SEPARABLE_WITH_OFFSETS + LONG_WINDOWS,
    ),
    "gpt2": (
        "keras-hub GPT-2, same width, depth, window, vocabulary",
        ["--model", "gpt2"],
    ),
    "rwkv7": (
        "keras-hub RWKV-7 (attention-free), same width, depth, window, "
        "vocabulary",
        ["--model", "rwkv7"] + LONG_WINDOWS,
    ),
    "gpt2-small": (
        "keras-hub GPT-2 small's configuration (117M: 12 layers of 768, 12 "
        "heads), the paper's baseline",
        [
            "--model",
            "gpt2",
            "--hidden-dim",
            "768",
            "--num-layers",
            "12",
            "--num-heads",
            "12",
        ],
    ),
    "gpt2-5-layers": (
        "keras-hub GPT-2, same width, 5 layers (about the default SDGM's "
        "non-embedding parameters)",
        ["--model", "gpt2", "--num-layers", "5"],
    ),
}


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--corpus", choices=["ptb", "wikitext2"], default="ptb")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        help=f"Any of: {', '.join(VARIANTS)}.",
    )
    parser.add_argument(
        "--reference",
        default=REFERENCE,
        choices=list(VARIANTS),
        help="The variant the others are compared with: always run, and "
        "run again with the close variants.",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed of every variant's first run."
    )
    parser.add_argument(
        "--close",
        type=float,
        default=0.05,
        help="Relative gap to the reference below which a "
        "variant gets more seeds.",
    )
    parser.add_argument(
        "--close-seeds",
        type=int,
        default=2,
        help="Seeds for the close variants and the reference.",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="Runs at a time. With more than one, runs share "
        "the CPU and ms/step is only roughly comparable.",
    )
    parser.add_argument(
        "--variant-flags",
        nargs="+",
        default=[],
        metavar="NAME=FLAGS",
        help="Recipe flags for one variant only, after the shared ones and "
        "the variant's own, e.g. gpt2='--dropout 0.1'.",
    )
    parser.add_argument(
        "--output-dir", default=None, help="Default: runs/ablate-<corpus>."
    )
    parser.add_argument(
        "--results-dir",
        default=None,
        help="Where ablations.md/json go (default: --output-dir).",
    )
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:split])
    shared = argv[split + 1 :]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(
            f"Unknown variants {unknown}; known: {', '.join(VARIANTS)}."
        )
    if args.reference not in args.variants:
        args.variants.insert(0, args.reference)
    args.variant_flags = parse_variant_flags(args.variant_flags, args.variants)
    check_recipe_flags(args.corpus, shared, "the flags after `--`")
    for name, own in args.variant_flags.items():
        check_recipe_flags(
            args.corpus, [*shared, *own], f"--variant-flags {name}"
        )
    for name in args.variants:  # Every run's flags, before any run starts.
        recipe.parse_args(
            args.corpus,
            run_arguments(
                args.corpus, name, shared, args.variant_flags.get(name, [])
            )[0],
            prog=f"the run of {name} (the recipe's flags)",
        )
    output_dir = args.output_dir or os.path.join(
        "runs", f"ablate-{args.corpus}"
    )
    stale = stale_runs(args, output_dir, shared)
    if stale:
        resolved = (
            " (`architecture` is the SDGM arguments a run's flags resolved "
            "to when it started: a default has changed since, or the run is "
            "older than that record)"
            if any("'architecture'" in run for run in stale)
            else ""
        )
        raise SystemExit(
            "Finished runs in the output folder were made with other flags "
            "than this command gives them, so their rows would be another "
            "model's: " + "; ".join(stale) + f"{resolved}. Move them out of "
            f"{output_dir} to run them again, or run the command that made "
            "them (their config.json)."
        )
    results_dir = args.results_dir or output_dir
    os.makedirs(results_dir, exist_ok=True)
    command = " ".join(["python recipes/ablate.py"] + argv)

    lock = threading.Lock()

    def run_one(name_and_seed):
        name, seed = name_and_seed
        if reporting.read_metrics(run_dir(output_dir, name, seed)) is not None:
            return  # Finished earlier: reused.
        run_variant(
            args.corpus,
            name,
            seed,
            shared,
            output_dir,
            args.variant_flags.get(name, []),
        )
        with lock:
            write_table(args, output_dir, results_dir, command, shared)

    def run_all(seeds_of):
        todo = [
            (name, seed) for name in args.variants for seed in seeds_of(name)
        ]
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            # list(): re-raises the first failed run's error.
            list(pool.map(run_one, todo))

    run_all(lambda name: [args.seed])
    close = close_variants(args, output_dir)
    if close and args.close_seeds > 1:
        print(
            f"Within {args.close:.0%} of {args.reference}: "
            f"{', '.join(close)}; running {args.close_seeds} seeds of them "
            f"and of {args.reference}."
        )
        extra = range(args.seed, args.seed + args.close_seeds)
        run_all(lambda name: extra if name in close + [args.reference] else [])
    write_table(args, output_dir, results_dir, command, shared)


# What ablate gives every run itself, after the other flags: the same flags
# after `--` or in `--variant-flags` would be overridden without a word.
RUN_FLAGS = {
    "seed": "ablate's own --seed, before `--`",
    "output_dir": "ablate's own --output-dir, before `--` (each run goes "
    "to <output-dir>/<variant>/seed<N>)",
    "verbose": "none: ablate runs every recipe with --verbose 2",
}


def check_recipe_flags(corpus, flags, where):
    """Parses `flags` with the recipe's parser, before any run starts (a bad
    flag exits naming it), and refuses the flags in `RUN_FLAGS`, however
    spelled (`--seed=3`, an abbreviation)."""
    parser = recipe.build_parser(corpus)
    parser.prog = f"{where} (the recipe's flags)"
    unset = object()
    parser.set_defaults(**{dest: unset for dest in RUN_FLAGS})
    given = vars(parser.parse_args(flags))
    for dest, instead in RUN_FLAGS.items():
        if given[dest] is not unset:
            raise SystemExit(
                f"{where} sets --{dest.replace('_', '-')}, which ablate sets "
                f"for every run itself; use {instead}."
            )


def parse_variant_flags(entries, variants):
    """`["gpt2=--dropout 0.1", ...]` as `{"gpt2": ["--dropout", "0.1"]}`."""
    flags = {}
    for entry in entries:
        name, sep, text = entry.partition("=")
        if not sep or name not in variants:
            raise SystemExit(
                f"--variant-flags takes NAME=FLAGS with NAME one of the "
                f"variants run ({', '.join(variants)}). Received: {entry!r}"
            )
        if name in flags:
            raise SystemExit(
                f"--variant-flags names {name!r} twice; give its flags once."
            )
        flags[name] = shlex.split(text)
    return flags


def flag_segments(flags):
    """`flags` split before every `--flag`: each flag with its values."""
    segments = []
    for token in flags:
        if token.startswith("--") or not segments:
            segments.append([token])
        else:
            segments[-1].append(token)
    return segments


def run_arguments(corpus, name, shared, own=()):
    """A variant's recipe flags (but seed, output folder and verbosity),
    and the shared flags left out of them.

    The shared flags reach a run only where its model reads them
    (`recipe.MODEL_FLAGS`): `--num-atoms` goes to the SDGM rows,
    `--num-heads` to GPT-2 and RWKV-7, and the recipe refuses the others.
    The variant's own flags and `own` (its `--variant-flags`) always go.
    """
    parser = recipe.build_parser(corpus)
    variant = [*VARIANTS[name][1], *own]
    model = parser.parse_args([*shared, *variant]).model

    def read(segment):
        return all(
            model in recipe.MODEL_FLAGS.get(dest, recipe.MODELS)
            for dest in recipe.given_flags(parser, segment)
        )

    kept, dropped = [], []
    for segment in flag_segments(shared):
        (kept if read(segment) else dropped).extend(segment)
    return [*kept, *variant], dropped


def run_dir(output_dir, name, seed):
    return os.path.join(output_dir, name, f"seed{seed}")


def recipe_arguments(corpus, name, seed, shared, output_dir, own=()):
    """The recipe flags of one run of variant `name` (but verbosity)."""
    return [
        *run_arguments(corpus, name, shared, own)[0],
        "--seed",
        str(seed),
        "--output-dir",
        run_dir(output_dir, name, seed),
    ]


def stale_runs(args, output_dir, shared):
    """The finished runs of `args.variants` whose recorded config differs
    from the one this command gives them, each as `"FOLDER (differs in
    [...])"`."""
    stale = []
    for name in args.variants:
        own = args.variant_flags.get(name, [])
        for metrics in finished_runs(output_dir, name):
            seed = metrics["config"]["seed"]
            config = recipe.parse_args(
                args.corpus,
                recipe_arguments(
                    args.corpus, name, seed, shared, output_dir, own
                ),
            ).saved_config()
            changed = recipe.config_differences(metrics["config"], config)
            if changed:
                folder = run_dir(output_dir, name, seed)
                stale.append(f"{folder} (differs in {changed})")
    return stale


def run_variant(corpus, name, seed, shared, output_dir, own=()):
    """One recipe run in its own process (which resumes an unfinished one),
    in `recipe.child_environment()` (glibc's huge pages where they help).

    `own`: the flags `--variant-flags` gives this variant, last.
    """
    recipe_args = [
        *recipe_arguments(corpus, name, seed, shared, output_dir, own),
        "--verbose",
        "2",
    ]
    environ = recipe.child_environment()
    tunables = environ.get("GLIBC_TUNABLES")
    print(
        f"=== {time.strftime('%H:%M:%S')} {name}, seed {seed}: "
        f"{' '.join(recipe_args)}"
        + (f" (GLIBC_TUNABLES={tunables})" if tunables else ""),
        flush=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from keras_sdgm.training.recipe import main; "
            "main(sys.argv[1], sys.argv[2:])",
            corpus,
            *recipe_args,
        ],
        check=True,
        env=environ,
    )


def finished_runs(output_dir, name):
    """The `metrics.json` of each finished seed of `name`, with the epoch
    of its best validation perplexity (from its `log.csv`; the evaluated
    checkpoint's) as `best_epoch`, counted from 1."""
    folder = os.path.join(output_dir, name)
    seed_dirs = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    runs = []
    for seed_dir in seed_dirs:
        metrics = reporting.read_metrics(os.path.join(folder, seed_dir))
        if metrics is None:
            continue
        log = reporting.read_csv_log(os.path.join(folder, seed_dir, "log.csv"))
        perplexities = [
            r["val_perplexity"] for r in log if "val_perplexity" in r
        ]
        if perplexities:
            metrics["best_epoch"] = 1 + int(np.argmin(perplexities))
        runs.append(metrics)
    return runs


def valid_perplexity(metrics):
    return metrics["perplexity"]["valid"]["non_overlapping"]["perplexity"]


def close_variants(args, output_dir):
    reference = [
        valid_perplexity(m) for m in finished_runs(output_dir, args.reference)
    ]
    if not reference:
        return []
    ref = np.mean(reference)
    return [
        name
        for name in args.variants
        if name != args.reference
        and finished_runs(output_dir, name)
        and abs(
            np.mean(
                [valid_perplexity(m) for m in finished_runs(output_dir, name)]
            )
            - ref
        )
        < args.close * ref
    ]


def summarize(runs):
    """Mean and half-range over seeds of every number in the table."""

    def stat(values):
        values = np.asarray(values, "float64")
        return {
            "mean": float(values.mean()),
            "spread": float((values.max() - values.min()) / 2),
        }

    first = runs[0]
    row = {
        "seeds": [m["config"]["seed"] for m in runs],
        "parameters": first["parameters"],
        # `None` where a run had too few steps to time (a smoke test).
        "ms_per_step": None,
        "config": first["config"],
    }
    if all(m["training_tokens_per_second"] for m in runs):
        row["ms_per_step"] = stat(
            [
                1000
                * m["config"]["batch_size"]
                * m["config"]["sequence_length"]
                / m["training_tokens_per_second"]
                for m in runs
            ]
        )
    for key, field, scale in [
        ("epochs", "epochs_logged", 1),
        ("best_epoch", "best_epoch", 1),
        ("wall_minutes", "wall_time_seconds", 1 / 60),
    ]:
        if all(field in m for m in runs):
            row[key] = stat([m[field] * scale for m in runs])
    for split in ("valid", "test"):
        for protocol in ("non_overlapping", "sliding"):
            row[f"{split}_{protocol}"] = stat(
                [m["perplexity"][split][protocol]["perplexity"] for m in runs]
            )
    # The windows every seed measured (a run made with other shared flags
    # may lack some).
    lengths = set.intersection(
        *(set(m["perplexity"]["valid"].get("long_windows", {})) for m in runs)
    )
    for length in sorted(lengths, key=int):
        row[f"valid_window_{length}"] = stat(
            [
                m["perplexity"]["valid"]["long_windows"][length]["perplexity"]
                for m in runs
            ]
        )
    return row


def write_table(args, output_dir, results_dir, command, shared):
    rows = {
        name: summarize(runs)
        for name in args.variants
        if (runs := finished_runs(output_dir, name))
    }
    long_columns = sorted(
        {
            k
            for row in rows.values()
            for k in row
            if k.startswith("valid_window_")
        },
        key=lambda k: int(k.rsplit("_", 1)[1]),
    )
    not_given = {
        name: dropped
        for name in rows
        if (
            dropped := run_arguments(
                args.corpus, name, shared, args.variant_flags.get(name, [])
            )[1]
        )
    }
    reporting.write_json(
        os.path.join(results_dir, "ablations.json"),
        {
            "command": command,
            "corpus": args.corpus,
            "shared_arguments": shared,
            "shared_arguments_not_given": not_given,
            "variant_arguments": args.variant_flags,
            "reference": args.reference,
            "variants": rows,
        },
    )
    reference = rows.get(args.reference)

    def cell(stat, digits=1):
        if stat is None:
            return "—"
        text = f"{stat['mean']:.{digits}f}"
        return text + (
            f" ± {stat['spread']:.{digits}f}" if stat["spread"] else ""
        )

    def count_cell(stat):
        """Whole numbers without decimals (epochs: one seed, or seeds
        that agree)."""
        whole = stat is not None and all(
            float(stat[k]).is_integer() for k in ("mean", "spread")
        )
        return cell(stat, 0 if whole else 1)

    header = [
        "variant",
        "what it changes",
        "seeds",
        "params (total / non-emb)",
        "ms/step",
        "epochs (best)",
        "wall (min)",
        "valid ppl (non-overlap / sliding)",
        "test ppl (non-overlap / sliding)",
        f"vs {args.reference} (valid)",
    ]
    header += [f"valid ppl, window {k.rsplit('_', 1)[1]}" for k in long_columns]
    table = []
    for name, row in rows.items():
        params = row["parameters"]
        change = "—"
        if reference is not None and name != args.reference:
            ratio = (
                row["valid_non_overlapping"]["mean"]
                / reference["valid_non_overlapping"]["mean"]
            )
            change = f"{100 * (ratio - 1):+.1f}%"
        table.append(
            [
                f"`{name}`",
                VARIANTS[name][0]
                + (
                    f" (`{shlex.join(args.variant_flags[name])}`)"
                    if args.variant_flags.get(name)
                    else ""
                ),
                str(len(row["seeds"])),
                f"{reporting.millions(params['total'])} / "
                f"{reporting.millions(params['non_embedding'])}",
                cell(row["ms_per_step"], 0),
                f"{count_cell(row.get('epochs'))} "
                f"({count_cell(row.get('best_epoch'))})",
                cell(row.get("wall_minutes")),
                f"{cell(row['valid_non_overlapping'])} / {cell(row['valid_sliding'])}",
                f"{cell(row['test_non_overlapping'])} / {cell(row['test_sliding'])}",
                change,
            ]
            + [cell(row.get(k)) for k in long_columns]
        )
    note = "".join(
        f"\n\nFlags after `--` that `{name}`'s model does not read, not "
        f"given to it: `{shlex.join(dropped)}`."
        for name, dropped in not_given.items()
    )
    reporting.write_markdown(
        os.path.join(results_dir, "ablations.md"),
        f"`{command}`{note}\n\n" + reporting.markdown_table(header, table),
    )


if __name__ == "__main__":
    run_command(main)
