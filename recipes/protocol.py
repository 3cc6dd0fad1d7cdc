"""The convergence protocols: every row of the results table, both corpora.

    KERAS_BACKEND=jax python recipes/protocol.py --protocol cpu
    KERAS_BACKEND=jax python recipes/protocol.py --protocol gpu   # a GPU
    python recipes/protocol.py --protocol cpu --dry-run           # commands

Each corpus is one `recipes/ablate.py` table, run as its own command with
the protocol's shared flags: the same rows (`ROWS`), data order, seeds and
budget for every model, early stopping on validation perplexity, a second
seed for any row within 5% of the default SDGM's (`base`: `sdgm_base`
as it ships; `previous-default` is the default before the convergence
runs of docs/ABLATIONS.md), finished runs
reused and unfinished ones resumed when the command is run again. Flags
after `--` go to every run after the protocol's own and override them
(e.g. `--max-steps 2` for a smoke test); they are checked before anything
runs, and `--seed`, `--output-dir` and `--verbose` are refused (each run's
are the protocol's).

Every SDGM row has its preset's number of atoms (`sdgm_base` 128, the
paper's rows 256).

- `cpu`: D=256, L=128, batch 32, cosine schedule after a warm-up of 200
  steps, up to 10 epochs on PTB and 3 on WikiText-2 (`CPU_EPOCHS`): the
  size the convergence issue proposes for about an hour per run on this
  project's 2-core machine. Before
  the table, a regularization and schedule sweep on PTB (`SWEEP`): every
  setting for each model family's own row (`FAMILIES`: the default SDGM,
  GPT-2, RWKV-7), the same settings and budget for each family. Every
  row of both tables then runs with its family's setting of lowest PTB
  validation perplexity (`<output-dir>/sweep/sweep.md` and `.json`).
- `gpu`: the paper's settings (D=512, L=128, batch 32, up to 10
  epochs) with XLA, plus keras-hub's GPT-2 small configuration (117M:
  12 layers of 768, 12 heads), the paper's baseline; the recipe's
  regularization (no dropout), no sweep.

Tables go to `<--output-dir>/<corpus>/ablations.md` (and `.json`), the runs
to folders beside them; each sweep setting is an ablation table of its own
in `<--output-dir>/sweep/<setting>/`. The default `--output-dir`,
`docs/results/protocol-<protocol>`, is in the repository: the protocol
takes days on a CPU, and each finished run's records (`config.json`,
`log.csv`, `metrics.json`) and the tables are committed as they come
(`.gitignore` leaves out the models and checkpoints), so that a later
checkout reuses them instead of training them again.
"""

import argparse
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np

from keras_sdgm.training import reporting

if __package__ in (None, ""):
    # Run as a file (`python recipes/protocol.py`): its sibling
    # `recipes/ablate.py` is imported as `recipes.ablate`, as the tests do.
    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from recipes import ablate  # noqa: E402

CORPORA = ("ptb", "wikitext2")
# The table's rows: `recipes/ablate.py` variants.
ROWS = (
    "base",
    "previous-default",
    "spectral-dictionary",
    "paper",
    "paper-no-stft",
    "paper-no-nll",
    "gpt2",
    "rwkv7",
)
# Model family: the row its setting is swept on. Rows not named here are
# SDGM's and take the default SDGM's setting.
FAMILIES = {"sdgm": "base", "gpt2": "gpt2", "rwkv7": "rwkv7"}
# The row the others are compared with, and whose close rows get a second
# seed: the default SDGM.
REFERENCE = FAMILIES["sdgm"]
# The sweep's settings (recipe flags after the protocol's): dropout, then
# weight decay (1e-5 is the recipe's default, next to none), then the
# plateau schedule instead of the cosine (0 turns the warm-up off).
SWEEP = (
    ("--dropout", "0.0", "--weight-decay", "1e-05"),
    ("--dropout", "0.1", "--weight-decay", "1e-05"),
    ("--dropout", "0.3", "--weight-decay", "1e-05"),
    ("--dropout", "0.1", "--weight-decay", "0.1"),
    (
        "--dropout",
        "0.1",
        "--weight-decay",
        "1e-05",
        "--lr-schedule",
        "plateau",
        "--warmup-steps",
        "0",
    ),
)
SWEEP_CORPUS = "ptb"
# Where the protocols' runs go by default: the repository's run records.
RECORDS_DIR = os.path.join("docs", "results")


