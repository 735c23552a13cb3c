"""``python -m helpers ...``: see :mod:`helpers.faces.cli`."""

from helpers.faces.cli import main

raise SystemExit(main())
