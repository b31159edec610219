"""``python -m microseg``: the same command line as the ``microseg`` script."""

from microseg.engine.tools.cli import main

main()
