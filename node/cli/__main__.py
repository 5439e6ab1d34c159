"""``python -m node.cli``: the ``ainode`` command."""
from __future__ import annotations

from . import main

raise SystemExit(main())
