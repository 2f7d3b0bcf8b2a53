"""Benchmarks that print their figures (``make bench`` / ``python -m bench [module...]``)."""
