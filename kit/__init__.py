"""Agora: a notebook-first kit for pluralistic and cross-cultural LLM alignment research."""

__version__ = "0.1.0"
