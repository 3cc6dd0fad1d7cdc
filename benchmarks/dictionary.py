"""The SpectralDictionary layer alone: forward and forward+backward time.

    KERAS_BACKEND=jax python benchmarks/dictionary.py
    KERAS_BACKEND=jax python benchmarks/dictionary.py --chunk-sizes 16 32

For each shape (length, atoms K, hidden D, batch), times the layer's
chunked mixing at each `--chunk-sizes` against the direct evaluation it
replaced: every atom `S[t, k, d]` evaluated with its own range-reduced
`sin` (`SpectralDictionary.atoms`) and mixed in one product. Compiled as
the backend compiles a training step (`jax.jit`, `tf.function` with XLA,
eager torch); the loss is `sum(output * weights)` and the gradient is taken
with respect to the coefficients and the three weights. Median of
`--steps` calls after two warm-up calls. Writes `dictionary.json` and
`dictionary.md` to `--output-dir`.
"""

import argparse
import os

import keras
import numpy as np
from keras import ops

from keras_sdgm.layers import SpectralDictionary
from keras_sdgm.training import reporting
from keras_sdgm.utils import timing
from keras_sdgm.utils.arguments import run_command

SHAPES = ["128,256,512,8", "512,256,512,8", "2048,64,256,2"]


def direct_mix(layer, coefficients):
    atoms = ops.cast(layer.atoms(0, coefficients.shape[1]), coefficients.dtype)
    return ops.einsum("blk,lkd->bld", coefficients, atoms)


def compiled_loss_and_grad(layer, mix, weights):
    """(forward, forward+backward) callables of the coefficients."""

    def loss(coefficients):
        return ops.sum(mix(layer, coefficients) * weights)

    variables = layer.trainable_variables
    return (
        timing.compiled(loss, variables, training=True),
        timing.compiled_gradients(loss, variables),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--shapes", nargs="+", default=SHAPES, help="length,atoms,hidden,batch"
    )
    parser.add_argument(
        "--chunk-sizes", type=int, nargs="+", default=[16, 32, 64]
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--output-dir",
        default=os.path.join(
            os.path.dirname(os.path.abspath(__file__)),
            "results",
            f"dictionary_{keras.config.backend()}",
        ),
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for shape in args.shapes:
        length, atoms, hidden, batch = (int(x) for x in shape.split(","))
        coefficients = ops.convert_to_tensor(
            rng.standard_normal((batch, length, atoms), dtype="float32")
        )
        weights = ops.convert_to_tensor(
            rng.standard_normal((batch, length, hidden), dtype="float32")
        )
        variants = [("direct", None)] + [
            (f"chunked {c}", c) for c in args.chunk_sizes
        ]
        for name, chunk_size in variants:
            # The direct variant never uses the chunk size: layer default.
            layer = SpectralDictionary(
                atoms,
                hidden,
                window_length=128,
                **({"chunk_size": chunk_size} if chunk_size else {}),
            )
            layer.build((batch, length, atoms))
            mix = (
                direct_mix
                if chunk_size is None
                else (lambda layer, c: layer(c))
            )
            forward, both = compiled_loss_and_grad(layer, mix, weights)
            row = {
                "length": length,
                "atoms": atoms,
                "hidden": hidden,
                "batch": batch,
                "variant": name,
                "forward_seconds": timing.median_seconds(
                    lambda: forward(coefficients), args.steps
                ),
                "forward_backward_seconds": timing.median_seconds(
                    lambda: both(coefficients), args.steps
                ),
            }
            rows.append(row)
            print(
                f"L={length} K={atoms} D={hidden} b={batch} {name:11s}: "
                f"forward {1e3 * row['forward_seconds']:8.1f} ms, "
                f"forward+backward "
                f"{1e3 * row['forward_backward_seconds']:8.1f} ms",
                flush=True,
            )
    os.makedirs(args.output_dir, exist_ok=True)
    reporting.write_json(
        os.path.join(args.output_dir, "dictionary.json"),
        {
            "backend": keras.config.backend(),
            "rows": rows,
            "config": vars(args),
            "versions": reporting.library_versions(),
        },
    )
    cells = []
    for row in rows:
        direct = next(
            r
            for r in rows
            if r["variant"] == "direct"
            and all(
                r[k] == row[k] for k in ("length", "atoms", "hidden", "batch")
            )
        )
        cells.append(
            [
                f"{row['length']}, {row['atoms']}, {row['hidden']}, "
                f"{row['batch']}",
                row["variant"],
                f"{1e3 * row['forward_seconds']:.1f}",
                f"{1e3 * row['forward_backward_seconds']:.1f}",
                f"{direct['forward_backward_seconds'] / row['forward_backward_seconds']:.1f}x",
            ]
        )
    table = reporting.markdown_table(
        [
            "L, K, D, batch",
            "variant",
            "forward ms",
            "forward+backward ms",
            "speed-up vs direct (fwd+bwd)",
        ],
        cells,
    )
    reporting.write_markdown(
        os.path.join(args.output_dir, "dictionary.md"), table
    )


if __name__ == "__main__":
    run_command(main)
