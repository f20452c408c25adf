"""Speed paths applied to a built model: quantisation, CUDA graphs (inference and training steps), ONNX
export."""

from openalbert.fast.cuda_graphs import CUDAGraphModel, CUDAGraphTrainStep, cuda_graph_train_step, cuda_graphs
from openalbert.fast.quantize import Int8Linear, quantize_int8

__all__ = [
    "CUDAGraphModel",
    "CUDAGraphTrainStep",
    "Int8Linear",
    "cuda_graph_train_step",
    "cuda_graphs",
    "quantize_int8",
]
