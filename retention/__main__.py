"""``python -m retention``: the command line, for a Python whose scripts are not on PATH."""

from __future__ import annotations

from retention.cli import main

if __name__ == "__main__":
    main()
