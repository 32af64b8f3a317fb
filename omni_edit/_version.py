"""The package's version, in one place: ``omni_edit.__version__``, the User-Agent and the
distribution's metadata (``pyproject.toml`` reads it at build time) all come from here."""

__version__ = "0.1.0.dev0"
