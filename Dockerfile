# recording-storage service image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RECORDING_STORAGE_CONFIG=/app/conf/app.yaml

WORKDIR /app
COPY pyproject.toml README.md ./
COPY recording_storage ./recording_storage
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
COPY conf ./conf
COPY entrypoint.sh /usr/local/bin/entrypoint.sh
RUN chown -R app /app/conf

USER 10001
EXPOSE 8094
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8094/healthcheck', timeout=4).status == 200 else 1)"
# The health port is configurable (health.port); keep it and EXPOSE/HEALTHCHECK in step.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD ["run"]
