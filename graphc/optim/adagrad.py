"""Adagrad (PyTorch's single-tensor algorithm, op for op), with lr_decay,
initial_accumulator_value, eps, weight decay and maximize.

State per parameter: `step` and `sum`. Like PyTorch, the state of the parameters given
to the constructor is created there, and the accumulator starts at the constructor's
`initial_accumulator_value` (a per-group value is stored but, as in PyTorch, not used
for the initial fill). The decayed rate lr / (1 + (step - 1) * lr_decay) is computed in
the graph from the step tensor.
"""
from __future__ import annotations

from ..ir import dtypes as dt
from .optimizer import GroupScalars, Optimizer


class Adagrad(Optimizer):
    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0,
                 initial_accumulator_value=0, eps=1e-10, foreach=None, *, maximize=False,
                 differentiable=False, fused=None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError("Invalid initial_accumulator_value value: "
                             f"{initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value,
                        foreach=foreach, maximize=maximize, differentiable=differentiable,
                        fused=fused)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p)

    def _init_state(self, p):
        state = self.state[p]
        state["step"] = self._new_step()
        state["sum"] = self._new_buffer(p, float(self.defaults["initial_accumulator_value"]))

    def _update_group(self, index, group, params):
        lr = self._hyper(index, "lr")
        lr_decay = self._hyper(index, "lr_decay")
        use_wd = group["weight_decay"] != 0
        hypers = {"eps": self._hyper(index, "eps")}
        if use_wd:
            hypers["wd"] = self._hyper(index, "weight_decay")
        s = GroupScalars(**hypers)
        for p in params:
            d = p.dtype
            state = self.state[p]
            if len(state) == 0:
                self._init_state(p)
            step_t = state["step"]
            step_t.add_(1)
            grad = p.grad if not group["maximize"] else -p.grad
            if use_wd:
                grad = grad + p * s("wd", d)
            clr = lr / (1 + (step_t.to(dt.float64) - 1) * lr_decay)
            state_sum = state["sum"]
            state_sum.add_(grad * grad)
            std = state_sum.sqrt() + s("eps", d)
            p.sub_(clr.to(d) * grad / std)
