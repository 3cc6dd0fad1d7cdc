"""Training and forward throughput and memory: SDGM vs keras-hub GPT-2 and RWKV-7.

    KERAS_BACKEND=jax python benchmarks/run.py
    KERAS_BACKEND=jax python benchmarks/run.py --lengths 128 512 --steps 3
    KERAS_BACKEND=jax python benchmarks/run.py --encoder-type depthwise

For each sequence length, an SDGM (`--preset`, default `sdgm_base`, with the
hidden size, depth and vocabulary given here, and its token mixer
`--encoder-type`, default the preset's) and its peers of the same hidden
size, depth and vocabulary are measured side by side in one run, each
configuration in its own process (`--models`, default all three):

- `gpt2`: keras-hub's `GPT2Backbone` + `GPT2CausalLM`, `4 * hidden_dim`
  feed-forward, `--num-heads` heads;
- `rwkv7`: keras-hub's `RWKV7Backbone` + `RWKV7CausalLM` (attention-free:
  a matrix-valued state per head), `4 * hidden_dim` channel mix, head size
  `--rwkv-head-size` (default `hidden_dim // num_heads`: 64 at D=512 and 8
  heads, RWKV-7's own head size and GPT-2's number of heads), keras-hub's
  default LoRA widths (decay 64, in-context rate 64, value mix 32, gate
  128). Its time mix runs whatever keras-hub picks: without the
  `rwkv_ops` package (not a dependency of this project; it adds CUDA/Triton
  kernels) that is keras-hub's pure-Keras `rnn_generalized_delta_rule`, a
  loop over positions (`ops.fori_loop` under JAX and torch; a Python loop
  into a `tf.TensorArray` under TensorFlow, which needs the length as a
  Python int, so the graph grows with L and a second length in one process
  fails to retrace: one length per process, as here, is what works). Each
  result records the operator used (`delta_rule_operator`).

What is measured:

- training tokens/s: `train_on_batch` (the compiled `fit()` step: forward,
  cross-entropy, backward, Adam), median of `--steps` steps after
  `--warmup` steps; with `--rounds R`, the median over R passes over every
  configuration (each pass a fresh process per configuration, the models
  in turn), so that a slow spell of the machine weighs on every model
  alike instead of on whichever was being measured;
- forward tokens/s: `test_on_batch` (forward and loss), same protocol;
- peak memory: the process's peak resident memory (on CPU) or the
  backend's peak device memory (on GPU), over building, training and
  evaluating. A process that passes `--memory-limit-gb` is stopped and
  reported as out of memory, as is one the system kills or whose backend
  raises an out-of-memory error;
- parameters, and analytic matmul FLOPs per token (forward; training is
  counted as 3x forward), one rule for every model and token mixer: 2 FLOPs
  (a multiply and an add) per weight each token multiplies, i.e. per
  weight of rank >= 2 in a block (matmul and convolution kernels, a
  depthwise convolution's `(kernel_size, D)` taps; biases and rank-1 scales
  are element-wise), plus the sequence work that has no weights, plus
  `2 D V` for the output layer:

      SDGM    sum over blocks of 2 W(block less `prior` and `dictionary`)
              + the dictionary's mixing + the mixer's weightless work
      GPT-2   sum over layers of 2 W(layer) + 4 L D (attention scores and
              their weighted sum over all L positions, as keras-hub computes
              them) = N (8 D^2 + 4 D I + 4 L D)
      RWKV-7  sum over layers of 2 W(layer) + 9 D N (the state update)
      all     + 2 D V

  `W(x)` counts the rank >= 2 weights of `x` that are not biases. The prior
  is not used by the forward pass of the next-token loss, and the
  dictionary's atoms are element-wise sines of its weights; its mixing is
  the dictionary's `flops_per_token()`: 2 K D for the spectral and static
  dictionaries' one (K, D) matmul, 4 K D for the shared-frequency
  dictionary's (2 K, D) one of sin- and cos-modulated coefficients. For
  the dense mixer (`dilated_convolution`) this is the
  former formula, `2 k D^2` per residual convolution, `2 k D K` for the
  last and `4 D I` for the feed-forward; for `depthwise`, `2 k D` per rate
  and `2 D K` for the projection. A mixer whose sequence work has no
  weights adds it through a method `sequence_flops_per_token(length)` on
  the mixer layer (forward FLOPs per token per block), which this count
  calls when the mixer has one. RWKV-7's state update, from keras-hub's
  `rnn_generalized_delta_rule`: per head of size N and per token,
  `S = S * w + (S a) b^T + v k^T` and the readout `S r`, i.e. N^2 (the
  decay) + 2 N^2 (`S a`) + N^2 (its outer product with b) + N^2
  (`v k^T`) + 2 N^2 (the two sums) + 2 N^2 (`S r`) = 9 N^2, so 9 D N per
  layer over its D / N heads, whatever L. Its per-layer weights are
  `8 D^2` (receptance, key, value, output), `4 D I` (channel mix), the
  LoRAs (`4 D r` each for decay, in-context rate, gate, and value mix but
  in the first layer) and `r_k` (`2 D`). Element-wise work (the
  dictionary's atoms, softmax, norms, token shifts) is not counted;
- achieved FLOP/s as a fraction of the machine's float32 matmul peak,
  measured here as the best of NumPy's and the backend's own large square
  matmul (`--peak-matmul-size`).

All models train with dropout 0, Adam and the cross-entropy of the next
token (SDGM's auxiliary loss weights at their default, 0). The SDGM keeps
its preset's window (`window_length`, 128 for `sdgm_base`) at every
input length: its encoder sees that many positions and the dictionary
continues past them, which is what makes its cost per token independent of
the length; GPT-2 attends to the whole input; RWKV-7 carries its state
over the whole input. Inputs are deterministic random tokens (`--seed`).
Writes `run.json` (after every configuration, so `--resume` can finish an
interrupted run), `run.md` (a table per configuration, and SDGM / GPT-2
and SDGM / RWKV-7 ratios side by side), `run_throughput.png` and
`run_memory.png` to `--output-dir`; existing results are replaced only with
`--overwrite`.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

RESULT_PREFIX = "BENCHMARK_RESULT "
MODELS = ("sdgm", "gpt2", "rwkv7")
NAMES = {"sdgm": "SDGM", "gpt2": "GPT-2", "rwkv7": "RWKV-7"}
PEERS = ("gpt2", "rwkv7")


def parse_args(argv=None):
    from keras_sdgm.utils import arguments

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--lengths", type=int, nargs="+", default=[128, 512, 2048, 8192])
    add("--models", nargs="+", default=list(MODELS), choices=MODELS)
    add("--preset", default="sdgm_base")
    arguments.add_sdgm_block_flags(parser)
    add("--hidden-dim", type=int, default=512)
    add("--num-layers", type=int, default=4)
    add(
        "--num-atoms",
        type=int,
        default=None,
        help="SDGM atoms per dictionary; default: the preset's.",
    )
    add(
        "--intermediate-dim",
        type=arguments.non_negative_int,
        default=None,
        help="SDGM's feed-forward width per block; default: the preset's "
        "(GPT-2's and RWKV-7's stay 4 * hidden_dim).",
    )
    add(
        "--rematerialize-blocks",
        action="store_true",
        help="SDGM recomputes its blocks in the backward pass "
        "(`SDGMBackbone(rematerialize_blocks=True)`): less memory, more "
        "compute. Every configuration then runs with XLA_FLAGS="
        "--xla_cpu_enable_concurrency_optimized_scheduler=false, without "
        "which XLA on the CPU keeps what remat recomputes.",
    )
    add("--num-heads", type=int, default=8)
    add(
        "--rwkv-head-size",
        type=int,
        default=None,
        help="RWKV-7's head size, a divisor of --hidden-dim; default: "
        "hidden_dim // num_heads.",
    )
    add("--vocabulary-size", type=int, default=10000)
    add("--batch-size", type=int, default=8)
    add("--steps", type=int, default=5)
    add("--warmup", type=int, default=2)
    add(
        "--rounds",
        type=arguments.positive_int,
        default=1,
        help="Passes over every configuration, one after the other, each "
        "in a fresh process; a configuration's tokens/s are the medians "
        "over the passes.",
    )
    add(
        "--jit-compile",
        default="auto",
        choices=["auto", "true", "false"],
        help="Keras `jit_compile` for both models; auto: Keras's default "
        "(XLA on JAX and TensorFlow where it compiles, eager torch).",
    )
    add(
        "--dtype-policy",
        default="float32",
        help="Keras dtype policy, e.g. mixed_bfloat16.",
    )
    add(
        "--memory-limit-gb",
        type=float,
        default=None,
        help="Stop a configuration above this resident memory (CPU); "
        "default: 90%% of the machine's memory.",
    )
    add("--config-timeout", type=float, default=3600)
    add(
        "--peak-matmul-size",
        type=int,
        default=4096,
        help="Side of the square matmul that measures the float32 peak.",
    )
    add("--seed", type=int, default=0)
    add(
        "--output-dir",
        default=None,
        help="Default: benchmarks/results/run_<backend>.",
    )
    add(
        "--resume",
        action="store_true",
        help="Keep the finished configurations of an interrupted run with "
        "the same settings in --output-dir and run the rest.",
    )
    add(
        "--overwrite",
        action="store_true",
        help="Replace the results already in --output-dir.",
    )
    add(
        "--worker", nargs=2, metavar=("MODEL", "LENGTH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if "rwkv7" in args.models and not rwkv_head_size(args):
        parser.error(
            "RWKV-7's head size must divide --hidden-dim "
            f"{args.hidden_dim}; pass another --rwkv-head-size."
        )
    return args


def rwkv_head_size(args):
    """`--rwkv-head-size`, or `hidden_dim // num_heads`; 0 if it does not
    divide `hidden_dim`."""
    from keras_sdgm.training import model_builders

    return model_builders.rwkv7_head_size(
        args.hidden_dim, args.num_heads, args.rwkv_head_size
    )


# --- one configuration, in its own process -------------------------------


def build_model(args, name, length):
    import keras

    from keras_sdgm.training import model_builders
    from keras_sdgm.utils import arguments

    if name == "sdgm":
        lm = model_builders.sdgm_causal_lm(
            args.preset,
            args.vocabulary_size,
            hidden_dim=args.hidden_dim,
            num_layers=args.num_layers,
            dropout=0.0,
            num_atoms=args.num_atoms,
            intermediate_dim=args.intermediate_dim,
            **arguments.sdgm_block_overrides(args),
            rematerialize_blocks=args.rematerialize_blocks,
        )
    elif name == "rwkv7":
        lm = model_builders.rwkv7_causal_lm(
            args.vocabulary_size,
            num_layers=args.num_layers,
            hidden_dim=args.hidden_dim,
            head_size=rwkv_head_size(args),
        )
    else:
        lm = model_builders.gpt2_causal_lm(
            args.vocabulary_size,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            hidden_dim=args.hidden_dim,
            max_sequence_length=length,
        )
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    lm.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
        jit_compile=jit,
    )
    return lm


def delta_rule_operator(lm):
    """The function RWKV-7's time mix trains with (keras-hub's or rwkv_ops')."""
    op = lm.backbone.rwkv_layers[0].att.RWKV7_OP
    return f"{op.__module__}.{op.__name__}"


