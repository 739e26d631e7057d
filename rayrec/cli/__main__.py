"""``python -m rayrec.cli``: what a Ray job runs (``rayrec submit``)."""

import sys

from rayrec.cli import main

sys.exit(main())
