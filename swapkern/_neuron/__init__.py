"""The function-preserving `neuron` weight swap on any model torch.fx can trace: which tensors' channels must be
permuted together, derived from the graph.

A unit space is a set of channels that one permutation acts on: the output channels of a conv / linear layer or an
embedding's features (its weight's rows, or columns, and its bias), everything per-channel that follows them
(BatchNorm / InstanceNorm / LayerNorm / GroupNorm affine and running statistics, per-channel PReLU slopes, a
parameter broadcast over them), through elementwise ops, activations, pooling over other dims and dropout, to the
input channels of every consumer (its weight's columns; after a flatten, the block of consecutive features a
channel becomes). A residual add ties the spaces of its operands into one (union-find); a cat along the channels
places its inputs' spaces side by side, along another dim ties them; a depthwise convolution carries its input's
space through (its rows join it); a grouped convolution or a GroupNorm confines the exchanges of a space to one of
its groups at a time.

A space moves only when every consumer of it is known to commute with the permutation: the model's outputs, and
anything an op the analysis does not know touches (unknown modules and functions, reshapes that mix the channels
with another dim, pooling or softmax over the channels) keep it where it is. Each value carries where its channel
dim is (counted from the back) and, where known, how many dims it has: an op whose meaning depends on that
(BatchNorm1d, GroupNorm, PReLU(C), flatten, view) acts on the channels only where the graph proves it does; where
it may or may not (a Linear on the model's input, whose rank fx does not give), the space stays. A convolution's
input is taken as batched (N, C, ...). Every use of a parameter or buffer (a module called twice, tied weights, a
parameter read in `forward`) says, for each of its dims, which space moves it; a dim one use moves and another
relies on (or moves another way) keeps its spaces where they are, so the function never changes.

The package: tables (the modules, functions and methods the analysis knows), trace (torch.fx tracing), spaces (unit
spaces and the union-find that ties them), uses (the uses of parameters and buffers, reconciled), modules /
functions / shapes (the rules, one per kind of node), analysis (the walk, and the unit spaces it finds).
"""

from .analysis import Member, NeuronAnalysis, UnitSpace, analyse
from .trace import trace

__all__ = ["Member", "NeuronAnalysis", "UnitSpace", "analyse", "trace"]
