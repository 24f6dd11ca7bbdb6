"""`python -m mflow`."""

from mflow.cli import main

main()
