"""``python -m medbench.suite``: kept as an entry point; the code lives in ``medbench.api.suite``."""

import sys

from medbench.api.suite import main

if __name__ == "__main__":
    sys.exit(main())
