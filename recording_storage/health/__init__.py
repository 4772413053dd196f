"""Health, readiness and metrics endpoints (``state.py``: what is healthy; ``server.py``: HTTP)."""

from .server import make_health_app, serve_health
from .state import (
    CORS_HEADERS,
    DEP_S3,
    DEP_SQS,
    ERROR_DRACOON,
    ERROR_S3,
    ERROR_WORKERS,
    HealthState,
    HealthVerdict,
    ProbeFn,
    ProbeResult,
    describe_error,
    dracoon_dependency,
)

__all__ = [
    "CORS_HEADERS",
    "DEP_S3",
    "DEP_SQS",
    "ERROR_DRACOON",
    "ERROR_S3",
    "ERROR_WORKERS",
    "HealthState",
    "HealthVerdict",
    "ProbeFn",
    "ProbeResult",
    "describe_error",
    "dracoon_dependency",
    "make_health_app",
    "serve_health",
]
