import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from survey_helpers import make_study  # noqa: E402


@pytest.fixture
def study(tmp_path):
    """A small 2AFC study: 4 models × 2 losses × 6 targets, no design yet."""
    return make_study(tmp_path / "study")
