# syntax=docker/dockerfile:1
# The operator image (also carries the CLI and the reference worker).
#   docker build -t workpool-operator:0.1.0 .
# Where no registry is reachable (this project's machines): tools/image/build.sh, as root, makes the
# base with debootstrap and builds this file with buildah; tools/image/podman.sh runs the result.
# BASE lets air-gapped builds pass a locally produced Python base image.
#
# The image is built FROM scratch: the interpreter, the part of the standard library a server uses,
# the shared libraries they load and the installed packages, assembled by tools/image/rootfs.py in
# the `runtime` stage. No shell, package manager or pip at run time (README, "The image").
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml ./
# Dependencies first, from pyproject.toml alone (a stub package and README stand in for the code and
# the docs), so that a code or README change rebuilds only the project's own wheel and reuses this layer.
RUN mkdir -p operator/workpools && touch operator/workpools/__init__.py README.md \
    && python -m pip wheel --no-cache-dir --wheel-dir /wheels/deps . \
    && rm -rf /wheels/deps/workpool_operator-*.whl operator build README.md
COPY README.md ./
COPY operator ./operator
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels/app .

# The dependencies and everything they need to run, as a root filesystem in /rootfs. --no-index: no
# network (every dependency was built into /wheels above). (COPY rather than RUN --mount=from=build:
# buildah 1.28 reuses a cached RUN step even when the mounted wheels changed.)
FROM ${BASE} AS runtime
COPY tools/image/rootfs.py /rootfs.py
COPY --from=build /wheels/deps /wheels/deps
RUN python -m pip install --no-cache-dir --no-index --no-compile --no-warn-script-location --root /rootfs /wheels/deps/*.whl \
    && python /rootfs.py /rootfs

# The operator's own package and scripts, apart: a code change rebuilds only this small layer.
FROM ${BASE} AS app
COPY --from=build /wheels/app /wheels/app
RUN python -m pip install --no-cache-dir --no-index --no-deps --no-compile --no-warn-script-location --root /app /wheels/app/*.whl \
    && python -m compileall -q -j0 --invalidation-mode unchecked-hash -s /app -p / /app

FROM scratch
COPY --from=runtime /rootfs /
# From the base's layer, never from a RUN step: build.sh may bind-mount a proxy's CA bundle there.
COPY --from=runtime /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=app /app /
USER 10001:10001
ENV PATH=/usr/local/bin:/usr/bin LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080 9090
ENTRYPOINT ["workpools-operator"]
