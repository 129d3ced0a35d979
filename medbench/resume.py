"""``python -m medbench.resume``: kept as an entry point; the code lives in ``medbench.cli.resume``."""

import sys

from medbench.cli.resume import main

if __name__ == "__main__":
    sys.exit(main())
