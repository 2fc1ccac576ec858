"""The distribution's version, single-sourced for setuptools and ``__version__``."""

VERSION = "0.1.0"
