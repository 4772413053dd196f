#!/bin/sh
# Container entry point. Like the original service, configuration files may be fetched from S3
# before start: RECORDING_STORAGE_CONFIG_S3_URL=s3://bucket/prefix copies app.yaml, topics.yml
# and instances.yml (those present) from that prefix into the conf directory.
set -eu

CONF_DIR="${RECORDING_STORAGE_CONF_DIR:-/app/conf}"

# glibc keeps freed multi-MiB chunk buffers in its heap, so RSS creeps up with object size.
# Serving allocations of 1 MiB and more from mmap returns them to the OS when freed.
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-1048576}"

if [ -n "${RECORDING_STORAGE_CONFIG_S3_URL:-}" ]; then
    python -m recording_storage.fetch_config "$RECORDING_STORAGE_CONFIG_S3_URL" "$CONF_DIR"
fi

if [ "$#" -eq 0 ]; then
    set -- run
fi
exec recording-storage "$@"
