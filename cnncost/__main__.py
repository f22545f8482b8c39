"""`python -m cnncost` runs the CLI."""
from cnncost.cli import main

main()
