"""The optimizer base class: PyTorch's `torch.optim.Optimizer` contract over lazy tensors.

How an update reaches the compiled program:
  * `step()` runs under `no_grad` and only *records* the update: every parameter and
    every state buffer is rebound in place (`Tensor._assign`) to a new lazy node. The
    next value read realizes all of them in one graph, together with the loss and the
    gradients, so a training step is one compiled program.
  * Every hyper-parameter read from a param group (lr, momentum, betas, eps, ...) enters
    the graph as a runtime scalar input (`scalar_input`) whose `source` reads the current
    value from `param_groups`. A scheduler that changes `group["lr"]` therefore changes
    an input of the program, never its structure: no recompilation.
  * The step count lives in the state as a 0-d float32 tensor incremented in place (as
    PyTorch's capturable mode keeps it), and bias corrections are computed in-graph from
    it, in float64 like PyTorch's Python arithmetic, then cast to the parameter's dtype.

Invariants:
  * `state` maps a parameter Tensor (hashed by identity) to a dict of state values; the
    tensors in it are graphc tensors of the parameter's shape and dtype (`step`: 0-d
    float32).
  * Only Python booleans and the zero-ness of options (`momentum != 0`, ...) pick the
    structure of the update, exactly where PyTorch branches on them.
  * `state_dict()` returns the state tensors detached (no copy: like PyTorch's, they
    may follow later in-place updates); `load_state_dict` clones them, so two
    optimizers never share a state tensor.
"""
from __future__ import annotations

import copy
import numbers
import warnings
from collections import defaultdict

import numpy as np

from .. import autograd, runtime
from ..ir import dtypes as dt
from ..tensor import Tensor, scalar_input, tensor


