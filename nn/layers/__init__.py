"""One short class per layer; each docstring gives its forward and backward equations."""
from nn.layers.base import Layer
from nn.layers.conv import Conv2D, ConvTranspose2D, im2col, col2im
from nn.layers.pool import MaxPool2D, AvgPool2D, Upsample2D
from nn.layers.dense import Dense
from nn.layers.norm import BatchNorm1D, BatchNorm2D, Standardize
from nn.layers.activations import ReLU, LeakyReLU, Sigmoid, Tanh
from nn.layers.shape import Flatten, Reshape, Dropout, Scale
from nn.layers.warp import BilinearUpsample2D, Warp

__all__ = ["Layer", "Conv2D", "ConvTranspose2D", "MaxPool2D", "AvgPool2D", "Upsample2D", "BilinearUpsample2D", "Warp", "Dense",
           "BatchNorm1D", "BatchNorm2D", "Standardize", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Flatten", "Reshape",
           "Dropout", "Scale", "im2col", "col2im"]
