"""`graphc bench`: run the benchmark suite and print graphc beside its peers.

The CLI registers it as a subcommand through `add_arguments(parser)` and `run(args)`;
`python -m graphc.bench` and benchmarks/run.py call `main()`. Exit status: 0 when the
suite ran (targets missed or not), 1 with --fail-on-miss and a missed target, 2 on a
usage error (unknown workload, unavailable backend named explicitly).
"""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .benchsuite.suite import ALL_PEERS
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repetitions (about a minute); for smoke "
                             "tests, not for numbers")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this workload (repeatable, or comma-separated); "
                             "see --list")
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument("--backend", default="auto",
                        help="graphc backend(s): auto (every backend that imports; the "
                             "default), or a comma list such as interp,llvm")
    parser.add_argument("--peers", default=None,
                        help=f"comma list from {','.join(ALL_PEERS)} (default: all that are "
                             f"installed; --quick leaves out torch.compile)")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed rounds per workload (default: as many as fit the budget)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="timing budget per workload (default 12, --quick 0.3)")
    parser.add_argument("--alt-settings", dest="alt_settings", action="store_true",
                        default=None,
                        help="also time peers at their other setting in subprocesses "
                             "(numpy without OPENBLAS_CORETYPE, torch with the other "
                             "THP_MEM_ALLOC_ENABLE); default on, off with --quick")
    parser.add_argument("--no-alt-settings", dest="alt_settings", action="store_false")
    parser.add_argument("--torch-compile-timeout", type=float, default=240.0,
                        metavar="SECONDS", help="time box for torch.compile's warm-up")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="cap numpy's BLAS (threadpoolctl) and torch at N threads; "
                             "default: each library's own choice. On a loaded machine N=1 "
                             "gives steadier numbers")
    parser.add_argument("--output", default=None, metavar="PATH",
                        help="JSON file to write (default benchmarks/results/"
                             "<host>-<date>.json)")
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON file")
    parser.add_argument("--fail-on-miss", action="store_true",
                        help="exit 1 if a target is missed")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _split(values):
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def run(args) -> int:
    from .benchsuite import report
    from .benchsuite.suite import ALL_PEERS, Options, run_suite
    from .benchsuite.workloads import all_workloads
    if args.list:
        for w in all_workloads():
            print(f"{w.name:20s} {w.describe(w.params(False))}")
        return 0
    peers = None
    if args.peers is not None:
        peers = set(_split([args.peers]))
        unknown = peers - set(ALL_PEERS)
        if unknown:
            print(f"graphc bench: unknown peer(s) {', '.join(sorted(unknown))}; choose from "
                  f"{', '.join(ALL_PEERS)}", file=sys.stderr)
            return 2
    opts = Options(quick=args.quick, only=_split(args.only), backend=args.backend,
                   peers=peers, reps=args.reps, budget_s=args.budget,
                   alt_settings=args.alt_settings,
                   torch_compile_timeout_s=args.torch_compile_timeout, threads=args.threads,
                   progress=not args.quiet)
    result, err = run_suite(opts)
    if err:
        print(f"graphc bench: {err}", file=sys.stderr)
        return 2
    result["command"] = " ".join(sys.argv)
    print(report.render(result))
    if not args.no_json:
        path = args.output or os.path.join(report.default_results_dir(),
                                           report.results_filename(result))
        report.write_json(result, path)
        print(f"\nresults written to {path}")
    missed = any(t["status"] == "MISS" for w in result["workloads"] for t in w["targets"])
    return 1 if args.fail_on_miss and missed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="graphc bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