# Epochs per corpus on the CPU. A WikiText-2 epoch is 2.25x PTB's tokens
# through a 3.3x larger output layer (33,278 words): 16-24 minutes of
# training here against PTB's 3-5 (docs/RESULTS.md, "WikiText-2's
# budget"), so 3 epochs keep a run near an hour: about 1,530 steps,
# against PTB's 2,270 at most.
CPU_EPOCHS = {"ptb": 10, "wikitext2": 3}


def _sizes(hidden_dim, epochs):
    """The flags both protocols share: width `hidden_dim`, up to `epochs`."""
    return [
        "--hidden-dim",
        str(hidden_dim),
        "--sequence-length",
        "128",
        "--batch-size",
        "32",
        "--epochs",
        str(epochs),
        "--patience",
        "2",
    ]


PROTOCOLS = {
    "cpu": {
        "rows": ROWS,
        "flags": {
            corpus: _sizes(256, CPU_EPOCHS[corpus])
            + ["--lr-schedule", "cosine", "--warmup-steps", "200"]
            for corpus in CORPORA
        },
        "sweep": SWEEP,
    },
    "gpu": {
        "rows": ROWS + ("gpt2-small",),
        "flags": {
            corpus: _sizes(512, 10) + ["--jit-compile", "true"]
            for corpus in CORPORA
        },
        "sweep": (),
    },
}


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), required=True)
    parser.add_argument(
        "--corpora", nargs="+", choices=CORPORA, default=list(CORPORA)
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help=f"Default: {os.path.join(RECORDS_DIR, 'protocol-<protocol>')}.",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Print the commands instead of running them.",
    )
    return parser


def setting_name(flags):
    """A sweep setting's folder, e.g. `dropout-0.1-weight-decay-1e-05`."""
    return "-".join(flag.lstrip("-") for flag in flags)


def sweep_dir(output_dir):
    return os.path.join(output_dir, "sweep", SWEEP_CORPUS)


def family(row):
    """The model family of a table row: `sdgm`, `gpt2` or `rwkv7`."""
    flags = ablate.VARIANTS[row][1]
    return flags[flags.index("--model") + 1] if "--model" in flags else "sdgm"


def _ablate_command(corpus, rows, output_dir, options, flags):
    return [
        sys.executable,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "ablate.py"),
        "--corpus",
        corpus,
        "--variants",
        *rows,
        "--output-dir",
        output_dir,
        *options,
        "--",
        *flags,
    ]


def sweep_commands(protocol, output_dir, extra=()):
    """The `recipes/ablate.py` command of each sweep setting (one seed)."""
    settings = PROTOCOLS[protocol]
    return [
        _ablate_command(
            SWEEP_CORPUS,
            FAMILIES.values(),
            os.path.join(sweep_dir(output_dir), setting_name(setting)),
            ["--reference", REFERENCE, "--close-seeds", "1"],
            [*settings["flags"][SWEEP_CORPUS], *setting, *extra],
        )
        for setting in settings["sweep"]
    ]


def sweep_results(protocol, output_dir):
    """Validation perplexity and epochs of every finished sweep run.

    Returns:
        `{family: {setting name: {"flags", "valid_perplexity", "epochs"}}}`.
    """
    results = {name: {} for name in FAMILIES}
    for setting in PROTOCOLS[protocol]["sweep"]:
        folder = os.path.join(sweep_dir(output_dir), setting_name(setting))
        for name, row in FAMILIES.items():
            runs = ablate.finished_runs(folder, row)
            if runs:
                results[name][setting_name(setting)] = {
                    "flags": list(setting),
                    "valid_perplexity": float(
                        np.mean([ablate.valid_perplexity(m) for m in runs])
                    ),
                    "epochs": runs[0]["epochs_logged"],
                }
    return results


