"""The base of every configuration model (common.config, common.events_config): an unknown field is an
error, so a misspelt key fails at start-up instead of being ignored, and defaults are validated too."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)
