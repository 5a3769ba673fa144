"""Turning object code into the exported shared library with the system C compiler.

* Weights: concatenated into one blob (each at a 64-byte aligned offset, C order,
  storage dtype) and embedded in the library's read-only data by a two-line assembly
  file (`.incbin`), assembled by `cc`. This costs nothing per megabyte (no giant LLVM
  constant to print and parse), the blob is mapped read-only and shared between
  processes, and the code (which bakes in the weights' shapes and offsets) can never be
  paired with the wrong weight file.
* BLAS (only when the graph has a matmul): the library links numpy's bundled OpenBLAS
  by path, so the dynamic linker records the OpenBLAS soname as DT_NEEDED and every
  cblas call resolves at link time (`-Wl,--no-undefined`). Where it is found at run time:
    - "bundle" (default): the OpenBLAS file and the libraries it needs from numpy.libs
      (libgfortran, libquadmath) are copied next to the library, which gets
      RUNPATH=$ORIGIN: the output folder is self-contained and relocatable;
    - "numpy": RUNPATH is the absolute numpy.libs folder of this Python environment:
      nothing copied (~28 MB less), but the library only runs where that folder exists.
* libm and libc resolve as for any C library (`-lm`).

ELF/Linux only (`.incbin` section syntax, $ORIGIN, DT_NEEDED).
"""
from __future__ import annotations

import os
import shlex
import shutil
import struct
import subprocess

from .signature import ExportError

WEIGHT_ALIGN = 64
BLAS_MODES = ("bundle", "numpy")


def compiler() -> list:
    """The C compiler driver command: $CC if set, else `cc`; ExportError if missing."""
    cmd = shlex.split(os.environ.get("CC") or "cc")
    if not cmd or shutil.which(cmd[0]) is None:
        raise ExportError(f"no C compiler: {cmd[0] if cmd else '$CC'!r} is not on PATH; "
                          "graphc export links the library with the system C compiler "
                          "(install cc, or set CC)")
    return cmd


def weight_layout(weights: dict):
    """({key: byte offset}, total bytes) of the blob holding `weights` in order."""
    offsets, end = {}, 0
    for key, array in weights.items():
        start = (end + WEIGHT_ALIGN - 1) // WEIGHT_ALIGN * WEIGHT_ALIGN
        offsets[key] = start
        end = start + array.nbytes
    return offsets, end


def write_weight_blob(path, weights: dict, offsets: dict):
    with open(path, "wb") as f:
        for key, array in weights.items():
            f.write(b"\0" * (offsets[key] - f.tell()))
            f.write(array.tobytes(order="C"))


def weights_assembly(symbol: str, blob_path: str) -> str:
    quoted = blob_path.replace("\\", "\\\\").replace('"', '\\"')
    return (f'\t.section .rodata.{symbol},"a",@progbits\n'
            f"\t.balign {WEIGHT_ALIGN}\n"
            f"\t.globl {symbol}\n\t.hidden {symbol}\n"
            f"\t.type {symbol},@object\n"
            f"{symbol}:\n"
            f'\t.incbin "{quoted}"\n'
            f"\t.size {symbol}, .-{symbol}\n"
            # no executable stack (the linker warns about objects without this note)
            '\t.section .note.GNU-stack,"",@progbits\n')


def run_compiler(args, what):
    cmd = compiler() + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ExportError(f"{what} failed ({' '.join(cmd[:1])} exit {proc.returncode}): "
                          f"{detail[-1] if detail else 'no message'}")


# ----------------------------------------------------------------------------- BLAS

def elf_needed(path) -> list:
    """DT_NEEDED entries of a shared object: the libraries it loads."""
    return _elf_dynamic_strings(path)[0]


def elf_soname(path) -> str | None:
    """DT_SONAME of a shared object: the name others record in their DT_NEEDED."""
    return _elf_dynamic_strings(path)[1]


def _elf_dynamic_strings(path):
    """([DT_NEEDED], DT_SONAME or None) of a little-endian ELF64 shared object."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ExportError(f"{path} is not a little-endian 64-bit ELF shared object")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic = [], None
    for k in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + k * phentsize)
        if p_type == 1:        # PT_LOAD: maps file offsets to addresses
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:      # PT_DYNAMIC
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return [], None
    needed, soname, strtab = [], None, None
    for off in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, val = struct.unpack_from("<qQ", data, off)
        if tag == 0:           # DT_NULL ends the table
            break
        if tag == 1:           # DT_NEEDED: an offset into the string table
            needed.append(val)
        elif tag == 14:        # DT_SONAME: likewise
            soname = val
        elif tag == 5:         # DT_STRTAB: the string table's address
            strtab = val
    base = next((off + strtab - vaddr for vaddr, off, size in loads
                 if strtab is not None and vaddr <= strtab < vaddr + size), None)
    if base is None:
        return [], None

    def string(k):
        return data[base + k:data.index(b"\0", base + k)].decode()
    return [string(k) for k in needed], (string(soname) if soname is not None else None)


def bundle_blas(library: str, out_dir: str) -> list:
    """Copy `library` and the libraries it needs from its own folder (recursively) into
    `out_dir`; returns the file names copied."""
    folder = os.path.dirname(library)
    # the top library is copied under its soname: the name the loader will look for
    first = elf_soname(library) or os.path.basename(library)
    todo, done = [(library, first)], []
    while todo:
        source, name = todo.pop()
        if name in done:
            continue
        done.append(name)
        shutil.copy2(source, os.path.join(out_dir, name))
        todo.extend((os.path.join(folder, n), n) for n in elf_needed(source)
                    if os.path.isfile(os.path.join(folder, n)))
    return done


def link_shared(out_path, objects, soname, blas_library=None, runpath=None):
    args = ["-shared", "-o", out_path, *objects]
    if blas_library:
        args.append(blas_library)
    args += ["-lm", f"-Wl,-soname,{soname}", "-Wl,--no-undefined", "-Wl,-z,noexecstack",
             "-Wl,--enable-new-dtags"]
    if runpath:
        args.append(f"-Wl,-rpath,{runpath}")
    run_compiler(args, "linking the library")
