"""Serverless multimodal image search: runtime package (Lambda handlers and domain logic)."""

__version__ = "0.1.0"