def matmul_weights(layer, exclude=()):
    """Weights each token multiplies: `layer`'s rank >= 2 non-bias weights.

    Those of the layers in `exclude` are left out.
    """
    skip = {v.path for sublayer in exclude for v in sublayer.weights}
    return sum(
        int(np.prod(v.shape))
        for v in layer.weights
        if len(v.shape) >= 2 and "bias" not in v.name and v.path not in skip
    )


def flops_per_token(name, backbone, length, vocabulary_size):
    """Analytic forward matmul FLOPs per token (see the module docstring)."""
    if name == "gpt2":
        d = backbone.hidden_dim
        layers = backbone.transformer_layers
        sequence = 4 * length * d
    elif name == "rwkv7":
        d = backbone.hidden_size
        layers = backbone.rwkv_layers
        sequence = 9 * d * backbone.head_size
    else:
        d = backbone.hidden_dim
        total = 0
        for block in backbone.blocks:
            total += 2 * matmul_weights(
                block, exclude=(block.prior, block.dictionary)
            )
            total += block.dictionary.flops_per_token()
            weightless = getattr(
                block.encoder, "sequence_flops_per_token", None
            )
            if weightless is not None:
                total += weightless(length)
        return total + 2 * d * vocabulary_size
    return (
        sum(2 * matmul_weights(layer) + sequence for layer in layers)
        + 2 * d * vocabulary_size
    )


