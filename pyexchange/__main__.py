"""``python -m pyexchange`` is the ``pyexchange`` command."""

import sys

from .app.cli import main

sys.exit(main())
