"""creamery's version, in a leaf module: anything may import it without pulling in the app."""

__version__ = "0.1.0"
