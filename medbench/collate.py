"""``python -m medbench.collate``: kept as an entry point; the code lives in ``medbench.analysis.collate``."""

import sys

from medbench.analysis.collate import main

if __name__ == "__main__":
    sys.exit(main())
