from __future__ import annotations

__all__ = ["__version__"]

# Kept in step with pyproject.toml by a test; read from here rather than from importlib.metadata
# because metadata lookups cost milliseconds at start-up and the CLI must start fast.
__version__ = "0.1.0"
