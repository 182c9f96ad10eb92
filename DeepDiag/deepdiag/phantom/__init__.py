"""Synthetic chest CTs with exact ground truth (``deepdiag phantom``); see ``phantom.md``."""

from .case import PhantomCase, generate_case
from .config import PhantomConfig
from .writer import write_case

__all__ = ["PhantomCase", "PhantomConfig", "generate_case", "write_case"]
