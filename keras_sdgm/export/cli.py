"""`python -m keras_sdgm.export MODEL.keras DEST`: export for serving."""

import argparse

from keras_sdgm.export.onnx import DEFAULT_OPSET


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_sdgm.export",
        description="Export a saved SDGMCausalLM as a TF Serving SavedModel "
        "(DEST/<version>/) or an ONNX file (DEST).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", help="A saved SDGMCausalLM (.keras).")
    parser.add_argument(
        "destination",
        help="saved_model: the model's base folder (e.g. saved_models/NAME); "
        "onnx: the .onnx file.",
    )
    parser.add_argument(
        "--format", choices=("saved_model", "onnx"), default="saved_model"
    )
    parser.add_argument(
        "--version",
        type=int,
        default=1,
        help="saved_model: the version subfolder.",
    )
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help="onnx: the ONNX opset."
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace an existing version folder or file.",
    )
    args = parser.parse_args(argv)

    from keras_sdgm.export import export_onnx
    from keras_sdgm.export import export_saved_model

    try:
        if args.format == "onnx":
            written = export_onnx(
                args.model,
                args.destination,
                overwrite=args.overwrite,
                opset=args.opset,
            )
        else:
            written = export_saved_model(
                args.model,
                args.destination,
                version=args.version,
                overwrite=args.overwrite,
            )
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"Wrote {written}")
