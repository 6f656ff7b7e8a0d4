"""The toolkit version, written into every artifact (one place; base layer)."""

__version__ = "0.1.0"