class _RequiredParameter:
    """Singleton marking an option a param group must set (PyTorch's `required`)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _is_number(v):
    t = type(v)
    if t is float or t is int:   # the common case, without the slow ABC check below
        return True
    return t is not bool and isinstance(v, numbers.Real)


class GroupScalars:
    """A param group's scalar expressions (float64 runtime inputs and arithmetic on them:
    `1 - beta1`, `eps`), each cast to a parameter's dtype once per dtype and reused for
    every parameter of that dtype. Cast per parameter, they were a fifth of the nodes an
    Adam step records, each built, hashed and fused again."""

    def __init__(self, **expressions):
        self._expressions = expressions
        self._cast = {}

    def __call__(self, name, dtype):
        key = (name, dtype)
        value = self._cast.get(key)
        if value is None:
            value = self._cast[key] = self._expressions[name].to(dtype)
        return value


def update_moments(exp_avg, exp_avg_sq, grad, scalars: GroupScalars):
    """The Adam family's moment updates, op for op as PyTorch: exp_avg moves towards grad
    by 1 - beta1 (lerp), exp_avg_sq decays by beta2 and gains (1 - beta2) * grad**2.
    `scalars` holds `one_minus_beta1`, `beta2` and `one_minus_beta2`."""
    d = grad.dtype
    exp_avg.lerp_(grad, scalars("one_minus_beta1", d))
    exp_avg_sq.mul_(scalars("beta2", d)).add_(scalars("one_minus_beta2", d) * grad * grad)


class Optimizer:
    """Base class of graphc's optimizers. Subclasses implement `_update_group(index, group,
    params)`, which records the update of `params`: the parameters of param_groups[index]
    that have a grad."""

    def __init__(self, params, defaults: dict):
        for key in ("differentiable",):
            if defaults.get(key):
                raise ValueError(f"{type(self).__name__}: {key}=True is not supported by "
                                 "graphc (the update is recorded under no_grad)")
        self.defaults = defaults
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got graphc.Tensor")
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict):
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs. "
                            "Please use a list instead.")
        else:
            params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        tensors = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(tensors):
                raise ValueError("all optimizer params should be with/without names. Some "
                                 "param names are missing")
            param_group["param_names"] = names
        for p in tensors:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                + type(p).__name__)
            if not (p.is_leaf or p._retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        param_group["params"] = tensors
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError("parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            param_group.setdefault(name, default)
        self._check_group_values(param_group)
        ids = [id(p) for p in tensors]
        if len(ids) != len(set(ids)):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                          "in future, this will cause an error", stacklevel=3)
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if taken & set(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def _check_group_values(self, group):
        """Hyper-parameters must be Python numbers: each becomes a runtime scalar input."""
        for key, value in group.items():
            if isinstance(value, Tensor) and key != "params":
                raise TypeError(f"{type(self).__name__}: {key} as a Tensor is not supported; "
                                "pass a Python number (graphc already feeds it to the compiled "
                                "program as a runtime input, so changing it never recompiles)")

    # ------------------------------------------------------------------ stepping
    def step(self, closure=None):
        """Record one update of every parameter that has a grad; returns the closure's loss
        (the closure runs with gradients enabled, like PyTorch)."""
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        if runtime.tracer is not None:   # graphc.compile is capturing this step
            runtime.tracer.on_optimizer_step(self)
        with autograd.no_grad():
            for index, group in enumerate(self.param_groups):
                self._check_group_values(group)
                params = [p for p in group["params"] if p.grad is not None]
                if params:
                    self._update_group(index, group, params)
        return loss

    # Numeric options whose zero-ness picks the structure of the update (see the
    # subclasses' `_update_group`); every other number is only a runtime input.
    _ZERO_PICKS_STRUCTURE = ("momentum", "weight_decay")

    def _structure(self):
        """What the recorded update's structure depends on, for graphc.compile's guards:
        the parameters of each group, its non-numeric options (amsgrad, nesterov, ...),
        and whether momentum / weight_decay are zero. Other numbers (lr, betas, eps, ...)
        are runtime inputs, so a scheduler changing them, even from 0, never retraces."""
        # checked before every replay of a compiled step: kept to plain loops
        zero_picks = self._ZERO_PICKS_STRUCTURE

        def shape(key, v):
            if _is_number(v):
                return v == 0 if key in zero_picks else "number"
            if isinstance(v, (list, tuple)):
                return tuple(shape(key, x) for x in v)
            if v is None or isinstance(v, (bool, str)):
                return v
            return type(v).__name__
        out = []
        for g in self.param_groups:
            options = tuple((k, shape(k, v)) for k, v in g.items() if k != "params")
            out.append((tuple(map(id, g["params"])), options))
        return tuple(out)

    def _update_group(self, index, group, params):  # pragma: no cover - abstract
        raise NotImplementedError

    def _hyper(self, index, key, position=None):
        """group[key] (or group[key][position]) as a float64 runtime scalar input whose
        source reads the current value, so a replayed program sees scheduler changes."""
        def current():
            v = self.param_groups[index][key]
            v = v if position is None else v[position]
            if not _is_number(v):
                raise TypeError(f"{type(self).__name__}: param group {index} option {key!r} "
                                f"must be a real number, got {v!r}")
            return float(v)
        return scalar_input(current(), dt.float64, source=current)

    @staticmethod
    def _new_buffer(p: Tensor, fill=0.0) -> Tensor:
        """A realized state buffer shaped like `p` (realized now, so the first step's graph
        reads it as an input exactly like every later step does)."""
        return tensor(np.full(tuple(p.shape), fill, dtype=p.dtype.np), dtype=p.dtype)

    @staticmethod
    def _new_step() -> Tensor:
        return tensor(np.zeros((), dtype=np.float32), dtype=dt.float32)

    # ------------------------------------------------------------------ gradients
    def zero_grad(self, set_to_none: bool = True):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    g = p.grad
                    if not g.is_leaf:
                        g.detach_()
                    elif g.requires_grad:
                        g.requires_grad_(False)
                    g.zero_()

    # ------------------------------------------------------------------ saving
    def state_dict(self) -> dict:
        """PyTorch's layout: {'state': {index: {...}}, 'param_groups': [{..., 'params':
        [indices]}]}. Tensors are snapshots of the current (possibly pending) values."""
        mapping: dict[int, int] = {}
        start = 0

        def pack(group):
            nonlocal start
            packed = {k: v for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                mapping.setdefault(id(p), i)
            packed["params"] = [mapping[id(p)] for p in group["params"]]
            start += len(packed["params"])
            return packed

        groups = [pack(g) for g in self.param_groups]
        state = {}
        for k, v in self.state.items():
            key = mapping[id(k)] if isinstance(k, Tensor) else k
            state[key] = _snapshot(v)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict):
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for g, s in zip(groups, saved_groups):
            if len(g["params"]) != len(s["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't "
                                 "match the size of optimizer's group")
        id_map = {}
        for g, s in zip(groups, saved_groups):
            for saved_id, p in zip(s["params"], g["params"]):
                id_map[saved_id] = p
        state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                p = id_map[k]
                state[p] = {key: _cast_state_value(p, key, val) for key, val in v.items()}
            else:
                state[k] = _snapshot(v)
        new_groups = []
        for g, s in zip(groups, saved_groups):
            s["params"] = g["params"]
            if "param_names" in g and "param_names" not in s:
                s["param_names"] = g["param_names"]
            new_groups.append(s)
        self.state = state
        self.param_groups = new_groups
        self._after_load()

    def _after_load(self):
        """Fill options that older state dicts may lack (PyTorch's __setstate__)."""
        for group in self.param_groups:
            for name, default in self.defaults.items():
                group.setdefault(name, default)

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state,
                "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        s = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            s += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    s += f"    {key}: {group[key]}\n"
        return s + ")"


def _snapshot(value):
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    return value


def _cast_state_value(param: Tensor, key, value):
    """PyTorch's load policy: `step` becomes a 0-d float32 tensor (graphc always keeps the
    step count as a tensor); other floating tensors take the parameter's dtype. Tensors
    are cloned: detach() and a same-dtype to() may return views, and the optimizer
    updates its state in place, so without a copy it would also move the state of the
    optimizer the state dict came from."""
    if key == "step":
        if isinstance(value, Tensor):
            return value.detach().to(dt.float32).clone()
        return tensor(np.array(float(value), dtype=np.float32), dtype=dt.float32)
    if isinstance(value, Tensor):
        v = value.detach().clone()
        if param.dtype.is_floating and v.dtype.is_floating:
            v = v.to(param.dtype)
        if tuple(v.shape) != tuple(param.shape) and v.ndim != 0:
            raise ValueError(f"loaded optimizer state {key!r} has shape {list(v.shape)}, "
                             f"but its parameter has shape {list(param.shape)}")
        return v
    if isinstance(value, dict):
        return {k: _cast_state_value(param, k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_state_value(param, None, v) for v in value)
    return value
