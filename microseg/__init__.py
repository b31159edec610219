"""microseg: real-time behavioral-DNA micro-segmentation.

The distribution maps the repository's top-level folders into one namespace:
``schemas/`` -> ``microseg.schemas``, ``segments/`` -> ``microseg.segments``,
``engine/`` -> ``microseg.engine``, ``rules/`` -> ``microseg.rules``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
