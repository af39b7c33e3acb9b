"""`python -m erpack` is the `erpack` command."""

import sys

from erpack.cli import main

sys.exit(main())
