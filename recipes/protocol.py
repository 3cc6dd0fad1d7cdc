"""The convergence protocols: every row of the results table, both corpora.

    KERAS_BACKEND=jax python recipes/protocol.py --protocol cpu
    KERAS_BACKEND=jax python recipes/protocol.py --protocol gpu   # a GPU
    python recipes/protocol.py --protocol cpu --dry-run           # commands

Each corpus is one `recipes/ablate.py` table, run as its own command with
the protocol's shared flags: the same rows (`ROWS`), data order, seeds and
budget for every model, early stopping on validation perplexity, a second
seed for any row within 5% of the default SDGM's (`base`), finished runs
reused and unfinished ones resumed when the command is run again. Flags
after `--` go to every run after the protocol's own and override them
(e.g. `-- --lr-schedule plateau`, or `--max-steps 2` for a smoke test).

Every SDGM row has its preset's number of atoms (`sdgm_base` 128, the
paper's rows 256).

- `cpu`: D=256, L=128, batch 32, up to 10 epochs, cosine schedule
  after a warm-up of 200 steps: the size the convergence issue proposes
  for about an hour per run on this project's 2-core machine (not yet
  timed there at 10 epochs).
- `gpu`: the paper's settings (D=512, L=128, batch 32, up to 10
  epochs) with XLA, plus keras-hub's GPT-2 small configuration (117M:
  12 layers of 768, 12 heads), the paper's baseline.

Tables go to `<--output-dir>/<corpus>/ablations.md` (and `.json`), the runs
to folders beside them.
"""

import argparse
import os
import subprocess
import sys

CORPORA = ("ptb", "wikitext2")
# The table's rows: `recipes/ablate.py` variants.
ROWS = (
    "base",
    "position-offsets",
    "spectral-dictionary",
    "paper",
    "paper-no-stft",
    "paper-no-nll",
    "gpt2",
    "rwkv7",
)


def _sizes(hidden_dim):
    """The flags both protocols share, at width `hidden_dim`."""
    return [
        "--hidden-dim",
        str(hidden_dim),
        "--sequence-length",
        "128",
        "--batch-size",
        "32",
        "--epochs",
        "10",
        "--patience",
        "2",
    ]


PROTOCOLS = {
    "cpu": {
        "rows": ROWS,
        "flags": _sizes(256)
        + ["--lr-schedule", "cosine", "--warmup-steps", "200"],
    },
    "gpu": {
        "rows": ROWS + ("gpt2-small",),
        "flags": _sizes(512) + ["--jit-compile", "true"],
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
        "--output-dir", default=None, help="Default: runs/protocol-<protocol>."
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Print the commands instead of running them.",
    )
    return parser


def commands(protocol, corpora, output_dir, extra=()):
    """The `recipes/ablate.py` command of each corpus, as argv lists."""
    ablate = os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "ablate.py"
    )
    settings = PROTOCOLS[protocol]
    return [
        [
            sys.executable,
            ablate,
            "--corpus",
            corpus,
            "--variants",
            *settings["rows"],
            "--output-dir",
            os.path.join(output_dir, corpus),
            "--",
            *settings["flags"],
            *extra,
        ]
        for corpus in corpora
    ]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:split])
    output_dir = args.output_dir or os.path.join(
        "runs", f"protocol-{args.protocol}"
    )
    for command in commands(
        args.protocol, args.corpora, output_dir, argv[split + 1 :]
    ):
        print(" ".join(command), flush=True)
        if not args.dry_run:
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
