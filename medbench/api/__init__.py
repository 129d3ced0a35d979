"""medbench.api: the Python API (medbench.api.benchmarks) and the built-in suites (medbench.api.suite)."""

# The public classes of medbench.api.benchmarks (re-exported lazily by ``medbench``; importing this list needs no torch).
API_NAMES = ("BenchmarkResult", "BenchmarkSuite", "DataLoaderBenchmark", "ModelBenchmark", "PerformanceBenchmark")
