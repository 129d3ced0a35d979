"""``python -m medbench.compare``: kept as an entry point; the code lives in ``medbench.cli.compare``."""

import sys

from medbench.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
