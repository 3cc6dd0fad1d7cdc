"""Export for deployment: TF Serving SavedModels and ONNX, from every backend."""

from keras_sdgm.export.onnx import export_onnx
from keras_sdgm.export.saved_model import export_saved_model

__all__ = ["export_onnx", "export_saved_model"]
