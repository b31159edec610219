"""The pure segmentation core. ``native.build()`` runs first: it decides whether the compiled
build of the core or its Python sources are imported (see ``segments/native.py``)."""

from microseg.segments import native as _native

_native.build()
