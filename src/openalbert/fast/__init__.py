"""Inference speed paths applied to a built model: quantisation, compilation, ONNX export."""

from openalbert.fast.quantize import Int8Linear, quantize_int8

__all__ = ["Int8Linear", "quantize_int8"]
