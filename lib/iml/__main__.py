"""`python -m iml ...` is the `iml` command (iml.cli)."""
import sys

from iml.cli import main

sys.exit(main())
