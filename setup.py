"""The native hot loops (issue 17): C extensions built at install when a compiler is there.

Everything else about the package is in pyproject.toml. ``optional=True``: a failed build leaves
the pure-Python loops, which vdevperf then uses and says so in one line.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            f"vdevperf.load._native_{part}",
            [f"vdevperf/load/_native_{part}.c"],
            depends=["vdevperf/load/_native.h"],
            optional=True,
            extra_compile_args=["-O2"],
        )
        for part in ("stream", "rr")
    ]
)
