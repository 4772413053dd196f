# recording-storage service image. docs/operations.md, "Container image", has the build command.
# A full version tag, not a moving one like 3.11-slim: a rebuild of the same commit gets the same
# interpreter. Pin the digest as well (@sha256:...) where byte-identical bases matter.
FROM python:3.11.13-slim-bookworm

# OCI labels; the build passes VERSION (= recording_storage.__version__) and REVISION (git).
ARG VERSION=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="recording-storage" \
      org.opencontainers.image.description="Moves call and meeting recordings from S3 into DRACOON, encrypted client-side." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.13-slim-bookworm"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RECORDING_STORAGE_CONFIG=/app/conf/app.yaml

WORKDIR /app
# Dependencies first, so this layer survives code changes. Every package, including the build
# requirements, is pinned in requirements.lock (`make lock`) and checked against its sha256;
# an unpinned or tampered download fails the build.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
# The service only: the DRACOON emulator (dracoon_emulator/) is a test double and stays out.
COPY recording_storage ./recording_storage
# --no-deps/--no-build-isolation: nothing is fetched here that the lock did not already check.
RUN pip install --no-deps --no-build-isolation . \
 && pip check \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
COPY conf ./conf
COPY entrypoint.sh /usr/local/bin/entrypoint.sh
RUN chown -R app /app/conf

USER 10001
EXPOSE 8094
# /livez, not /healthcheck: the deep check fails during every DRACOON outage, and an unhealthy
# container that gets restarted cannot fix DRACOON. Exec form: no shell needed. The port follows
# RECORDING_STORAGE__HEALTH__PORT when set (health.port in app.yaml: keep EXPOSE in step).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request; port=os.environ.get('RECORDING_STORAGE__HEALTH__PORT','8094'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/livez', timeout=4).status == 200 else 1)"]
# `docker stop` sends this, then SIGKILL after 10 s unless given -t/--time (or compose's
# stop_grace_period): allow queue.wait_seconds + workers.shutdown_grace + margin (60 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD ["run"]
