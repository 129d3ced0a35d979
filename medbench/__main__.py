"""``python -m medbench``."""

from medbench.cli.app import main

if __name__ == "__main__":  # a spawned child re-imports this module as __mp_main__: do not run again
    main()
