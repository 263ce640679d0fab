"""iml: the library behind the implicit meta-learning companion book."""
__version__ = "0.1.0"
