"""``python -m activemil.cli``."""

from activemil.cli.app import main

main()
