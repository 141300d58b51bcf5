"""``python -m loopworks.cli``."""

from loopworks.cli import main

main()
