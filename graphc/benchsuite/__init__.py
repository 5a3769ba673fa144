"""graphc's benchmark suite (`graphc bench`, `python -m graphc.bench`).

Lives inside the package so an installed wheel can run it. Layout:
  timing.py       warm-up, then rotating round-robin timing of all contenders
  peers.py        which peers (numpy, PyTorch eager, torch.compile, jax.jit) can run, and
                  their settings (THP_MEM_ALLOC_ENABLE for torch); graphc backends
  machine.py      host, CPU, BLAS libraries and kernels (threadpoolctl), settings
  altenv.py       peers at their other setting, in a subprocess with a changed env
  compile_probe.py  MLP step compile time in a fresh process
  workloads/      one module per workload kind
  suite.py        runs workloads, cross-checks outputs, computes ratios and targets
  report.py       terminal table and JSON file

Invariants: the timed region of graphc includes realizing the result and excludes the
first compile; inputs are created once and reused; every peer is compared at its best
measured setting and the setting is reported; nothing changes OPENBLAS_* in the bench
process; graphc itself never imports torch or jax: only this suite does, when run.
benchmarks/README.md explains the methodology.
"""
