"""Async client for the DRACOON API subset the service needs (see docs/architecture.md)."""

from __future__ import annotations

from .auth import DracoonMetrics
from .client import DracoonClient
from .errors import (
    AuthenticationFailed,
    DracoonError,
    DracoonPermanentError,
    DracoonTransientError,
    NameConflict,
    NotFound,
    QuotaExceeded,
)
from .models import (
    FileKeyContainer,
    FileKeyItem,
    MissingKeyItem,
    MissingKeys,
    Node,
    SystemInfo,
    UserAccount,
    UserPublicKey,
)
from .s3upload import S3DirectUpload
from .upload import ProxyUpload, Resolution, Upload

__all__ = [
    "AuthenticationFailed",
    "DracoonClient",
    "DracoonMetrics",
    "DracoonError",
    "DracoonPermanentError",
    "DracoonTransientError",
    "FileKeyContainer",
    "FileKeyItem",
    "MissingKeyItem",
    "MissingKeys",
    "NameConflict",
    "Node",
    "NotFound",
    "ProxyUpload",
    "QuotaExceeded",
    "Resolution",
    "S3DirectUpload",
    "SystemInfo",
    "Upload",
    "UserAccount",
    "UserPublicKey",
]
