"""One error type for everything a user can get wrong.

The CLI prints ``CamtraceError`` as a single line (no traceback); its message names the
file or argument at fault and the fix.
"""


class CamtraceError(Exception):
    """A user-facing error: bad input file, bad argument, mismatched checkpoint."""
