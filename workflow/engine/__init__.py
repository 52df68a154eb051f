"""The engine: session commands, one Run owner per running session, and the pipeline it drives."""

from workflow.engine.engine import Engine
from workflow.engine.options import EngineOptions
from workflow.engine.run import SHUTDOWN, Run

__all__ = ["SHUTDOWN", "Engine", "EngineOptions", "Run"]
