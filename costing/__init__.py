"""selfhost costing engine: catalog, fit check, vLLM settings, projection, spend and break-even."""

__version__ = "0.1.0"
