"""``python -m medbench.targets``: kept as an entry point; the code lives in ``medbench.cli.targets``."""

import sys

from medbench.cli.targets import main

if __name__ == "__main__":
    sys.exit(main())
