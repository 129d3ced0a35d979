"""``python -m medbench.compare``: kept as an entry point; the code lives in ``medbench.analysis.compare``."""

import sys

from medbench.analysis.compare import main

if __name__ == "__main__":
    sys.exit(main())
