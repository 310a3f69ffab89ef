"""The Triton backend: one @triton.jit exchange kernel per work split (kernels.py) and the public ops over it
(ops.py). Runs on CUDA tensors, and on CPU tensors in interpreter mode (TRITON_INTERPRET=1)."""
