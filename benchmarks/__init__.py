"""The `make bench` suite: benchmarks that write docs/benchmarks.md. Never collected by pytest."""
