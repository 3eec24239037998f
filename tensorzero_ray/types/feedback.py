"""POST /feedback (spec §1.3)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field

from tensorzero_ray.types.inference import NullMeansDefault


class FeedbackRequest(NullMeansDefault):
    metric_name: str
    value: Any
    inference_id: str | None = None
    episode_id: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    dryrun: bool = False
    internal: bool = False


class FeedbackResponse(BaseModel):
    feedback_id: uuid.UUID
