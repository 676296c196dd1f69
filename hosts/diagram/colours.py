"""The diagram's colours: each VM's own (stable across processes) and readable text on it."""

from __future__ import annotations

import colorsys
import hashlib

#: Over-committed threads: their outline, label and legend key.
OVER_COLOUR = "#c62828"


def _rgb(uuid: str) -> tuple[float, float, float]:
    # sha256, not hash(): Python salts str hashes per process, and a VM must keep its colour
    # across page loads, workers and screenshots. uuids are case-insensitive.
    digest = hashlib.sha256(uuid.strip().lower().encode("utf-8")).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    saturation = (0.55, 0.65, 0.75)[digest[2] % 3]
    lightness = (0.38, 0.48, 0.58)[digest[3] % 3]
    return colorsys.hls_to_rgb(hue / 360, lightness, saturation)


def vm_colour(uuid: str) -> str:
    """A VM's colour, ``#rrggbb``: hue (and a little lightness) from sha256 of its uuid."""
    return "#" + "".join(f"{round(channel * 255):02x}" for channel in _rgb(uuid))


def _luminance(rgb: tuple[float, float, float]) -> float:
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: float, b: float) -> float:
    """WCAG contrast ratio between two relative luminances."""
    light, dark = max(a, b), min(a, b)
    return (light + 0.05) / (dark + 0.05)


def vm_text_colour(uuid: str) -> str:
    """Black or white, whichever contrasts more with :func:`vm_colour` (always >= 4.5:1)."""
    lum = _luminance(_rgb(uuid))
    return "#000000" if contrast_ratio(lum, 0.0) >= contrast_ratio(lum, 1.0) else "#ffffff"
