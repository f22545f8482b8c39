"""Placeholder: filled in by the architectures work."""
