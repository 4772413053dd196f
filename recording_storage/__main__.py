"""``python -m recording_storage`` is the console script."""

from .cli import main

raise SystemExit(main())
