"""``python -m sepkit`` (and ``torchrun -m sepkit``) run the CLI."""

import sys

from sepkit.cli import main

sys.exit(main())
