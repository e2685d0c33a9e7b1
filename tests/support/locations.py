"""Where things are, for the tests: the repository, the shared data beside it, the helpers."""

from pathlib import Path

SUPPORT = Path(__file__).resolve().parent
FIXTURES = SUPPORT / "fixtures"
ROOT = SUPPORT.parents[1]
SHARED = ROOT.parent / "shared"
