"""The aten-op registry (``registry``) and its op families, one module each, which do not import each other:
``layers`` (conv, norm, pool, resample), ``arith`` (matrix products, attention, activations, elementwise ops,
reductions), ``movement`` (data movement and views) and ``backward`` (a training step's backward ops).
Shared argument readers are in ``common``. Importing this package registers every family."""
from cnncost.trace.ops import arith, backward, layers, movement  # noqa: F401  (each registers its ops)
from cnncost.trace.ops.registry import (FREE, FUNCTIONS, OPS, VIEWS, Layer, bound_args, layer_of,  # noqa: F401
                                        op_name)
