"""medbench's Hydra launcher plugins (Hydra only loads launcher classes from the ``hydra_plugins`` package)."""
