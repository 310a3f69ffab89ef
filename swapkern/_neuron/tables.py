"""What the `neuron` analysis knows: the modules, functions and methods whose action on a value's channels it can
place (elementwise, pooling over the last k dims, convolutions, normalisations, binary ops, reductions)."""

import operator

import torch
from torch import nn
from torch.nn import functional as F

ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Hardtanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Mish, nn.Softplus, nn.SELU, nn.CELU, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
    nn.Hardshrink, nn.Softshrink, nn.Threshold, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout,
)  # fmt: skip
POOL_MODULES = {  # pooling over the last k dims
    nn.MaxPool1d: 1, nn.AvgPool1d: 1, nn.AdaptiveAvgPool1d: 1, nn.AdaptiveMaxPool1d: 1, nn.LPPool1d: 1,
    nn.MaxPool2d: 2, nn.AvgPool2d: 2, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveMaxPool2d: 2, nn.LPPool2d: 2,
    nn.MaxPool3d: 3, nn.AvgPool3d: 3, nn.AdaptiveAvgPool3d: 3, nn.AdaptiveMaxPool3d: 3,
}  # fmt: skip
CONVS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
BATCHNORMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}  # the ranks each accepts
INSTANCENORMS = {nn.InstanceNorm1d: 1, nn.InstanceNorm2d: 2, nn.InstanceNorm3d: 3}
KNOWN_LEAVES = (
    ELEMENTWISE_MODULES + tuple(POOL_MODULES) + tuple(CONVS) + tuple(BATCHNORMS) + tuple(INSTANCENORMS)
    + (nn.Linear, nn.LayerNorm, nn.GroupNorm, nn.Flatten, nn.PReLU, nn.Embedding, nn.Softmax, nn.LogSoftmax)
    + (nn.Upsample,)
)  # fmt: skip
ELEMENTWISE_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.elu, F.selu, F.celu, F.hardtanh, F.hardswish, F.hardsigmoid,
    F.mish, F.softplus, F.softsign, F.logsigmoid, F.tanhshrink, F.hardshrink, F.softshrink, F.threshold, F.dropout,
    F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, torch.relu, torch.sigmoid, torch.tanh, F.sigmoid,
    F.tanh, torch.clamp, torch.clip, torch.abs, torch.neg, operator.neg, torch.exp, torch.log, torch.sqrt,
    torch.rsqrt, torch.square, torch.erf, torch.sin, torch.cos, torch.sign,
}  # fmt: skip
POOL_FUNCTIONS = {
    F.max_pool1d: 1, F.avg_pool1d: 1, F.adaptive_avg_pool1d: 1, F.adaptive_max_pool1d: 1, F.lp_pool1d: 1,
    F.max_pool2d: 2, F.avg_pool2d: 2, F.adaptive_avg_pool2d: 2, F.adaptive_max_pool2d: 2, F.lp_pool2d: 2,
    F.max_pool3d: 3, F.avg_pool3d: 3, F.adaptive_avg_pool3d: 3, F.adaptive_max_pool3d: 3,
}  # fmt: skip
ELEMENTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "clip_", "abs", "abs_",
    "neg", "neg_", "exp", "log", "sqrt", "rsqrt", "square", "sign", "erf", "contiguous", "clone", "detach",
    "float", "double", "half", "bfloat16", "to",
}  # fmt: skip
BINARY = {
    operator.add, operator.iadd, torch.add, operator.mul, operator.imul, torch.mul, operator.sub, operator.isub,
    torch.sub, operator.truediv, operator.itruediv, torch.div, operator.pow, torch.pow, torch.maximum, torch.minimum,
}  # fmt: skip
BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_", "pow", "pow_", "maximum", "minimum"}
REDUCTIONS = {torch.mean: "mean", torch.sum: "sum", torch.amax: "amax", torch.amin: "amin"}  # symmetric in the dims
SCALAR_OPS = {operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv, operator.mod,
              operator.pow, operator.neg, operator.getitem}  # fmt: skip

