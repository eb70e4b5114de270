"""``python -m llmreplay``: the same as the ``llmreplay`` command."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
