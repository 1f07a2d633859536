"""Text that goes into an HTML page: every name from a snapshot passes
through `esc` (element text and attribute values) or `json_island` (a JSON
data block). Snapshots hold names a program chose (type names, dict keys,
module names, argv), so any of them may hold markup or script.

    >>> esc("<script>alert('x')</script>")
    '&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;'
    >>> esc("evil\\u202ename")           # bidi override: shown, not obeyed
    'evil\\\\u202ename'
    >>> json_island({"k": "</script><b>\\u2028"})
    '{"k":"\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e\\\\u2028"}'
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re

# Characters shown as \\uXXXX instead of being written: controls, the bidi
# overrides and isolates (text that reads differently from what it is),
# line and paragraph separators, lone surrogates (not encodable as UTF-8),
# and the byte-order mark.
_SHOWN_ESCAPED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f"
                            "\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff\ud800-\udfff]")


def _visible(m):
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def esc(value):
    """Any value as HTML text, safe in element content and in a quoted
    attribute value."""
    return html.escape(_SHOWN_ESCAPED.sub(_visible, str(value)), quote=True)


def json_island(data):
    """JSON for a <script type="application/json"> block: ASCII only, and no
    `<`, `>` or `&`, so no `</script>` or `<!--` can end or change the
    block, whatever the names in it hold."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def csp_hash(source):
    """The Content-Security-Policy source that allows exactly this inline
    <script> or <style> text.

    >>> csp_hash("")
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
    """
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"
