"""The base package: models, events, errors, the store interface and logging context.

It imports nothing of ours, so every other package can import it without a cycle.
"""
