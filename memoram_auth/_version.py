from __future__ import annotations

__all__ = ["__version__"]

# The one place the version is set: pyproject.toml reads it from here at build time. Read from
# here rather than from importlib.metadata at run time because metadata lookups cost
# milliseconds at start-up and the CLI must start fast.
__version__ = "0.1.0"
