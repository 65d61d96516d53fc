# creamery container image: docs/deploy.md#docker
#
#   docker build -t creamery .
#   docker run -p 8080:8080 -v creamery-packages:/data/packages creamery
#
# Runs as uid/gid 9898 (pypiserver's) and serves /data/packages on $CREAMERY_PORT (default 8080,
# or pypiserver's $PYPISERVER_PORT). Every `creamery run` flag has a CREAMERY_* variable too.
# Arguments replace the command: docker run creamery run -P /data/htpasswd -a update
FROM python:3.12-slim

ARG CREAMERY_UID=9898
ARG CREAMERY_GID=9898
# Extras to install, such as "s3" for s3:// package roots (deploy/replicas/compose.yaml).
ARG CREAMERY_EXTRAS=""

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CREAMERY_PACKAGES_DIRECTORY=/data/packages \
    CREAMERY_CACHE_DIR=/data/cache

RUN groupadd --system --gid "$CREAMERY_GID" creamery \
    && useradd --system --uid "$CREAMERY_UID" --gid creamery --home-dir /data \
        --no-create-home --shell /usr/sbin/nologin creamery \
    && mkdir -p /data/packages /data/cache \
    && chown -R creamery:creamery /data

COPY pyproject.toml README.md /tmp/creamery/
COPY src /tmp/creamery/src
RUN pip install --no-cache-dir "/tmp/creamery${CREAMERY_EXTRAS:+[$CREAMERY_EXTRAS]}" \
    && rm -rf /tmp/creamery

COPY --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY --chmod=0755 deploy/healthcheck.py /usr/local/bin/creamery-healthcheck

USER creamery
WORKDIR /data
VOLUME ["/data/packages"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["creamery-healthcheck"]

ENTRYPOINT ["docker-entrypoint.sh"]
# With the variables above and the entrypoint's port: run -p 8080 /data/packages
CMD ["run"]
