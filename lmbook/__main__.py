"""``python -m lmbook ...``: see lmbook.cli."""
from lmbook.cli import main

raise SystemExit(main())
