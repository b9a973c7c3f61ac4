"""Triton kernels. Importing a kernel module defines its @triton.jit functions, so set
TRITON_INTERPRET=1 before the first import to run them on the CPU interpreter."""
