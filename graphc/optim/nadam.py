"""NAdam, RAdam and Adamax (PyTorch's single-tensor algorithms, op for op), each with
weight decay (L2, or decoupled for NAdam/RAdam) and maximize.

As in Adam, every quantity PyTorch computes in Python doubles from the step count (bias
corrections, NAdam's momentum schedule mu_t, RAdam's rho_t) is computed in the graph
from the 0-d step tensor in float64 and cast to the parameter's dtype where it meets a
tensor, so neither the step nor lr / betas / eps changes the program. RAdam's
`if rho_t > 5` is a `where` on that float64 scalar: both updates are recorded and the
step count picks one at run time.

State per parameter: `step` (0-d float32) and `exp_avg` for all three; NAdam adds
`mu_product` (0-d float32, PyTorch's product of the mu_t) and `exp_avg_sq`; RAdam
`exp_avg_sq`; Adamax `exp_inf`.
"""
from __future__ import annotations

import numpy as np

from .. import tensor_ops as T
from ..autograd import literal_scalars
from ..ir import dtypes as dt
from ..tensor import tensor
from .adam import check_adam_arguments
from .optimizer import GroupScalars, Optimizer, update_moments


class _AdamFamily(Optimizer):
    def _update_group(self, index, group, params):
        # every hyper-parameter is already a runtime input (`_hyper`): the numbers left in
        # the formulas (0.5, 0.96, the 5 of RAdam's threshold) are the algorithm's own
        with literal_scalars():
            self._record(index, group, params)

    def _begin(self, group, p, buffers, extra=()):
        """The per-parameter start of every update: the state (a step counter, the
        `extra` (name, factory) entries and zeroed `buffers`, created at the first step,
        in PyTorch's key order), the step counted, and the gradient with `maximize`
        applied."""
        state = self.state[p]
        if len(state) == 0:
            state["step"] = self._new_step()
            for name, make in extra:
                state[name] = make()
            for name in buffers:
                state[name] = self._new_buffer(p)
        state["step"].add_(1)
        return state, (p.grad if not group["maximize"] else -p.grad)

    def _group_hypers(self, index):
        """lr, beta1, beta2 (float64 runtime inputs) and the group's scalars cast once per
        dtype (see GroupScalars)."""
        lr = self._hyper(index, "lr")
        beta1, beta2 = self._hyper(index, "betas", 0), self._hyper(index, "betas", 1)
        scalars = GroupScalars(one_minus_beta1=1 - beta1, beta2=beta2,
                               one_minus_beta2=1 - beta2, eps=self._hyper(index, "eps"))
        return lr, beta1, beta2, scalars

    def _decayed_grad(self, index, group, p, grad, lr, decoupled):
        """PyTorch's weight decay: p *= 1 - lr * wd (decoupled) or grad += wd * p."""
        if group["weight_decay"] == 0:
            return grad
        wd = self._hyper(index, "weight_decay")
        if decoupled:
            p.mul_((1 - lr * wd).to(p.dtype))
            return grad
        return grad + p * wd.to(p.dtype)

    def _after_load(self):
        super()._after_load()
        for group in self.param_groups:
            group["betas"] = tuple(group["betas"])


class NAdam(_AdamFamily):
    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=None,
                 maximize=False, capturable=False, differentiable=False):
        check_adam_arguments(lr, betas, eps, weight_decay)
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable)
        super().__init__(params, defaults)

    def _record(self, index, group, params):
        lr, beta1, beta2, scalars = self._group_hypers(index)
        momentum_decay = self._hyper(index, "momentum_decay")
        for p in params:
            d = p.dtype
            # PyTorch keeps the running product of the mu_t as a 0-d float32 tensor
            state, grad = self._begin(group, p, ("exp_avg", "exp_avg_sq"), extra=(
                ("mu_product", lambda: tensor(np.ones((), dtype=np.float32), dtype=dt.float32)),))
            step = state["step"].to(dt.float64)
            bias_correction2 = 1 - beta2 ** step
            grad = self._decayed_grad(index, group, p, grad, lr, group["decoupled_weight_decay"])
            # the momentum cache mu_t and mu_{t+1}
            mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
            mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
            mu_product = state["mu_product"]
            # the product is multiplied in its own precision (float32, or the parameter's
            # dtype after a load_state_dict, as in PyTorch), then read back as a double
            mu_product.mul_(mu.to(mu_product.dtype))
            mu_prod = mu_product.to(dt.float64)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            update_moments(exp_avg, exp_avg_sq, grad, scalars)
            denom = (exp_avg_sq / bias_correction2.to(d)).sqrt() + scalars("eps", d)
            mu_product_next = mu_prod * mu_next
            p.add_((-lr * (1.0 - mu) / (1.0 - mu_prod)).to(d) * grad / denom)
            p.add_((-lr * mu_next / (1.0 - mu_product_next)).to(d) * exp_avg / denom)

    def _after_load(self):
        super()._after_load()
        for group in self.param_groups:
            group.setdefault("decoupled_weight_decay", False)


class RAdam(_AdamFamily):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False,
                 capturable=False, differentiable=False):
        check_adam_arguments(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        decoupled_weight_decay=decoupled_weight_decay,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def _record(self, index, group, params):
        lr, beta1, beta2, scalars = self._group_hypers(index)
        for p in params:
            d = p.dtype
            state, grad = self._begin(group, p, ("exp_avg", "exp_avg_sq"))
            step = state["step"].to(dt.float64)
            grad = self._decayed_grad(index, group, p, grad, lr, group["decoupled_weight_decay"])
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            update_moments(exp_avg, exp_avg_sq, grad, scalars)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            bias_corrected_exp_avg = exp_avg / bias_correction1.to(d)
            # the length of the approximated SMA and its maximum
            rho_inf = 2 / (1 - beta2) - 1
            rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
            rectified = rho_t > 5.0
            # where rho_t <= 5 the rectification is a square root of a negative number:
            # `where` drops it (no gradient flows through an optimizer update)
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            adaptive = (bias_correction2 ** 0.5).to(d) / (exp_avg_sq.sqrt() + scalars("eps", d))
            update = bias_corrected_exp_avg * lr.to(d)
            update = T.where(rectified, update * adaptive * rect.to(d), update)
            p.sub_(update)


class Adamax(_AdamFamily):
    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 foreach=None, *, maximize=False, differentiable=False, capturable=False):
        check_adam_arguments(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        foreach=foreach, maximize=maximize, differentiable=differentiable,
                        capturable=capturable)
        super().__init__(params, defaults)

    def _record(self, index, group, params):
        lr, beta1, beta2, scalars = self._group_hypers(index)
        for p in params:
            d = p.dtype
            state, grad = self._begin(group, p, ("exp_avg", "exp_inf"))
            grad = self._decayed_grad(index, group, p, grad, lr, False)
            exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
            exp_avg.lerp_(grad, scalars("one_minus_beta1", d))
            # the exponentially weighted infinity norm
            exp_inf.copy_(T.maximum(exp_inf * scalars("beta2", d), grad.abs() + scalars("eps", d)))
            bias_correction = 1 - beta1 ** state["step"].to(dt.float64)
            clr = lr / bias_correction
            p.sub_(clr.to(d) * exp_avg / exp_inf)
