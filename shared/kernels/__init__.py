"""Triton kernels for the reverse loop, the oracle and the measurements, each beside its torch reference.

scalespace.kernels.dispatch is the one place that picks a kernel (on a CUDA
device) or its reference (everywhere else); SCALESPACE_KERNELS=triton forces
the kernels, in the Triton interpreter on the CPU. Kernel modules are imported
lazily by the dispatch, never here.
"""
