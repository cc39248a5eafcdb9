"""``python -m nda.cli`` (as before the package split): the same command line as ``python -m nda``."""

from nda.cli import main

raise SystemExit(main())
