"""Semantic question answering over policy documents, with cited passages."""

__version__ = "0.1.0"
