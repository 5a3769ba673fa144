"""Running generated Triton kernels: buffers, launches, host copies, residency.

An `Executable` is built once per graph and runs on a *device* (devices.py): a CUDA GPU
(device memory through the driver API, cubins launched with cuLaunchKernel) or Triton's
CPU interpreter (numpy memory handed to kernels through an injected array carrier).
The executable does not know which: it binds every buffer of the fused plan to a device
block and an offset, and asks the device to run each launch with those pointers.

Memory, per run:
  * temps live in one arena block sized by the memory plan (passes/memory.py), reused
    by every run of the executable;
  * outputs get fresh blocks from the device's caching allocator (graphc/cuda/
    allocator.py) and are returned as device-resident values (values.DeviceArray):
    nothing is copied to the host until a value is read. A later run that gets such a
    value as an input (a parameter updated by the previous training step) binds its
    block directly. With GRAPHC_TRITON_RESIDENT=0 outputs are copied to host arrays
    after the last kernel and their blocks released instead;
  * host-array inputs are uploaded into blocks released after the run.
Device storage of bfloat16 is 16 bits (host arrays hold bfloat16 values as float32: the
executor converts at the copy); bool is one byte, as on the host.

Launch configurations are chosen when a launch first runs, in kernel order (so a kernel
is timed on its real inputs): a test-supplied chooser, else the autotuned winner cached
on disk, else autotuning (devices that can time, kernels with enough work, autotuning
not disabled by GRAPHC_TRITON_AUTOTUNE=0), else the heuristic first candidate.
Out-of-range gather/scatter indices and failed `check` nodes set a status word; the run
then raises IndexError or CheckFailed.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import weakref

import numpy as np

from . import loader
from .. import check_failure, index_error_message, kernel_ir as K
from .values import DeviceArray, from_device_layout, pinned, storage_nbytes, upload

AUTOTUNE_MIN_WORK = 1 << 20
AUTOTUNE_REPS = 10


def residency_enabled() -> bool:
    return os.environ.get("GRAPHC_TRITON_RESIDENT", "1") != "0"


def autotune_enabled() -> bool:
    return os.environ.get("GRAPHC_TRITON_AUTOTUNE", "1") != "0"


# ----------------------------------------------------------------------------- executable

@dataclasses.dataclass
class _Step:
    launch: object
    config: object
    kernel: object     # what the device's prepare() returned
    go: object         # go(args): the device's launcher for this kernel and config


class Executable:
    def __init__(self, plan, memory, generated, device, choose_config=None):
        self.plan = plan
        self.memory = memory
        self.generated = generated
        self.device = device
        self.choose_config = choose_config
        self._lock = threading.Lock()
        self._steps: dict = {}           # precision mode -> [_Step] (filled lazily)
        self._ready: dict = {}           # precision mode -> [(go, buffers, status)]
        graph = plan.graph
        used = set()
        for launch in generated.launches:
            used.update(launch.buffers)
        self._used = used
        self._inputs = [(buf, tuple(node.shape)) for node, buf in
                        zip(graph.inputs, plan.input_buffers)]
        self._fresh = []                 # distinct output buffers written by kernels
        self._outputs = []               # ("input", k) or ("fresh", j) per graph output
        for buf in plan.output_buffers:
            if buf.kind == "input":
                self._outputs.append(("input", plan.input_buffers.index(buf)))
                continue
            if buf not in self._fresh:
                self._fresh.append(buf)
            self._outputs.append(("fresh", self._fresh.index(buf)))
        self._uses_status = any(launch.status for launch in generated.launches)
        self._arena = None
        self._status = None
        self.tuning = []                 # (launch name, chosen config, how)

    # ------------------------------------------------------------------ resources
    def _setup(self):
        alloc = self.device.allocator
        self._arena = alloc.allocate(self.memory.arena_bytes)
        self._status = alloc.allocate(4)
        self.device.zero(self._status, 4)
        weakref.finalize(self, _release_all, alloc, [self._arena, self._status])

    # ------------------------------------------------------------------ configs
    def _precision(self) -> str:
        from ...cuda import matmul
        return "tf32" if matmul.allow_tf32 else "ieee"

    def _launch_for(self, launch, prec):
        if launch.extra_constexprs and dict(launch.extra_constexprs).get("PREC") != prec:
            extra = tuple((k, prec if k == "PREC" else v) for k, v in launch.extra_constexprs)
            return dataclasses.replace(launch, extra_constexprs=extra)
        return launch

    def _choose(self, launch, args):
        dev = self.device
        if self.choose_config is not None:
            return self.choose_config(launch), "chosen by caller"
        cands = launch.configs
        if len(cands) == 1 or not launch.rerunnable:
            return cands[0], "only candidate" if len(cands) == 1 else "not re-runnable"
        if not (getattr(dev, "can_time", False) and autotune_enabled() and
                launch.work >= AUTOTUNE_MIN_WORK):
            return cands[0], "heuristic"
        key = loader.tune_key(launch, dev.name, getattr(dev, "arch", 0),
                              repr(launch.extra_constexprs))
        rec = loader.load_tuned(key)
        if rec is not None:
            from .configs import Config
            return Config.from_json(rec["config"]), "tuned (cached)"
        timings = []
        for cfg in cands:
            try:
                kern = dev.prepare(self.generated, launch, cfg)
            except Exception as e:   # a config the compiler or device rejects: skip it
                timings.append((float("inf"), cfg, repr(e)))
                continue
            go = dev.launcher(kern, launch, cfg)
            ms = dev.time(lambda: go(args), AUTOTUNE_REPS)
            timings.append((ms, cfg, ""))
        best = min(timings, key=lambda t: t[0])
        if best[0] == float("inf"):
            raise RuntimeError(f"triton backend: no configuration of {launch.name} could "
                               f"be compiled: {timings[0][2]}")
        loader.store_tuned(key, {"config": best[1].to_json(),
                                 "timings_ms": [[t[0], t[1].describe()] for t in timings]})
        return best[1], f"tuned ({best[0]:.4f} ms)"

    # ------------------------------------------------------------------ running
    def __call__(self, inputs):
        dev = self.device
        with self._lock, pinned(inputs):
            dev.activate()
            bound, uploads, fresh_blocks, keep = self._bind(inputs)
            try:
                self._run_launches(bound)
                self._check_status()
                if residency_enabled():
                    results = [DeviceArray(blk, buf.shape, buf.dtype, dev)
                               for buf, blk in zip(self._fresh, fresh_blocks)]
                else:
                    results = [from_device_layout(dev.download(blk, storage_nbytes(buf)),
                                                  buf.shape, buf.dtype)
                               for buf, blk in zip(self._fresh, fresh_blocks)]
                    uploads += fresh_blocks
                fresh_blocks = []
            finally:
                for blk in uploads + fresh_blocks:
                    dev.allocator.release(blk)
            return [keep[k] if kind == "input" else results[k] for kind, k in self._outputs]

    def time_kernels(self, inputs, reps=20) -> float:
        """Milliseconds per run of the kernels alone (inputs already on the device, no
        output copies), timed by the device; the first call prepares (and tunes)."""
        self(inputs)
        dev = self.device
        with self._lock, pinned(inputs):
            dev.activate()
            bound, uploads, fresh_blocks, _ = self._bind(inputs)
            try:
                return dev.time(lambda: self._run_launches(bound), reps)
            finally:
                for blk in uploads + fresh_blocks:
                    dev.allocator.release(blk)

    def _bind(self, inputs):
        """Device blocks for every buffer: (bound, upload blocks, output blocks, inputs
        as arrays). The caller releases the upload and output blocks it does not keep."""
        if len(inputs) != len(self._inputs):
            raise ValueError(f"graphc triton executable expects {len(self._inputs)} inputs, "
                             f"got {len(inputs)}")
        dev = self.device
        alloc = dev.allocator
        if self._arena is None:
            self._setup()
        bound, uploads, fresh_blocks, keep = {}, [], [], []
        try:
            for (buf, shape), value in zip(self._inputs, inputs):
                if type(value) is DeviceArray:
                    blk = value.block_on(dev)
                    if value.shape != shape:
                        raise ValueError(f"graphc triton executable: input of shape "
                                         f"{list(value.shape)} where the graph expects "
                                         f"{list(shape)}")
                    if blk is not None and value.graph_dtype is buf.dtype:
                        keep.append(value)
                        if buf in self._used:
                            bound[buf] = (blk, 0)
                        continue
                a = value if type(value) is np.ndarray else np.asarray(value)
                if a.shape != shape:
                    raise ValueError(f"graphc triton executable: input of shape "
                                     f"{list(a.shape)} where the graph expects {list(shape)}")
                if a.dtype != buf.dtype.np:
                    a = np.asarray(a, dtype=buf.dtype.np)
                keep.append(a)
                if buf in self._used:
                    blk = upload(a, buf.dtype, dev)
                    uploads.append(blk)
                    bound[buf] = (blk, 0)
            for buf, off in self.memory.offsets.items():
                bound[buf] = (self._arena, off)
            for buf in self._fresh:
                blk = alloc.allocate(storage_nbytes(buf))
                fresh_blocks.append(blk)
                bound[buf] = (blk, 0)
        except BaseException:
            for blk in uploads + fresh_blocks:
                alloc.release(blk)
            raise
        return bound, uploads, fresh_blocks, keep

    def _check_status(self):
        if self._uses_status:
            dev = self.device
            flag = dev.download(self._status, 4).view(np.int32)[0]
            if flag:
                dev.zero(self._status, 4)
                if flag == K.STATUS_INDEX_OUT_OF_RANGE:
                    raise IndexError(index_error_message(self.plan.graph))
                raise check_failure(self.plan.graph, int(flag))

    def _prepare(self, launch, cfg, how):
        """(config, runnable, how): `cfg` prepared, or, when the compiler or the device
        rejects it (say, more shared memory than a smaller card has), the next
        candidate that works."""
        errors = []
        for c in [cfg] + [c for c in launch.configs if c != cfg]:
            try:
                return c, self.device.prepare(self.generated, launch, c), \
                    how if c == cfg else f"fallback ({errors[0]})"
            except Exception as e:   # noqa: BLE001 (try the next configuration)
                errors.append(f"{c.describe()}: {type(e).__name__}: {e}")
        raise RuntimeError(f"triton backend: no configuration of {launch.name} could be "
                           f"prepared:\n  " + "\n  ".join(errors))

    def _pointers(self, bound):
        """(kernel argument per bound buffer, the status word's argument or None)."""
        pointer = self.device.pointer
        ptr = {b: pointer(blk, off, b) for b, (blk, off) in bound.items()}
        return ptr, pointer(self._status, 0, None) if self._uses_status else None

    @staticmethod
    def _args(buffers, takes_status, ptr, status):
        args = [ptr[b] for b in buffers]
        if takes_status:
            args.append(status)
        return args

    def _run_launches(self, bound):
        prec = self._precision()
        ready = self._ready.get(prec)
        if ready is None:
            self._first_run(bound, prec)
            return
        # the replay path: every launch prepared, one pointer per buffer, one call each
        ptr, status = self._pointers(bound)
        for go, buffers, takes_status in ready:
            go(self._args(buffers, takes_status, ptr, status))

    def _first_run(self, bound, prec):
        """Run every launch, choosing (and tuning) and preparing its configuration."""
        dev = self.device
        steps = self._steps.setdefault(prec, [])
        ptr, status = self._pointers(bound)
        for j, base in enumerate(self.generated.launches):
            if base.empty():
                continue
            launch = self._launch_for(base, prec)
            args = self._args(launch.buffers, launch.status, ptr, status)
            if len(steps) <= j:
                while len(steps) < j:
                    steps.append(None)
                cfg, how = self._choose(launch, args)
                cfg, kernel, how = self._prepare(launch, cfg, how)
                steps.append(_Step(launch, cfg, kernel, dev.launcher(kernel, launch, cfg)))
                self.tuning.append((launch.name, cfg, how))
            steps[j].go(args)
        self._ready[prec] = [(st.go, tuple(st.launch.buffers), st.launch.status)
                             for st in steps if st is not None]


def _release_all(alloc, blocks):
    for b in blocks:
        alloc.release(b)