def peak_memory_bytes():
    """Peak device memory on a GPU, else this process's peak RSS."""
    import keras

    backend = keras.config.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            return device.memory_stats()["peak_bytes_in_use"], "device"
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"], (
                "device"
            )
    else:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated(), "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "rss"


def random_batch(args, length):
    """Uniform random token ids `(x, y)`: one `--batch-size` batch."""
    rng = np.random.default_rng(args.seed)
    shape = (args.batch_size, length)
    x = {
        "token_ids": rng.integers(0, args.vocabulary_size, shape, "int32"),
        "padding_mask": np.ones(shape, "bool"),
    }
    return x, rng.integers(0, args.vocabulary_size, shape, "int32")


def run_worker(args, name, length):
    import keras

    from keras_sdgm.utils.timing import median_seconds

    keras.config.set_dtype_policy(args.dtype_policy)
    keras.utils.set_random_seed(args.seed)
    lm = build_model(args, name, length)
    x, y = random_batch(args, length)
    weights = np.ones((args.batch_size, length), "float32")
    # Reading each loss waits for its step: JAX dispatches asynchronously,
    # and a step that failed (e.g. out of memory) raises only when read.
    losses = []
    train = median_seconds(
        lambda: losses.append(
            float(lm.train_on_batch(x, y, weights, return_dict=True)["loss"])
        ),
        args.steps,
        args.warmup,
        label="train",
    )
    if not np.all(np.isfinite(losses)):
        raise FloatingPointError(f"Training loss not finite: {losses}")
    forward = median_seconds(
        lambda: float(
            lm.test_on_batch(x, y, weights, return_dict=True)["loss"]
        ),
        args.steps,
        args.warmup,
        label="forward",
    )
    tokens = args.batch_size * length
    memory, memory_kind = peak_memory_bytes()
    details = {}
    if name == "sdgm":
        details["encoder_type"] = lm.backbone.encoder_type
        details["dictionary_type"] = lm.backbone.dictionary_type
        details["modes_per_feature"] = lm.backbone.modes_per_feature
        details["data_dependent_decay"] = lm.backbone.data_dependent_decay
        details["num_atoms"] = lm.backbone.num_atoms
        details["intermediate_dim"] = lm.backbone.intermediate_dim
    elif name == "rwkv7":
        details["head_size"] = lm.backbone.head_size
        details["delta_rule_operator"] = delta_rule_operator(lm)
    return {
        **details,
        "status": "ok",
        "train_losses": losses,
        "train_tokens_per_second": tokens / train,
        "forward_tokens_per_second": tokens / forward,
        "train_step_seconds": train,
        "forward_step_seconds": forward,
        "peak_memory_bytes": memory,
        "memory_kind": memory_kind,
        "parameters": lm.count_params(),
        "forward_flops_per_token": flops_per_token(
            name, lm.backbone, length, args.vocabulary_size
        ),
    }


