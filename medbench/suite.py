"""``python -m medbench.suite``: kept as an entry point; the code lives in ``medbench.cli.suite``."""

import sys

from medbench.cli.suite import main

if __name__ == "__main__":
    sys.exit(main())
