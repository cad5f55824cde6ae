"""`python -m botcore` is the `botcore` command."""

import sys

from botcore.cli import main

sys.exit(main())
