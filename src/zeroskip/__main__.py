"""`python -m zeroskip`: the `zeroskip` command (see zeroskip.cli)."""
import sys

from .cli import main

sys.exit(main())
