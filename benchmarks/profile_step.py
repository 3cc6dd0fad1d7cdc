"""Where a training step's time goes, by part of the model (JAX on CPU).

    KERAS_BACKEND=jax python -m benchmarks.profile_step --models sdgm --lengths 512
    KERAS_BACKEND=jax python -m benchmarks.profile_step --models gpt2 --lengths 512

(from the repository root: it builds the models with `benchmarks/run.py`.)

Builds the one model of `--models` at the one length of `--lengths` exactly
as `benchmarks/run.py` does (every other flag is run.py's), runs
`--warmup` compiled `train_on_batch` steps, then traces `--steps` more with
the JAX profiler. Each XLA operation of the trace is attributed to the
model part its HLO metadata names (`dictionary`,
`encoder/gate`, `feedforward_intermediate`, the output layer and the
loss, `optimizer`, ...; summed over the blocks), and split into
`matmul` (XLA's dot fusions), `copy` (layout copies and transposes) and
`elementwise` (everything else). The times are summed over XLA's threads
and reported as shares of the step, so they stay comparable on a busy
machine where absolute times do not; the step's total thread time is
given beside them (`thread_seconds_per_step`). Writes `profile.json`, `profile.md`
and `profile.png` (the shares as stacked bars) to `--output-dir`
(default `benchmarks/results/profile_<model>_<length>`), and the compiled
HLO under `hlo/`.
"""

import collections
import glob
import gzip
import json
import os
import re
import shutil
import subprocess
import sys

from benchmarks import run

KINDS = ("matmul", "elementwise", "copy")
# Model parts by the layer names in an XLA op's metadata, most specific
# first; the first pattern that matches names the part.
PARTS = (
    (r"/encoder/(\w+)/", "encoder/{}"),
    (r"/encoder/", "encoder"),
    (r"(?:block|transformer_layer|rwkv_layer)_\d+/(\w+)/", "{}"),
    (r"(?:block|transformer_layer|rwkv_layer)_\d+/", "block"),
    # One part: XLA names a fused op after one of its ops, so the logits'
    # product can carry the cross-entropy's name.
    (r"token_embedding|crossentropy|log_softmax", "output layer + loss"),
    (r"adam|optimizer", "optimizer"),
)


def part_of(op_name):
    """The model part an XLA op's `op_name` metadata names."""
    if op_name is None:
        return "(no metadata)"
    for pattern, label in PARTS:
        match = re.search(pattern, op_name, flags=re.IGNORECASE)
        if match:
            return label.format(*match.groups())
    return "other"


def kind_of(hlo_name):
    """`matmul`, `copy` or `elementwise` for an XLA op name."""
    if hlo_name.startswith(("ynn_fusion", "dot", "convolution")):
        return "matmul"
    if hlo_name.startswith(("copy", "transpose")):
        return "copy"
    return "elementwise"


def op_names(hlo_dir):
    """`{hlo op: op_name metadata}` of the compiled training step."""
    paths = glob.glob(
        os.path.join(hlo_dir, "*jit_train_step*cpu_after_optimizations.txt")
    )
    if not paths:
        raise RuntimeError(f"No compiled training step in {hlo_dir}.")
    names = {}
    pattern = re.compile(r'\s*(?:ROOT )?%([\w.\-]+) = .*?op_name="([^"]*)"')
    with open(max(paths, key=os.path.getsize)) as f:
        for line in f:
            match = pattern.match(line)
            if match:
                names.setdefault(match.group(1), match.group(2))
    return names


def op_times(trace_dir):
    """`{hlo op: microseconds}` summed over XLA's compute threads."""
    path = sorted(
        glob.glob(
            os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True
        )
    )[-1]
    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    times = collections.Counter()
    for event in events:
        op = event.get("args", {}).get("hlo_op")
        if event.get("ph") == "X" and op:
            times[op] += event["dur"]
    return times


def shares(times, names):
    """Rows `{part, share, matmul, elementwise, copy}`, largest first."""
    total = sum(times.values())
    table = collections.defaultdict(collections.Counter)
    for op, microseconds in times.items():
        table[part_of(names.get(op))][kind_of(op)] += microseconds / total
    rows = [
        {"part": part, "share": sum(kinds.values()), **kinds}
        for part, kinds in table.items()
    ]
    return sorted(rows, key=lambda row: -row["share"])


