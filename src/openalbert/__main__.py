"""`python -m openalbert` (and `torchrun -m openalbert`) run the command line."""

import sys

from openalbert.cli import main

sys.exit(main())
