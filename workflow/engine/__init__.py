"""The engine: session commands, one Run owner per running session, and the pipeline it drives."""

from workflow.engine.engine import SHUTDOWN, Engine, EngineOptions

__all__ = ["SHUTDOWN", "Engine", "EngineOptions"]
