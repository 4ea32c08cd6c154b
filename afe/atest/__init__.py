"""A Python 3 ``atest``: the Autotest command-line client of the AFE JSON-RPC interface.

A pure HTTP client (urllib and json only): it imports neither Django nor the
project's models, so it runs from any Python 3 with no dependencies.
"""
from .main import main

__all__ = ["main"]
