"""python -m pertcontrast: the command line."""

from pertcontrast.cli import main

main()
