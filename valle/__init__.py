"""VALL-E X fine-tuning toolkit."""

__version__ = "0.1.0"
