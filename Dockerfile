# syntax=docker/dockerfile:1
# The operator image (also carries the CLI and the reference worker).
#   docker build -t workpool-operator:0.1.0 .
# Where no registry is reachable (this project's machines): tools/image/build.sh, as root, makes the
# base with debootstrap and builds this file with buildah; tools/image/podman.sh runs the result.
# BASE lets air-gapped builds pass a locally produced Python base image.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# Dependencies first, from pyproject.toml alone (a stub package stands in for the code), so that a
# code change rebuilds only the project's own wheel and reuses this layer.
RUN mkdir -p operator/workpools && touch operator/workpools/__init__.py \
    && python -m pip wheel --no-cache-dir --wheel-dir /wheels . \
    && rm -rf /wheels/workpool_operator-*.whl operator build
COPY operator ./operator
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${BASE}
RUN groupadd --gid 10001 workpools && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin workpools
# --no-index: the runtime stage needs no network (every dependency was built into /wheels above).
# (COPY rather than RUN --mount=from=build: buildah 1.28 reuses a cached RUN step even when the
# mounted wheels changed, which would ship a stale operator.)
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
USER 10001:10001
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080 9090
ENTRYPOINT ["workpools-operator"]
