"""The offline "builtin" lesson provider, composing lessons from the checked text files under text/."""

from workflow.providers.builtin.provider import CHUNK_CHARS, BuiltinProvider, chunk_text

__all__ = ["CHUNK_CHARS", "BuiltinProvider", "chunk_text"]
