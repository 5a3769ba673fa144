"""A process that turns LLVM IR text into object code for its parent (parallel.py).

    python -m graphc.backends.llvm.compile_worker

Protocol on stdin/stdout, in a loop until stdin closes: the parent writes an 8-byte
little-endian length and that many bytes of IR text; the worker answers one status
byte (0: object code follows, 1: an error message follows), an 8-byte length and the
bytes. The worker optimises and emits exactly as the parent would (jit.optimize,
jit.emit_object on the same host CPU), so its object code is the parent's.
"""
from __future__ import annotations

import sys


def serve(stdin, stdout) -> None:
    from . import jit
    while True:
        header = stdin.read(8)
        if len(header) < 8:
            return
        text = stdin.read(int.from_bytes(header, "little")).decode()
        try:
            status, payload = b"\0", jit.emit_object(jit.optimize(text))
        except Exception as e:   # noqa: BLE001 (reported to the parent, which recompiles)
            status, payload = b"\1", f"{type(e).__name__}: {e}".encode()
        stdout.write(status + len(payload).to_bytes(8, "little") + payload)
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
