"""Stochastic gradient descent, with PyTorch's momentum, dampening, Nesterov, weight decay
and maximize semantics (torch.optim.SGD's single-tensor algorithm, op for op).

State per parameter (only when momentum != 0): `momentum_buffer`, created on the first
step as a copy of the (decayed) gradient, as PyTorch does.
"""
from __future__ import annotations

from .optimizer import GroupScalars, Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, foreach=None, differentiable=False,
                 fused=None):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        # foreach / fused are PyTorch's kernel choices; graphc always emits one graph for
        # all parameters and fuses it, so they are kept only for state_dict parity.
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                        foreach=foreach, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)

    def _update_group(self, index, group, params):
        use_wd = group["weight_decay"] != 0
        use_momentum = group["momentum"] != 0
        hypers = {"lr": self._hyper(index, "lr")}
        if use_wd:
            hypers["wd"] = self._hyper(index, "weight_decay")
        if use_momentum:
            hypers.update(momentum=self._hyper(index, "momentum"),
                          keep=1 - self._hyper(index, "dampening"))
        s = GroupScalars(**hypers)
        for p in params:
            d = p.dtype
            grad = p.grad if not group["maximize"] else -p.grad
            if use_wd:
                grad = grad + p * s("wd", d)
            if use_momentum:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = grad.detach().clone()
                    state["momentum_buffer"] = buf
                else:
                    buf.mul_(s("momentum", d)).add_(grad * s("keep", d))
                grad = grad + buf * s("momentum", d) if group["nesterov"] else buf
            p.sub_(grad * s("lr", d))

    def _after_load(self):
        super()._after_load()
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
