"""``python -m devhost``."""

from devhost.cli import main

raise SystemExit(main())
