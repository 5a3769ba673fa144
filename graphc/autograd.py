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
