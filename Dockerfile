# syntax=docker/dockerfile:1
# The image the CronJob in deploy/ runs (docs/deploy.md). Build from the repository root:
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t acr-retention:0.1.0 .
#
# Both stages name the same base literally: the virtualenv made in the first stage points at that
# image's interpreter, and checkov cannot see through an ARG in FROM (it then reports CKV_DOCKER_7).

FROM python:3.12-slim-trixie AS build

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY retention ./retention

# The wheel is built from these sources; its dependencies are the exact versions in constraints.txt,
# the ones CI tested. The virtualenv gets no pip of its own: the base image's pip installs into it
# (`--python`), so nothing that can install packages is copied into the final stage.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/acr-retention \
 && pip --python /opt/acr-retention/bin/python install --no-cache-dir --constraint constraints.txt /wheels/*.whl


FROM python:3.12-slim-trixie

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="acr-retention" \
      org.opencontainers.image.description="Retention and cleanup policies for Azure Container Registry: plan (dry run) and apply" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12-slim-trixie"

# No .pyc writes (the root filesystem is read-only in the CronJob; the wheel's modules were compiled at
# install time) and unbuffered output, so `kubectl logs` shows each report line as it is written.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/acr-retention/bin:$PATH

COPY --from=build /opt/acr-retention /opt/acr-retention

# A numeric user and group, so Kubernetes can check runAsNonRoot without an /etc/passwd entry; the
# CronJob's securityContext names the same IDs.
USER 10001:10001
WORKDIR /tmp

ENTRYPOINT ["acr-retention"]
CMD ["--help"]
