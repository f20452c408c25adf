"""Inference speed paths applied to a built model: quantisation, compilation, ONNX export."""
