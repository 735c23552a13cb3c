"""``python -m fruits_tools ...``: see :mod:`fruits_tools.cli`."""

from fruits_tools.cli import main

raise SystemExit(main())
