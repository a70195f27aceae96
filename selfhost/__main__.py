"""`python -m selfhost` is the `selfhost` command."""

from selfhost.cli import main

main()
