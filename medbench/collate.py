"""``python -m medbench.collate``: kept as an entry point; the code lives in ``medbench.cli.collate``."""

import sys

from medbench.cli.collate import main

if __name__ == "__main__":
    sys.exit(main())
