"""Benchmarks: figures printed for a person to read, never pass/fail assertions."""
