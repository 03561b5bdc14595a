"""`python -m workpools` (or `workpools-operator`): run the operator.

Serves every namespace, or those in $WORKPOOLS_NAMESPACES (comma-separated). The liveness and
readiness endpoint is http://0.0.0.0:8080/healthz (override with $WORKPOOLS_HEALTH_ENDPOINT).
"""

from __future__ import annotations

import logging
import os

import kopf

import workpools.controllers  # noqa: F401  (importing registers the handlers)
from workpools.controllers.scope import Scope


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("WORKPOOLS_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    scope = Scope.from_environment()
    kopf.run(
        standalone=True,  # one active operator; see the README on replicas and leader election
        clusterwide=scope.clusterwide,
        namespaces=scope.namespaces,
        liveness_endpoint=os.environ.get("WORKPOOLS_HEALTH_ENDPOINT", "http://0.0.0.0:8080/healthz"),
    )


if __name__ == "__main__":
    main()
