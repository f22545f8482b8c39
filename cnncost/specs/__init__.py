"""Analytic model specs: the registry (names with wildcards and aliases, resolved to builders) and the families,
each a builder from its paper's table that registers its variants when imported."""
from cnncost.specs import alexnet, densenet, efficientnet, googlenet, resnet, vgg  # noqa: F401  (each registers)
from cnncost.specs.base import Builder, Layer, Spec
from cnncost.specs.registry import ALIASES, MODELS, ModelEntry, build, names, register, resolve

__all__ = ["Builder", "Layer", "Spec", "ModelEntry", "MODELS", "ALIASES", "register", "resolve", "names", "build"]
