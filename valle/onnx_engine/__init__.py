"""ONNX export of a speaking model (export.py, graphs.py) and the ONNX Runtime engine that runs it (runtime.py).
Needs the extra `onnx` (onnx, onnxruntime); nothing here is imported unless asked for."""
