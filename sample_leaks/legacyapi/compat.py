"""The old entry point. Its warnings land in this module's __warningregistry__."""


import warnings


class LegacyWarning(UserWarning):
    """fetch() is the old API."""


MAX_WARNINGS = 1_000_000    # safety cap (about 200 MiB of registry): then no more
_warned = 0


def fetch(item_id):
    global _warned
    if _warned >= MAX_WARNINGS:
        return {"id": item_id}
    _warned += 1
    # The message names the item: a new registry entry for every new id.
    warnings.warn(f"fetch({item_id}) is deprecated, use get_item()", LegacyWarning,
                  stacklevel=1)
    return {"id": item_id}


def registry_size():
    return len(globals().get("__warningregistry__", {}))
