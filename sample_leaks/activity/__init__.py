"""activity -- per-user activity feeds (the spread leak).

``activity.feed.history`` maps each user id to the list of that user's
events. Nothing trims the lists: every event ever recorded stays, spread over
one list per user, so no single list grows much.
"""

from . import feed

__all__ = ["feed"]
