"""The analyst's page (``camtrace serve``): drop photos, see which camera model shot them and
where, check them for spoofing, spoof them, download the result and a report; batches of a
folder or a zip. FastAPI and Jinja2 templates over the same public API as the command line,
served by uvicorn; it needs the ``web`` extra (``pip install 'camtrace[web]'``).
"""

from camtrace.web.server import exposed, serve

__all__ = ["exposed", "serve"]
