"""``python -m medbench.targets``: kept as an entry point; the code lives in ``medbench.analysis.targets``."""

import sys

from medbench.analysis.targets import main

if __name__ == "__main__":
    sys.exit(main())
