"""Entry point for ``python -m homepoll``."""

from homepoll.cli import main

raise SystemExit(main())
