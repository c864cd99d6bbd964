"""SaveGate benchmark harness: `python -m bench.run [--quick]` from the repository root."""
