import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "data" / "examples"


@pytest.fixture
def demo_data() -> dict:
    """The demo study as plain TOML data, fresh for each test to mutate."""
    return tomllib.loads((EXAMPLES / "demo.toml").read_text())
