"""Adam and AdamW (PyTorch's single-tensor algorithm, op for op), with amsgrad, maximize
and L2 (Adam) or decoupled (AdamW) weight decay.

State per parameter: `step` (0-d float32 tensor, incremented in place), `exp_avg`,
`exp_avg_sq` and, with amsgrad, `max_exp_avg_sq`. The bias corrections 1 - beta**step
are computed in the graph from the step tensor, in float64 (PyTorch does this arithmetic
in Python doubles), so neither the step count nor a scheduled beta1 changes the program.
"""
from __future__ import annotations

from ..ir import dtypes as dt
from .optimizer import GroupScalars, Optimizer, update_moments


def check_adam_arguments(lr, betas, eps, weight_decay):
    """PyTorch's argument checks of the Adam family, with its messages."""
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        check_adam_arguments(lr, betas, eps, weight_decay)
        # capturable / foreach / fused are PyTorch's execution choices; graphc's update is
        # always "capturable" (step count and lr are graph inputs) and always one graph.
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _update_group(self, index, group, params):
        lr = self._hyper(index, "lr")
        beta1 = self._hyper(index, "betas", 0)
        beta2 = self._hyper(index, "betas", 1)
        eps = self._hyper(index, "eps")
        use_wd = group["weight_decay"] != 0
        decoupled = group["decoupled_weight_decay"]
        decay = {}
        if use_wd:
            wd = self._hyper(index, "weight_decay")
            # decoupled (AdamW): p *= 1 - lr * wd; else grad += wd * p
            decay["wd"] = 1 - lr * wd if decoupled else wd
        scalars = GroupScalars(one_minus_beta1=1 - beta1, beta2=beta2,
                               one_minus_beta2=1 - beta2, eps=eps, **decay)
        for p in params:
            d = p.dtype
            state = self.state[p]
            if len(state) == 0:
                state["step"] = self._new_step()
                state["exp_avg"] = self._new_buffer(p)
                state["exp_avg_sq"] = self._new_buffer(p)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = self._new_buffer(p)
            grad = p.grad if not group["maximize"] else -p.grad
            step_t = state["step"]
            step_t.add_(1)
            if use_wd:
                if decoupled:
                    p.mul_(scalars("wd", d))
                else:
                    grad = grad + p * scalars("wd", d)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            update_moments(exp_avg, exp_avg_sq, grad, scalars)

            step = step_t.to(dt.float64)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            step_size = lr / bias_correction1
            bias_correction2_sqrt = bias_correction2.sqrt()
            if group["amsgrad"]:
                max_sq = state["max_exp_avg_sq"]
                max_sq.copy_(max_sq.maximum(exp_avg_sq))
                second = max_sq
            else:
                second = exp_avg_sq
            denom = second.sqrt() / bias_correction2_sqrt.to(d) + scalars("eps", d)
            p.sub_(step_size.to(d) * exp_avg / denom)

    def _after_load(self):
        super()._after_load()
        for group in self.param_groups:
            group["betas"] = tuple(group["betas"])


class AdamW(Adam):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def _after_load(self):
        super()._after_load()
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
