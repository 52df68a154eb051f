"""The lesson: its parts, its Markdown text, its diagrams and its safe HTML."""
