"""Provides exports of a run for other tools: CSV rows, TensorBoard events, safetensors and ONNX."""
