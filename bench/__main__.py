"""``python -m bench``: run the benchmark and print the table."""

from __future__ import annotations

import sys

from bench.driver import main

sys.exit(main())
