"""JPEG re-compression for attacks: success judged after the compression (SPOC Table 4, bottom).

The one JPEG setting, :class:`Jpeg` (a quality factor or a camera's own tables, read with
:meth:`Jpeg.from_file`), lives with the codec in :mod:`camtrace.data.codec`, which every
layer can use; this module is its attack-side entry point: ``jpeg=`` accepts what
:func:`as_jpeg` accepts, :func:`recompress` re-compresses a uint8 batch (tensor NCHW or
numpy NHWC) and :meth:`Jpeg.differentiable` is kornia's differentiable stand-in for attacks
that take their gradient through the compression.
"""

from camtrace.data.codec import Jpeg, as_jpeg, recompress

__all__ = ["Jpeg", "as_jpeg", "recompress"]