def markdown(rows, title):
    from keras_sdgm.training import reporting

    cells = [
        [row["part"], f"{row['share']:.1%}"]
        + [f"{row.get(kind, 0.0):.1%}" for kind in KINDS]
        for row in rows
    ]
    return f"{title}\n\n" + reporting.markdown_table(
        ["part", "share of the step"] + list(KINDS), cells
    )


def plot(rows, title, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = rows[:15][::-1]
    figure, axes = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    left = [0.0] * len(rows)
    for kind in KINDS:
        widths = [100 * row.get(kind, 0.0) for row in rows]
        axes.barh([row["part"] for row in rows], widths, left=left, label=kind)
        left = [a + b for a, b in zip(left, widths)]
    axes.set_xlabel("% of the training step (XLA thread time)")
    axes.set_title(title, fontsize=9)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = run.parse_args(argv)
    if args.worker:
        profile(args)
        return
    if len(args.models) != 1 or len(args.lengths) != 1:
        raise SystemExit(
            "error: pass one model (--models) and one length (--lengths). "
            f"Received: --models {' '.join(args.models)} "
            f"--lengths {' '.join(map(str, args.lengths))}"
        )
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "jax":
        raise SystemExit(
            "error: the profile reads XLA's CPU trace through JAX; run it "
            "with KERAS_BACKEND=jax."
        )
    name, length = args.models[0], args.lengths[0]
    output_dir = args.output_dir or os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "results",
        f"profile_{name}_{length}",
    )
    if os.path.exists(output_dir) and not args.overwrite:
        raise SystemExit(
            f"error: --output-dir {output_dir} exists; pass --overwrite to "
            "replace its results or name another folder."
        )
    for folder in ("hlo", "trace"):
        # An earlier profile's files here would be read as this one's.
        shutil.rmtree(os.path.join(output_dir, folder), ignore_errors=True)
    os.makedirs(output_dir, exist_ok=True)
    # XLA reads its flags once per process: the profile runs in its own.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    hlo_dir = os.path.join(output_dir, "hlo")
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "")
        + f" --xla_dump_to={hlo_dir} --xla_dump_hlo_as_text"
        + " --xla_dump_hlo_pass_re=^$"
    )
    # A program from JAX's persistent cache is not compiled, so not dumped.
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    env["PYTHONPATH"] = os.pathsep.join(
        [root] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    subprocess.run(
        [sys.executable, "-m", "benchmarks.profile_step", *argv]
        + ["--output-dir", output_dir, "--worker", name, str(length)],
        env=env,
        cwd=root,
        check=True,
    )


def profile(args):
    """The worker: trace the steps and write the outputs."""
    import jax
    import keras

    from keras_sdgm.training import reporting

    name, length = args.worker[0], int(args.worker[1])
    output_dir = args.output_dir
    keras.utils.set_random_seed(args.seed)
    lm = run.build_model(args, name, length)
    x, y = run.random_batch(args, length)
    for _ in range(args.warmup):
        lm.train_on_batch(x, y)
    trace_dir = os.path.join(output_dir, "trace")
    jax.profiler.start_trace(trace_dir)
    for _ in range(args.steps):
        lm.train_on_batch(x, y)
    jax.profiler.stop_trace()

    times = op_times(trace_dir)
    rows = shares(times, op_names(os.path.join(output_dir, "hlo")))
    thread_seconds = sum(times.values()) / 1e6 / args.steps
    title = (
        f"{name}, L={length}, batch {args.batch_size}, D={args.hidden_dim}, "
        f"{args.num_layers} layers, V={args.vocabulary_size} "
        f"({keras.config.backend()}, {args.steps} traced steps; XLA thread "
        f"time {1e3 * thread_seconds:,.0f} ms per step)"
    )
    config = {k: v for k, v in vars(args).items() if k != "worker"}
    reporting.write_json(
        os.path.join(output_dir, "profile.json"),
        {
            "config": {**config, "models": [name], "lengths": [length]},
            "parts": rows,
            # Summed over XLA's threads: more than the step's wall time
            # where threads run at once, and longer on a busy machine.
            "thread_seconds_per_step": thread_seconds,
            "versions": reporting.library_versions(),
            "environment": reporting.speed_settings(),
        },
    )
    plot(rows, title, os.path.join(output_dir, "profile.png"))
    reporting.write_markdown(
        os.path.join(output_dir, "profile.md"), markdown(rows, title)
    )


if __name__ == "__main__":
    main()
