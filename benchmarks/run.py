"""Run graphc's benchmark suite from a checkout: `python benchmarks/run.py [--quick] ...`.

The suite itself lives in graphc/benchsuite (so an installed wheel has it too, as
`graphc bench` / `python -m graphc.bench`); this file only makes the checkout importable
and forwards the arguments. See benchmarks/README.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from graphc.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
