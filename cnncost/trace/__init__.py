"""Counting real PyTorch models: our meta-device tracer (counter), model loading (models), other tools (adapters).

Submodules import torch; this package itself does not.
"""
