"""The page and its JSON API (FastAPI): routes only parse, call :class:`Service` and answer;
every error is one line (``{"error": ...}``), never a traceback, and the server goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from camtrace._version import __version__
from camtrace.errors import CamtraceError
from camtrace.web.jobs import JobQueue
from camtrace.web.service import NotFound, Service, Upload
from camtrace.web.uploads import Limits, Store, UploadTooLarge, heif_support, photo_formats
from camtrace.workflows.camera_spoof import MAX_PSNR
from camtrace.workflows.catalogue import Catalogue

HERE = Path(__file__).parent
log = logging.getLogger("camtrace.web")


class BodyLimit:
    """Refuse a request body over ``limit`` bytes: at once when its Content-Length says so,
    else as soon as the bytes read pass it (:class:`UploadTooLarge`, answered 413)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await _one_line(413, str(UploadTooLarge(self.limit)))(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise UploadTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


class SameOrigin:
    """Refuse a state-changing request another site's page makes the browser send (its
    ``Origin`` is not this server): a local page is otherwise open to cross-site requests."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(scope.get("headers", []))
            origin = headers.get(b"origin", b"").decode("latin-1")
            host = headers.get(b"host", b"").decode("latin-1")
            if origin and urlsplit(origin).netloc != host:
                message = f"cross-site request from {origin} refused; use the page itself"
                await _one_line(403, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _one_line(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


def create_app(
    detectors: str | Path | None = None,
    *,
    workers: int = 2,
    limits: Limits = Limits(),
    hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The page's application: the zoo and the checkpoints under ``detectors``, uploads kept
    in a temporary folder removed at shutdown, ``workers`` background threads; ``hosts``,
    when given, the only Host headers answered (a loopback server refuses DNS rebinding)."""
    heif_support()
    catalogue = Catalogue(detectors)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store, jobs = Store(limits), JobQueue(workers)
        app.state.service = Service(catalogue, store, jobs)
        try:
            yield
        finally:
            jobs.shutdown()
            store.close()

    app = FastAPI(title="camtrace", version=__version__, lifespan=lifespan, docs_url="/api/docs")
    app.add_middleware(BodyLimit, limit=limits.request_bytes)
    app.add_middleware(SameOrigin)
    if hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _errors(app)
    _routes(app, Jinja2Templates(directory=HERE / "templates"))
    return app


def _errors(app: FastAPI) -> None:
    handlers: dict[Any, Callable[[Request, Any], Awaitable[JSONResponse]]] = {}

    async def user(_: Request, e: CamtraceError) -> JSONResponse:
        return _one_line(400, str(e))

    async def missing(_: Request, e: NotFound) -> JSONResponse:
        return _one_line(404, str(e))

    async def too_large(_: Request, e: UploadTooLarge) -> JSONResponse:
        return _one_line(413, str(e))

    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _one_line(422, f"{where or 'request'}: {first.get('msg', 'invalid')}")

    async def http(_: Request, e: HTTPException) -> JSONResponse:
        if isinstance(e.__cause__, UploadTooLarge):  # FastAPI wraps errors of form parsing
            return _one_line(413, str(e.__cause__))
        return _one_line(e.status_code, str(e.detail))

    async def internal(_: Request, e: Exception) -> JSONResponse:
        log.exception("internal error")
        return _one_line(500, f"internal error ({type(e).__name__}); see the server's log")

    handlers.update(
        {
            CamtraceError: user,
            NotFound: missing,
            UploadTooLarge: too_large,
            RequestValidationError: invalid,
            HTTPException: http,
            Exception: internal,
        }
    )
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)


def _service(request: Request) -> Service:
    return request.app.state.service


def _uploads(files: list[UploadFile]) -> list[Upload]:
    return [Upload(f.file, f.filename) for f in files]


Files = Annotated[list[UploadFile], File(description="one or more files")]
DetectorField = Annotated[str | None, Form(description="a detector's key (GET /api/detectors)")]


