"""``python -m pyexchange`` is the ``pyexchange`` command."""

import sys

from .cli import main

sys.exit(main())
