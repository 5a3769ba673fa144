"""RMSprop (PyTorch's single-tensor algorithm, op for op): smoothing constant alpha, eps
added outside the square root, optional momentum, centered variant, weight decay and
maximize.

State per parameter: `step`, `square_avg`, and `momentum_buffer` (momentum > 0) and
`grad_avg` (centered), all created as zeros on the parameter's first step.
"""
from __future__ import annotations

from .optimizer import GroupScalars, Optimizer


class RMSprop(Optimizer):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                        maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    def _update_group(self, index, group, params):
        use_wd = group["weight_decay"] != 0
        use_momentum = group["momentum"] > 0
        alpha = self._hyper(index, "alpha")
        hypers = {"lr": self._hyper(index, "lr"), "alpha": alpha, "one_minus_alpha": 1 - alpha,
                  "eps": self._hyper(index, "eps")}
        if use_wd:
            hypers["wd"] = self._hyper(index, "weight_decay")
        if use_momentum:
            hypers["momentum"] = self._hyper(index, "momentum")
        s = GroupScalars(**hypers)
        for p in params:
            d = p.dtype
            state = self.state[p]
            if len(state) == 0:
                state["step"] = self._new_step()
                state["square_avg"] = self._new_buffer(p)
                if use_momentum:
                    state["momentum_buffer"] = self._new_buffer(p)
                if group["centered"]:
                    state["grad_avg"] = self._new_buffer(p)
            grad = p.grad if not group["maximize"] else -p.grad
            state["step"].add_(1)
            if use_wd:
                grad = grad + p * s("wd", d)
            square_avg = state["square_avg"]
            square_avg.mul_(s("alpha", d)).add_(s("one_minus_alpha", d) * grad * grad)
            if group["centered"]:
                grad_avg = state["grad_avg"]
                grad_avg.lerp_(grad, s("one_minus_alpha", d))
                avg = (square_avg - grad_avg * grad_avg).sqrt()
            else:
                avg = square_avg.sqrt()
            avg = avg + s("eps", d)
            if use_momentum:
                buf = state["momentum_buffer"]
                buf.mul_(s("momentum", d)).add_(grad / avg)
                p.sub_(buf * s("lr", d))
            else:
                p.sub_(s("lr", d) * grad / avg)

    def _after_load(self):
        super()._after_load()
        for group in self.param_groups:
            group.setdefault("momentum", 0)
            group.setdefault("centered", False)
