"""JSON merge patches (RFC 7386) computed from two versions of a document."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def merge_patch(old: Json, new: Json) -> Json:
    """The smallest merge patch that turns `old` into `new` ({} when they are equal).

    Lists are replaced whole, as merge patches do; a key missing from `new` becomes null (removed).
    """
    patch: Json = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif key not in old or before != value:
            patch[key] = value
    return patch


def apply_merge_patch(doc: Json, patch: Json) -> Json:
    """`doc` with the merge patch applied (RFC 7386): what the API server makes of it."""
    result = dict(doc)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            before = result.get(key)
            result[key] = apply_merge_patch(before if isinstance(before, dict) else {}, value)
        else:
            result[key] = value
    return result
