"""Where recordings go in DRACOON: target selection, path templates and rules, file names, notes.

Split in three: ``resolve`` (message vs. instance targets, expirations), ``naming`` (file names,
notes, source marker) and ``job`` (``TransferJob``, what the pipeline asks of a job), all built
on ``recording_storage.node_names`` (DRACOON node-name rules, path normalisation, templates),
which lives outside this package so that ``instances`` (which ``resolve`` needs) can check path
templates without importing targets. Everything public, node-name rules included, is
re-exported here.
"""

from __future__ import annotations

from ..node_names import (
    MAX_DEPTH,
    MAX_NAME_LENGTH,
    TEMPLATE_VARIABLES,
    check_path_template,
    expand_path_template,
    name_length,
    node_name_key,
    sanitize_node_name,
    truncate_name,
    validate_node_name,
)
from .job import MessageJob, TransferJob
from .naming import (
    DEFAULT_EXTENSION,
    MAX_NOTES_LENGTH,
    earlier_file_names_for,
    extension_for,
    file_name_for,
    notes_with_sha256,
    parse_content_sha256,
    parse_source_marker,
    source_marker,
    upload_notes,
)
from .resolve import (
    ExpirationPassed,
    InvalidTargetConfig,
    NoTargets,
    ResolvedTarget,
    merge_same_rooms,
    resolve_targets,
    template_variables,
)

__all__ = [
    "DEFAULT_EXTENSION",
    "MAX_DEPTH",
    "MAX_NAME_LENGTH",
    "MAX_NOTES_LENGTH",
    "TEMPLATE_VARIABLES",
    "ExpirationPassed",
    "InvalidTargetConfig",
    "MessageJob",
    "NoTargets",
    "ResolvedTarget",
    "TransferJob",
    "check_path_template",
    "earlier_file_names_for",
    "expand_path_template",
    "extension_for",
    "file_name_for",
    "merge_same_rooms",
    "name_length",
    "node_name_key",
    "notes_with_sha256",
    "parse_content_sha256",
    "parse_source_marker",
    "resolve_targets",
    "sanitize_node_name",
    "source_marker",
    "template_variables",
    "truncate_name",
    "upload_notes",
    "validate_node_name",
]
