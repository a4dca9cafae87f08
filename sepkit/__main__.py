"""``python -m sepkit`` (and ``torchrun -m sepkit``) run the CLI."""

from sepkit.cli import entry

entry()
