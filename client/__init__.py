"""A command-line client for the Orchestrator service: run a topic, watch its steps, save the lesson."""
