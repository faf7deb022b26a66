"""``python -m perpbt.cli ...``: the same command line as the ``perpbt`` script."""

from perpbt.cli import main

main()