def _routes(app: FastAPI, templates: Jinja2Templates) -> None:
    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        service = _service(request)
        detectors = service.detectors()
        return templates.TemplateResponse(
            request,
            "index.html",
            {
                "version": __version__,
                "detectors": detectors,
                "setup": json.dumps(  # inside <script>: no "<" can close it
                    {
                        "detectors": detectors,
                        "max_bytes": service.limits.request_bytes,
                        "max_psnr": round(MAX_PSNR, 2),
                    }
                ).replace("<", "\\u003c"),
                "formats": ", ".join(photo_formats()),
                "max_mb": f"{service.limits.request_bytes / 2**20:.0f}",
            },
        )

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "version": __version__}

    @app.get("/api/detectors")
    def detectors(request: Request) -> list[dict[str, Any]]:
        return _service(request).detectors()

    @app.post("/api/identify")
    def identify(request: Request, file: UploadFile, detector: DetectorField = None) -> Any:
        service = _service(request)
        return service.identify(
            Upload(file.file, file.filename), detector or service.default_detector()
        )

    @app.post("/api/photos")
    def photos(request: Request, files: Files) -> list[dict[str, Any]]:
        return _service(request).add_photos(_uploads(files))

    @app.post("/api/photos/{photo_id}/examine")
    def examine(request: Request, photo_id: str, detector: DetectorField = None) -> Any:
        service = _service(request)
        return service.examine_job(photo_id, detector or service.default_detector()).to_dict()

    @app.get("/api/photos/{photo_id}/image")
    def image(request: Request, photo_id: str) -> FileResponse:
        path, media = _service(request).display(photo_id)
        return FileResponse(path, media_type=media)

    @app.get("/photos/{photo_id}/report", response_class=HTMLResponse)
    def report(request: Request, photo_id: str, detector: str | None = None) -> HTMLResponse:
        service = _service(request)
        return HTMLResponse(service.report(photo_id, detector or service.default_detector()))

    @app.post("/api/photos/{photo_id}/spoof")
    def spoof(
        request: Request,
        photo_id: str,
        target: Annotated[str, Form()],
        detector: DetectorField = None,
        method: Annotated[str, Form()] = "pgd",
        budget: Annotated[Literal["eps", "psnr"], Form()] = "eps",
        value: Annotated[float, Form()] = 4.0,
        output: Annotated[Literal["png", "jpeg"], Form()] = "png",
    ) -> Any:
        service = _service(request)
        job = service.spoof_job(
            photo_id,
            detector or service.default_detector(),
            target,
            method,
            budget,
            value,
            output,
        )
        return job.to_dict()

    @app.get("/api/spoofs/{spoof_id}/{what}")
    def spoofed(
        request: Request, spoof_id: str, what: Literal["image", "difference", "download"]
    ) -> FileResponse:
        done = _service(request).spoofed(spoof_id)
        if what == "difference":
            return FileResponse(done.difference, media_type="image/png")
        if what == "image":
            return FileResponse(done.image, media_type=done.media_type)
        return FileResponse(done.image, media_type=done.media_type, filename=done.download)

    @app.post("/api/batch")
    def batch(request: Request, files: Files, detector: DetectorField = None) -> Any:
        service = _service(request)
        return service.batch_job(_uploads(files), detector or service.default_detector()).to_dict()

    @app.get("/api/batch/{batch_id}.csv")
    def batch_csv(request: Request, batch_id: str) -> FileResponse:
        return FileResponse(
            _service(request).batch_csv(batch_id), media_type="text/csv", filename="batch.csv"
        )

    @app.get("/api/jobs/{job_id}")
    def job(request: Request, job_id: str) -> Any:
        try:
            return _service(request).jobs.get(job_id).to_dict()
        except KeyError:
            raise NotFound(f"job {job_id}: not on this server; start it again") from None
