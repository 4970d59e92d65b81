"""camtrace: security of camera-model identification.

Identify which camera model shot a photo, attack that answer, defend against the attacks,
and measure all of it reproducibly.
"""

__version__ = "0.1.0"
