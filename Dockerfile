# syntax=docker/dockerfile:1
#
# One image recipe for every OpenDREC service.
#
#   docker build --build-arg SERVICE=charger-gateway -t opendrec/charger-gateway .
#       installs only opendrec-charger-gateway and its dependencies from uv.lock;
#       the container runs `python -m opendrec_charger_gateway`.
#   docker build -t opendrec/all .
#       (no SERVICE) installs every workspace package; choose the service with the
#       command: `docker run opendrec/all python -m opendrec_gateway`.
#
# The same base image is used to build and to run, so the virtualenv's python
# symlink (/usr/local/bin/python3.11) is valid in the final stage.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm


# Only the pyproject.toml files of the workspace members: copying this tree into
# the build stage keeps the dependency layer cached while only sources change.
FROM ${PYTHON_IMAGE} AS manifests
WORKDIR /src
COPY libs libs
COPY services services
RUN find libs services -type f ! -name pyproject.toml -delete \
 && find libs services -type d -empty -delete


FROM ${PYTHON_IMAGE} AS build
RUN pip install --no-cache-dir --root-user-action=ignore uv==0.13.8
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
ARG SERVICE=""

# Third-party dependencies first, exactly as locked (--frozen: never re-resolve).
COPY pyproject.toml uv.lock ./
COPY --from=manifests /src ./
RUN --mount=type=cache,target=/root/.cache/uv \
    set -- --all-packages; \
    if [ -n "$SERVICE" ]; then set -- --package "opendrec-$SERVICE"; fi; \
    uv sync --frozen --no-dev --no-install-workspace "$@"

# Then the workspace packages themselves, as wheels (--no-editable), so the final
# stage needs the virtualenv only, not the source tree.
COPY libs libs
COPY services services
RUN --mount=type=cache,target=/root/.cache/uv \
    set -- --all-packages; \
    if [ -n "$SERVICE" ]; then set -- --package "opendrec-$SERVICE"; fi; \
    uv sync --frozen --no-dev --no-editable "$@"


FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric id, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 opendrec \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin opendrec
# Owned by root: the service user can run the code but not change it.
COPY --from=build /app/.venv /app/.venv
COPY deploy/healthcheck.py /app/healthcheck.py

ARG SERVICE=""
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENVIRONMENT=production \
    HTTP_HOST=0.0.0.0 \
    OPENDREC_SERVICE=${SERVICE}
WORKDIR /app
USER 10001:10001

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
    CMD ["python", "/app/healthcheck.py", "/readyz"]

# `exec` makes python PID 1 so it receives SIGTERM from `docker stop` / Kubernetes.
CMD ["/bin/sh", "-c", ": \"${OPENDREC_SERVICE:?this image was built without --build-arg SERVICE=<name>; give a command such as: python -m opendrec_gateway}\"; exec python -m \"opendrec_$(echo \"$OPENDREC_SERVICE\" | tr - _)\""]
