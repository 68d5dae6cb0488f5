# syntax=docker/dockerfile:1
# tickvault's image: wheels built from the locked dependency set (requirements/lock.txt) in a
# build stage; a slim runtime with only the installed package, run as an unprivileged user.
#   docker build -t tickvault .
#   docker run --rm -e TICKVAULT_POSTGRES__DSN=postgresql://... tickvault          # the daemon
#   docker run --rm tickvault migrate | check | query ... | demo                   # any command

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements/ requirements/
COPY pyproject.toml README.md ./
COPY daemon/ daemon/
# PIP_CONSTRAINT (not -c) also pins the isolated environment that builds tickvault itself
RUN PIP_CONSTRAINT=/src/requirements/lock.txt pip wheel --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="tickvault" \
      org.opencontainers.image.description="Storage daemon for trading systems: Kafka or Redis Streams into PostgreSQL/TimescaleDB" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 tickvault \
    && useradd --system --uid 10001 --gid tickvault --home-dir /var/lib/tickvault --create-home \
        --shell /usr/sbin/nologin tickvault
# the wheels are mounted, not copied: they take no room in the image
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels /wheels/tickvault-*.whl
WORKDIR /var/lib/tickvault
USER 10001:10001
# /metrics, /healthz, /readyz (metrics.port)
EXPOSE 9108
# exit 0 when PostgreSQL is migrated and the source answers: one attempt each, no retries
# (cli.CONNECT_RETRIES_BY_COMMAND), within the connect timeouts
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 CMD ["tickvault", "check"]
ENTRYPOINT ["tickvault"]
CMD ["run"]
