"""The one numba decorator of the package.

``error_model="numpy"``: float division by zero gives inf/nan instead of raising. With the
default ("python") every division carries an exception path, and a callee that can raise is
an opaque call costing ~90 ns; the kernels check their inputs before the run instead.
``cache=True`` keeps compile time out of every run after the first.
"""

from __future__ import annotations

from numba import njit

JIT_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True, "_nrt": False}


def jit_nb(fn=None, **options):
    """``@jit_nb`` or ``@jit_nb(inline="always")``: njit with the package's options."""
    opts = {**JIT_OPTIONS, **options}
    if fn is None:
        return lambda f: njit(**opts)(f)
    return njit(**opts)(fn)