def worker_main(args):
    name, length = args.worker[0], int(args.worker[1])
    try:
        result = run_worker(args, name, length)
    except Exception as error:  # Reported, not hidden: see `status`.
        text = f"{type(error).__name__}: {error}"
        out_of_memory = isinstance(error, MemoryError) or any(
            marker in text
            for marker in (
                "RESOURCE_EXHAUSTED",
                "out of memory",
                "Out of memory",
                "OOM",
            )
        )
        result = {
            "status": "out of memory" if out_of_memory else "error",
            "error": text[:2000],
        }
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# --- the whole run --------------------------------------------------------


def resident_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_memory_bytes():
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def run_config(args, name, length, argv):
    """Runs one configuration in a child process; returns its result."""
    limit = (
        args.memory_limit_gb * 2**30
        if args.memory_limit_gb
        else 0.9 * machine_memory_bytes()
    )
    command = [
        sys.executable,
        os.path.abspath(__file__),
        *argv,
        "--worker",
        name,
        str(length),
    ]
    env = dict(os.environ)
    if args.rematerialize_blocks:
        from keras_sdgm.models.sdgm.sdgm_backbone import XLA_CPU_REMAT_FLAG

        env["XLA_FLAGS"] = f"{XLA_CPU_REMAT_FLAG} {env.get('XLA_FLAGS', '')}"
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env=env
    )
    started = time.monotonic()
    peak_seen, stopped = 0, None
    while child.poll() is None:
        peak_seen = max(peak_seen, resident_bytes(child.pid))
        if peak_seen > limit:
            stopped = f"out of memory (above {limit / 2**30:.2f} GiB)"
        elif time.monotonic() - started > args.config_timeout:
            stopped = f"timed out after {args.config_timeout:.0f} s"
        if stopped:
            child.kill()
            child.wait()
            break
        time.sleep(0.2)
    output = child.stdout.read()
    if stopped:
        return {"status": stopped, "peak_memory_bytes": peak_seen}
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    status = (
        "out of memory (killed by the system)"
        if child.returncode in (-9, 137)
        else f"error (exit status {child.returncode})"
    )
    return {"status": status, "peak_memory_bytes": peak_seen}


