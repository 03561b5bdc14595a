"""The kopf edge: the only package that imports kopf. Handlers translate, they never decide.

Watch handlers (`feeders`) keep the cache current and wake the affected pool; the per-pool
reconciler (`pools`) asks `core/` what every status should be and writes only differences.
Importing this package registers every handler (`kopf run -m workpools.controllers`).
"""

from workpools.controllers import feeders, startup

__all__ = ["feeders", "startup"]
