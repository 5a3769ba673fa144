"""`python -m graphc ...` runs the `graphc` command line (graphc/cli.py)."""
from .cli import main

raise SystemExit(main())
