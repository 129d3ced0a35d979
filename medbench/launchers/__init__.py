"""medbench."""
