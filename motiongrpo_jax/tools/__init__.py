"""Command-line tools (dataset building, checkpoint conversion, benchmarks)."""
