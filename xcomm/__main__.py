"""`python -m xcomm ...` runs the `xcomm` command."""

import sys

from xcomm._cli import main

if __name__ == "__main__":
    sys.exit(main())
