"""The building blocks of every study.toml section: strict models and safe names."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,79}")


def check_name(value: str) -> str:
    """IDs and names end up in file names and URLs: keep them to a safe alphabet."""
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} must be 1-80 letters, digits, '_', '.', '+' or '-', "
            "starting with a letter or digit"
        )
    return value


Name = Annotated[str, AfterValidator(check_name)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
