"""Primitive ops for neural-network layers (convolution, pooling): registered here so
that graphc.nn can build on them. Each follows the conventions of ops.py."""
