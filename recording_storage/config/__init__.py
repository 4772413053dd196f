"""Application configuration: one typed, validated, immutable tree loaded once at start-up.

Sources, later ones winning: the model's defaults (``model.py``), ``conf/app.yaml`` (or
``--config``), then environment variables ``RECORDING_STORAGE__SECTION__KEY=value``. String values
may reference the environment as ``${NAME}`` (or ``${NAME:-default}``), which is how secrets get
in without being written into files. Every problem is reported at once with its key path, the bad
value (masked for secrets) and what is allowed (``loader.py``).
"""

from .loader import (
    DEFAULT_CONFIG_PATH,
    ENV_PREFIX,
    config_file_used,
    expand_env,
    load_config,
    load_yaml_file,
    validation_problems,
)
from .model import (
    AppConfig,
    AwsConfig,
    BucketSourceConfig,
    DracoonConfig,
    HealthConfig,
    InstancesConfig,
    LogConfig,
    QueueConfig,
    RoutingConfig,
    S3Config,
    Seconds,
    SharerConfig,
    Size,
    WorkersConfig,
    parse_duration,
    parse_size,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "AppConfig",
    "AwsConfig",
    "config_file_used",
    "BucketSourceConfig",
    "DracoonConfig",
    "HealthConfig",
    "InstancesConfig",
    "LogConfig",
    "QueueConfig",
    "RoutingConfig",
    "S3Config",
    "Seconds",
    "SharerConfig",
    "Size",
    "WorkersConfig",
    "expand_env",
    "load_config",
    "load_yaml_file",
    "parse_duration",
    "parse_size",
    "validation_problems",
]
