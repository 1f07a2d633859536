"""The CAP class: one captcha (style, text, rendered "image")."""

import random

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
DEFAULT_STYLE = {"width": 256, "height": 60, "offset": 40, "quality": 50, "fontsize": 57}
IMAGE_BYTES = 200


class CAP:
    def __init__(self, style):
        self.style = dict(DEFAULT_STYLE, **style)
        self.text = ""
        self.image = b""
        self._timer()

    def _timer(self):
        """Regenerate text and image (the library's timer calls this every minute)."""
        self.text = "".join(random.choices(ALPHABET, k=6))
        # Stand-in for the rendered bitmap: a header plus random "pixels".
        header = b"CAPv1 " + self.text.encode("ascii") + b" "
        self.image = header + random.randbytes(IMAGE_BYTES - len(header))

    def get(self):
        """Return (text, image), like ``captcha.get()`` in the original."""
        return self.text, self.image
