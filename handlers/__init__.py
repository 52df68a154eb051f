"""The HTTP layer: turns requests into calls on the workflow engine, and its answers into JSON or SSE."""
