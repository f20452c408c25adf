"""Inference speed paths applied to a built model: quantisation, CUDA graphs, ONNX export."""

from openalbert.fast.cuda_graphs import CUDAGraphModel, cuda_graphs
from openalbert.fast.quantize import Int8Linear, quantize_int8

__all__ = ["CUDAGraphModel", "Int8Linear", "cuda_graphs", "quantize_int8"]
