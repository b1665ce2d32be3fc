"""What the API's routes share: the database, Redis, the settings, the event hub."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import redis
from sqlalchemy.engine import Engine

from coyote_control_plane.config import Settings
from coyote_reports import Reports
from coyote_sdk.config import Endpoints

if TYPE_CHECKING:
    from coyote_control_plane.events import EventHub
    from coyote_control_plane.metrics import Metrics
    from coyote_control_plane.supervisor import Supervisor


@dataclasses.dataclass
class ControlPlane:
    settings: Settings
    endpoints: Endpoints
    engine: Engine
    redis: redis.Redis
    events: EventHub
    metrics: Metrics
    reports: Reports
    supervisor: Supervisor | None = None
