"""numba kernels over the FlatSPN arrays. Kernels never validate, print, time themselves or do I/O."""
