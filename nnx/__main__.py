"""``python -m nnx`` runs the ``nnx`` command."""

import sys

from nnx.cli import main

sys.exit(main())
