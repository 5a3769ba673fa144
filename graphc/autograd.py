"""Gradient mode (`no_grad`, `enable_grad`) and the source-location override used while
autodiff emits backward nodes (they carry the location of the forward node they come
from, not of graphc's own code)."""
from __future__ import annotations

import functools
import inspect
import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


def _set_mode(mode: bool):
    _state.grad_enabled = bool(mode)


class set_grad_enabled:
    """torch.set_grad_enabled: sets the mode when called, and used as a context manager
    restores the previous mode on exit."""

    def __init__(self, mode: bool):
        self._prev = is_grad_enabled()
        self.mode = bool(mode)
        _set_mode(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _set_mode(self._prev)
        return False

    def __call__(self, fn):
        _set_mode(self._prev)  # as a decorator it changes the mode only inside `fn`
        mode = self.mode
        return _decorate(fn, lambda: set_grad_enabled(mode))


def _decorate(fn, make_context):
    """`fn` run inside `make_context()`. A generator function's body runs at each resume,
    not when it is called, so each resume (the first `next`, every `send`/`throw`/
    `close`) enters the context, as PyTorch's decorators do: a token-by-token generation
    loop under @no_grad must not build graphs."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            gen = fn(*args, **kwargs)
            try:
                with make_context():
                    response = gen.send(None)
                while True:
                    try:
                        request = yield response
                    except GeneratorExit:
                        with make_context():
                            gen.close()
                        raise
                    except BaseException as e:
                        with make_context():
                            response = gen.throw(e)
                    else:
                        with make_context():
                            response = gen.send(request)
            except StopIteration as stop:
                return stop.value
        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with make_context():
            return fn(*args, **kwargs)
    return wrapper


def location_override():
    return getattr(_state, "loc", None)


class _GradModeContext:
    """Context manager and decorator, like torch.no_grad / torch.enable_grad."""
    mode = True

    def __new__(cls, orig_func=None):
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)  # the bare form: `@no_grad` without parentheses

    def __enter__(self):
        self._prev = is_grad_enabled()
        _set_mode(self.mode)
        return self

    def __exit__(self, *exc):
        _set_mode(self._prev)
        return False

    def __call__(self, fn):
        return _decorate(fn, type(self))


class no_grad(_GradModeContext):
    mode = False


class enable_grad(_GradModeContext):
    mode = True


def is_inference_mode_enabled() -> bool:
    return getattr(_state, "inference", False)


class inference_mode(_GradModeContext):
    """torch.inference_mode(mode=True): a context manager and decorator (bare or called).
    graphc has no inference tensors, so inference mode is no_grad that also reports
    itself; as PyTorch's guard does, `inference_mode(False)` turns gradients *on* (even
    inside no_grad) and leaves inference mode."""

    def __new__(cls, mode=True):
        if isinstance(mode, bool):
            return object.__new__(cls)
        return cls()(mode)  # `@inference_mode` without parentheses: `mode` is the function

    def __init__(self, mode=True):
        self.inference = mode

    @property
    def mode(self):
        return not self.inference

    def __enter__(self):
        self._prev_inference = is_inference_mode_enabled()
        _state.inference = self.inference
        return super().__enter__()

    def __exit__(self, *exc):
        _state.inference = self._prev_inference
        return super().__exit__(*exc)

    def __call__(self, fn):
        inference = self.inference
        return _decorate(fn, lambda: inference_mode(inference))


class _LocationContext:
    def __init__(self, loc):
        self.loc = loc

    def __enter__(self):
        self._prev = location_override()
        _state.loc = self.loc

    def __exit__(self, *exc):
        _state.loc = self._prev
        return False


def emitted_at(loc):
    """Nodes created inside this context get `loc` as their source location."""
    return _LocationContext(loc)


def literal_scalars():
    """Inside this context Python floats become IR constants, not runtime inputs (used
    by graphc's own code: the 0.5 in a VJP rule is a literal, a user's lr is not)."""
    return _LiteralContext()


def scalars_are_literals() -> bool:
    return getattr(_state, "literals", 0) > 0


class _LiteralContext:
    def __enter__(self):
        _state.literals = getattr(_state, "literals", 0) + 1

    def __exit__(self, *exc):
        _state.literals -= 1
        return False


# ---------------------------------------------------------------------------- functions

def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         only_inputs=True, allow_unused=None, is_grads_batched=False,
         materialize_grads=False):
    """torch.autograd.grad: the gradients of sum(output * grad_output) with respect to
    each of `inputs`, returned (not accumulated into .grad). With create_graph the
    result has its own gradient path (gradient penalties, Hessian-vector products).
    Graphs are values here, so retain_graph changes nothing (see docs/coverage.md)."""
    from .passes.autodiff import backward_nodes
    from .tensor import Tensor, ones_like_node, zeros_like
    outputs, inputs, grad_outputs = _grad_arguments(outputs, inputs, grad_outputs,
                                                    is_grads_batched)
    seeds = []
    for out, g in zip(outputs, grad_outputs):
        if g is None:
            with literal_scalars():
                g = ones_like_node(out)
        g = g._cast(out.dtype)
        seeds.append(g if create_graph else g.detach())
    retain = {id(t._node) for t in inputs if not t._is_leaf}
    found = backward_nodes([o._node for o in outputs], seeds, create_graph=create_graph,
                           retain=retain)
    if allow_unused is None:
        allow_unused = materialize_grads
    result = []
    for t in inputs:
        hit = found.get(id(t._node))
        if hit is None:
            if materialize_grads:
                result.append(zeros_like(t))
                continue
            if not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been "
                                   "used in the graph. Set allow_unused=True if this is the "
                                   "desired behavior.")
            result.append(None)
            continue
        g = Tensor._wrap(hit[1])
        if not create_graph:
            g._is_leaf = True
        result.append(g)
    return tuple(result)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False,
             inputs=None):
    """torch.autograd.backward: `tensors[k].backward(grad_tensors[k])` for every k, the
    gradients summed into .grad."""
    from .tensor import Tensor
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors] * len(tensors) if grad_tensors is None \
            else [grad_tensors]
    if len(grad_tensors) != len(tensors):
        raise RuntimeError(f"grad can be implicitly created only for scalar outputs: got "
                           f"{len(tensors)} tensors and {len(grad_tensors)} gradients")
    for t, g in zip(tensors, grad_tensors):
        t.backward(g, retain_graph=retain_graph, create_graph=create_graph, inputs=inputs)


def _grad_arguments(outputs, inputs, grad_outputs, is_grads_batched):
    """autograd.grad's arguments as lists, with PyTorch's checks and messages."""
    from .ir.errors import at_user_line
    from .tensor import Tensor

    def as_list(x):
        return [x] if isinstance(x, Tensor) or x is None else list(x)
    if is_grads_batched:
        raise at_user_line(NotImplementedError, "autograd.grad(is_grads_batched=True): "
                                                "graphc has no vmap; loop over the batch")
    outputs, inputs = as_list(outputs), as_list(inputs)
    grad_outputs = [None] * len(outputs) if grad_outputs is None else as_list(grad_outputs)
    if not inputs:
        raise at_user_line(RuntimeError, "grad requires non-empty inputs.")
    if len(grad_outputs) != len(outputs):
        raise at_user_line(RuntimeError, f"grad_outputs must have the same length as outputs "
                                         f"(got {len(grad_outputs)} and {len(outputs)})")
    for k, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if not out.requires_grad:
            raise at_user_line(RuntimeError, f"element {k} of tensors does not require grad "
                                             f"and does not have a grad_fn")
        if g is None and out.numel() != 1:
            raise at_user_line(RuntimeError, f"grad can be implicitly created only for scalar "
                                             f"outputs (shape {list(out.shape)})")
        if g is not None and tuple(g.shape) != tuple(out.shape):
            raise at_user_line(RuntimeError, f"Mismatch in shape: grad_output[{k}] has a shape "
                                             f"of {list(g.shape)} and output[{k}] has a shape "
                                             f"of {list(out.shape)}")
    for t in inputs:
        if not t.requires_grad:
            raise at_user_line(RuntimeError, "One of the differentiated Tensors does not "
                                             "require grad")
    return outputs, inputs, grad_outputs
