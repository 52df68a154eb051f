"""The five steps of the pipeline and the sink through which a step streams its text."""
