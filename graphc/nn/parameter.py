"""`nn.Parameter`: a leaf tensor that a Module registers as one of its parameters.

A Parameter is a `Tensor` subclass (Tensor._wrap builds instances with
object.__new__(cls), so every tensor-level mechanism works on it unchanged). It always
owns its node as a leaf: `p.grad` accumulates there, and in-place updates under
`no_grad` (what an optimizer does) keep it a leaf and keep it a Parameter.
"""
from __future__ import annotations

from ..tensor import Tensor, empty


class Parameter(Tensor):
    __slots__ = ()

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter: expected a Tensor as data, got "
                            f"{type(data).__name__}")
        p = cls._wrap(data.detach()._node, is_leaf=True)
        p.requires_grad_(requires_grad)
        return p

    def __init__(self, data=None, requires_grad=True):
        pass  # everything happens in __new__ (Tensor.__init__ refuses direct construction)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        # Nodes remember their owning leaf by weakref; a copied node would keep pointing
        # at this Parameter, so a copy gets a fresh node holding the same value.
        if id(self) in memo:
            return memo[id(self)]
        copy = Parameter(self.detach(), self.requires_grad)
        memo[id(self)] = copy
        return copy
