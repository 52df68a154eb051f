"""The local servers the tests and benchmarks start (a real redis-server on a free loopback port)."""
