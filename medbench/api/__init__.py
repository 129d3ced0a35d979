"""medbench.api: the Python API (medbench.api.benchmarks) and the built-in suites (medbench.api.suite)."""