def matmul_peak_flops(size=4096, repeats=3):
    """Best float32 FLOP/s of NumPy's and the backend's square matmul."""
    import keras

    from keras_sdgm.utils import timing

    a = np.random.default_rng(0).standard_normal((size, size), dtype="float32")
    tensor = keras.ops.convert_to_tensor(a)
    matmul = timing.compiled(lambda m: m @ m)
    calls = {
        "numpy": lambda: a @ a,
        keras.config.backend(): lambda: matmul(tensor)[0, 0],
    }
    return {
        name: 2 * size**3 / min(timing.call_seconds(call, repeats, warmup=1))
        for name, call in calls.items()
    }


def machine_description():
    import platform

    description = {
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "memory_gib": round(machine_memory_bytes() / 2**30, 1),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    description["processor"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return description


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    import keras

    from keras_sdgm.training import recipe
    from keras_sdgm.training import reporting

    backend = keras.config.backend()
    output_dir = args.output_dir or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", f"run_{backend}"
    )
    os.makedirs(output_dir, exist_ok=True)
    config = {
        k: v
        for k, v in vars(args).items()
        if k not in ("worker", "resume", "overwrite", "output_dir")
    }
    config["backend"] = backend
    json_path = os.path.join(output_dir, "run.json")
    done = previous_results(json_path, config, args)
    print("Measuring the float32 matmul peak...", flush=True)
    peaks = matmul_peak_flops(args.peak_matmul_size)
    peak = max(peaks.values())
    print(
        f"  {', '.join(f'{k} {v / 1e9:.0f}' for k, v in peaks.items())} "
        "GFLOP/s",
        flush=True,
    )
    # The workers inherit this environment: the tip says what they miss.
    hint = recipe.huge_pages_hint()
    if hint:
        print(hint, flush=True)
    report = {
        "backend": backend,
        "machine": machine_description(),
        "matmul_peak_flops": peaks,
        "config": config,
        "results": [],
        "complete": False,
        "versions": reporting.library_versions(),
        "environment": reporting.speed_settings(),
    }
    if args.rounds > 1:
        report["round_results"] = []
    configs = [
        (round_index, length, name)
        for round_index in range(args.rounds)
        for length in args.lengths
        for name in args.models
    ]
    rounds = {}
    for index, (round_index, length, name) in enumerate(configs):
        print(
            f"[{index + 1}/{len(configs)}] {name} length {length}"
            + (f", round {round_index + 1}" if args.rounds > 1 else "")
            + "...",
            flush=True,
        )
        if (name, length, round_index) in done:
            result = done[(name, length, round_index)]
            print("  (from the interrupted run)", flush=True)
        else:
            result = run_config(args, name, length, argv)
            result.update({"model": name, "length": length})
            if args.rounds > 1:
                result["round"] = round_index
        rounds.setdefault((name, length), []).append(result)
        if args.rounds > 1:
            report["round_results"].append(result)
        else:
            report["results"].append(with_peak_fraction(result, peak))
        print(f"  {summary(result)}", flush=True)
        reporting.write_json(json_path, report)
    if args.rounds > 1:
        report["results"] = [
            with_peak_fraction(median_result(rounds[(name, length)]), peak)
            for length in args.lengths
            for name in args.models
        ]
    report["complete"] = True
    # Each plot's legend: the models it draws.
    report["plots"] = plot(report, output_dir)
    reporting.write_json(json_path, report)
    reporting.write_markdown(
        os.path.join(output_dir, "run.md"), markdown_table(report)
    )


def with_peak_fraction(result, peak):
    """`result` with its training FLOP/s as a fraction of `peak`."""
    if result["status"] == "ok":
        result["achieved_fraction_of_peak"] = (
            3
            * result["forward_flops_per_token"]
            * result["train_tokens_per_second"]
            / peak
        )
    return result


def median_result(results):
    """One configuration's result over its rounds.

    The first failed round's result if any round failed (a configuration
    that ran out of memory once is reported so); otherwise the first
    round's, with the median tokens/s and step times over the rounds, the
    largest peak memory; each round's status and tokens/s under
    `"rounds"`.
    """
    summaries = [
        {
            key: r[key]
            for key in (
                "status",
                "train_tokens_per_second",
                "forward_tokens_per_second",
            )
            if key in r
        }
        for r in results
    ]
    failed = [r for r in results if r["status"] != "ok"]
    merged = dict(failed[0] if failed else results[0], rounds=summaries)
    merged.pop("round", None)
    if failed:
        return merged
    for key in (
        "train_tokens_per_second",
        "forward_tokens_per_second",
        "train_step_seconds",
        "forward_step_seconds",
    ):
        merged[key] = float(np.median([r[key] for r in results]))
    merged["peak_memory_bytes"] = max(r["peak_memory_bytes"] for r in results)
    return merged


def previous_results(json_path, config, args):
    """Finished results to keep, by (model, length, round); errors on a clash."""
    if not os.path.exists(json_path):
        return {}
    if args.overwrite:
        return {}
    if not args.resume:
        raise FileExistsError(
            f"{json_path} already holds benchmark results. Pass --resume to "
            "finish an interrupted run with the same settings, --overwrite "
            "to replace them, or another --output-dir."
        )
    with open(json_path) as f:
        previous = json.load(f)
    # A flag added since the interrupted run started matches at its default.
    defaults = vars(parse_args([]))
    current = {
        k: v
        for k, v in json.loads(json.dumps(config)).items()
        if k in previous["config"] or v != defaults.get(k)
    }
    if previous["config"] != current:
        raise ValueError(
            f"{json_path} was written with other settings "
            f"({previous['config']}); --resume needs the same ones. Use "
            "--overwrite or another --output-dir."
        )
    return {
        (r["model"], r["length"], r.get("round", 0)): r
        for r in previous.get("round_results", previous["results"])
    }


def summary(result):
    if result["status"] != "ok":
        return result["status"]
    return (
        f"train {result['train_tokens_per_second']:.0f} tok/s, forward "
        f"{result['forward_tokens_per_second']:.0f} tok/s, peak memory "
        f"{result['peak_memory_bytes'] / 2**30:.2f} GiB"
    )


def markdown_table(report):
    from keras_sdgm.training import reporting

    by = {(r["model"], r["length"]): r for r in report["results"]}
    lengths = report["config"]["lengths"]
    models = report["config"]["models"]
    rows = []
    for length in lengths:
        for name in models:
            r = by[(name, length)]
            if r["status"] != "ok":
                rows.append([str(length), NAMES[name], r["status"]] + [""] * 5)
                continue
            rows.append(
                [
                    str(length),
                    NAMES[name],
                    f"{r['train_tokens_per_second']:.0f}",
                    f"{r['forward_tokens_per_second']:.0f}",
                    f"{r['peak_memory_bytes'] / 2**30:.2f}",
                    f"{r['parameters'] / 1e6:.1f}",
                    f"{3 * r['forward_flops_per_token'] / 1e9:.3f}",
                    f"{100 * r['achieved_fraction_of_peak']:.0f}%",
                ]
            )
    text = reporting.markdown_table(
        [
            "L",
            "model",
            "train tok/s",
            "forward tok/s",
            "peak memory (GiB)",
            "params (M)",
            "train GFLOP/token",
            "% of matmul peak",
        ],
        rows,
    )
    peers = [p for p in PEERS if p in models] if "sdgm" in models else []
    if peers:
        # Per quantity, SDGM over each peer side by side.
        keys = (
            ("train_tokens_per_second", "train tok/s"),
            ("forward_tokens_per_second", "forward tok/s"),
            ("peak_memory_bytes", "peak memory"),
        )
        text += "\n\n" + reporting.markdown_table(
            ["L"]
            + [
                f"SDGM / {NAMES[peer]} {label}"
                for _, label in keys
                for peer in peers
            ],
            [
                [str(length)]
                + [
                    ratio(by[("sdgm", length)], by[(peer, length)], key, peer)
                    for key, _ in keys
                    for peer in peers
                ]
                for length in lengths
            ],
        )
    rounds = report["config"].get("rounds", 1)
    if rounds > 1:
        text = f"Tokens/s: medians over {rounds} rounds.\n\n" + text
    return text


def ratio(sdgm, peer, key, peer_name="gpt2"):
    if sdgm["status"] != "ok":
        return f"SDGM {sdgm['status']}"
    if peer["status"] != "ok":
        return f"{NAMES[peer_name]} {peer['status']}"
    return f"{sdgm[key] / peer[key]:.2f}x"


def plot(report, output_dir):
    """Writes the two plots; returns each file's legend labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    title = (
        f"{report['backend']}, D={report['config']['hidden_dim']}, "
        f"{report['config']['num_layers']} layers, batch "
        f"{report['config']['batch_size']}"
    )
    labels = {}
    for key, ylabel, filename in (
        ("train_tokens_per_second", "training tokens/s", "run_throughput.png"),
        ("peak_memory_bytes", "peak memory (GiB)", "run_memory.png"),
    ):
        figure, axis = plt.subplots(figsize=(6, 4))
        for name in report["config"]["models"]:
            points = [
                (r["length"], r[key])
                for r in report["results"]
                if r["model"] == name and r["status"] == "ok"
            ]
            scale = 2**30 if key == "peak_memory_bytes" else 1
            if points:
                axis.plot(
                    [p[0] for p in points],
                    [p[1] / scale for p in points],
                    marker="o",
                    label=NAMES[name],
                )
            failed = [
                r["length"]
                for r in report["results"]
                if r["model"] == name and r["status"] != "ok"
            ]
            for length in failed:
                axis.axvline(length, linestyle=":", color="gray")
                axis.annotate(
                    f"{NAMES[name]}: {report_status(report, name, length)}",
                    (length, 0.5),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    fontsize=7,
                    ha="right",
                )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(report["config"]["lengths"])
        axis.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel("sequence length")
        axis.set_ylabel(ylabel)
        axis.set_title(title)
        labels[filename] = axis.get_legend_handles_labels()[1]
        if labels[filename]:
            axis.legend()
        figure.tight_layout()
        figure.savefig(os.path.join(output_dir, filename), dpi=100)
        plt.close(figure)
    return labels


def report_status(report, name, length):
    for r in report["results"]:
        if r["model"] == name and r["length"] == length:
            return r["status"]
    return "missing"


if __name__ == "__main__":
    from keras_sdgm.utils.arguments import run_command

    run_command(main)
