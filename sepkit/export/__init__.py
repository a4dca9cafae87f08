"""Taking a trained model out of Python: ONNX files that run with onnxruntime alone.

``onnx``: the export (whole-signal models, and causal models as a stateful stream), the file's
metadata, and a check of the file against PyTorch. The command line is
:mod:`sepkit.cli.export`.
"""

from __future__ import annotations

from sepkit.export.onnx import ExportError, ExportInfo, check_output_path, export_onnx

__all__ = ["ExportError", "ExportInfo", "check_output_path", "export_onnx"]
