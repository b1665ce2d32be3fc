"""Builds the risk engine's Cython extensions.

The one place that sets the compiler directives for ``coyote_risk``. Switches:
``COYOTE_CYTHON_ANNOTATE=1`` writes annotated HTML beside each ``.pyx``;
``COYOTE_CYTHON_PROFILE=1`` compiles with profiling and line tracing.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

PROFILE = os.environ.get("COYOTE_CYTHON_PROFILE") == "1"

DIRECTIVES = {
    "language_level": 3,
    "embedsignature": True,
    # Checks stay on by default; they are switched off per function where a benchmark shows
    # they cost something (see bench/RESULTS.md).
    "boundscheck": True,
    "wraparound": True,
    "profile": PROFILE,
    "linetrace": PROFILE,
}

EXTENSIONS = [
    Extension("coyote_risk._throttle", ["coyote_risk/_throttle.pyx"]),
    Extension("coyote_risk._engine", ["coyote_risk/_engine.pyx"]),
]

setup(
    ext_modules=cythonize(
        EXTENSIONS,
        compiler_directives=DIRECTIVES,
        annotate=os.environ.get("COYOTE_CYTHON_ANNOTATE") == "1",
    )
)