def chosen_settings(results):
    """Each family's setting of lowest validation perplexity: its flags."""
    return {
        name: min(runs.values(), key=lambda r: r["valid_perplexity"])["flags"]
        for name, runs in results.items()
        if runs
    }


def write_sweep_table(protocol, output_dir, results):
    chosen = chosen_settings(results)
    reporting.write_json(
        os.path.join(sweep_dir(output_dir), "sweep.json"),
        {"families": FAMILIES, "results": results, "chosen": chosen},
    )

    def cell(name, setting):
        run = results[name].get(setting)
        if run is None:
            return "—"
        text = f"{run['valid_perplexity']:.1f} ({run['epochs']})"
        return f"**{text}**" if run["flags"] == chosen[name] else text

    reporting.write_markdown(
        os.path.join(sweep_dir(output_dir), "sweep.md"),
        "Validation perplexity (epochs run) of each family's row "
        f"({', '.join(f'`{r}`' for r in FAMILIES.values())}) under each "
        "setting; bold: the family's chosen setting.\n\n"
        + reporting.markdown_table(
            ["setting", *FAMILIES],
            [
                [f"`{shlex.join(setting)}`"]
                + [cell(name, setting_name(setting)) for name in FAMILIES]
                for setting in PROTOCOLS[protocol]["sweep"]
            ],
        ),
    )
    return chosen


def commands(protocol, corpora, output_dir, extra=(), chosen=None):
    """The `recipes/ablate.py` command of each corpus, as argv lists.

    `chosen`: each family's sweep setting (`chosen_settings`), given to
    its rows with `--variant-flags`, the caller's `extra` after it.
    """
    settings = PROTOCOLS[protocol]
    options = ["--reference", REFERENCE]
    if chosen:
        options += ["--variant-flags"] + [
            f"{row}={shlex.join([*chosen[family(row)], *extra])}"
            for row in settings["rows"]
        ]
    return [
        _ablate_command(
            corpus,
            settings["rows"],
            os.path.join(output_dir, corpus),
            options,
            [*settings["flags"][corpus], *extra],
        )
        for corpus in corpora
    ]


def reuse_sweep_runs(output_dir, chosen):
    """Copy each family's chosen PTB sweep run into the PTB table.

    The table's run of that row would have the same flags and seed: the
    copy is what it would compute (the recipe checks `config.json` if it
    is ever resumed), and the sweep's folder stays as it was.
    """
    for name, row in FAMILIES.items():
        source = ablate.run_dir(
            os.path.join(sweep_dir(output_dir), setting_name(chosen[name])),
            row,
            0,
        )
        target = ablate.run_dir(os.path.join(output_dir, SWEEP_CORPUS), row, 0)
        if not os.path.exists(target):
            shutil.copytree(source, target)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:split])
    extra = argv[split + 1 :]
    for corpus in args.corpora:
        ablate.check_recipe_flags(corpus, extra, "the flags after `--`")
    output_dir = args.output_dir or os.path.join(
        RECORDS_DIR, f"protocol-{args.protocol}"
    )

    def run(command):
        print(shlex.join(command), flush=True)
        if not args.dry_run:
            subprocess.run(command, check=True)

    chosen = None
    if PROTOCOLS[args.protocol]["sweep"]:
        for command in sweep_commands(args.protocol, output_dir, extra):
            run(command)
        results = sweep_results(args.protocol, output_dir)
        if args.dry_run and not all(results.values()):
            print(
                "# Then one table per corpus, each row with its family's "
                "setting of lowest validation perplexity in the sweep."
            )
            return
        if args.dry_run:
            chosen = chosen_settings(results)
        else:
            chosen = write_sweep_table(args.protocol, output_dir, results)
            if SWEEP_CORPUS in args.corpora:
                reuse_sweep_runs(output_dir, chosen)
    for command in commands(
        args.protocol, args.corpora, output_dir, extra, chosen
    ):
        run(command)


if __name__ == "__main__":
    main()
