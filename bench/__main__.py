"""`python -m bench`: run the benchmark (`--help` lists the parts and options)."""

import sys

from bench.cli import main

sys.exit(main())
