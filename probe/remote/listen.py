"""Running ``probe serve``: its sockets, uvicorn's timeouts, TLS and the metrics listener.

* :func:`bind` takes the API's address before the model is loaded, so that a busy port
  or an unknown host is one ProbeError (``error:`` line, exit 2), not uvicorn's log line
  and exit 3.
* :func:`is_loopback`: whether a host is this machine only (``--no-keys`` elsewhere
  needs ``--insecure``).
* :func:`check_tls`: the certificate and key load, or a ProbeError.
* :func:`uvicorn_config`: keep-alive and header timeouts (uvicorn has no timeout for a
  request's headers: :func:`protocol_class` closes a connection whose headers have not
  arrived within ``header_timeout``; the body has the app's own read deadline), a bound
  on concurrent connections, TLS.
* :func:`serve`: the app on the bound socket until SIGINT or SIGTERM.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl

from probe.errors import ProbeError
from probe.remote import need

HEADER_TIMEOUT = 10.0  # seconds a connection may take to send a request's headers
KEEP_ALIVE = 5  # seconds an idle connection is kept
MAX_CONNECTIONS = 1000  # connections and requests at once; past it: 503


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (listening starts with the server), or a ProbeError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]  # fmt: skip
    except socket.gaierror as exc:
        raise ProbeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ProbeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (an unresolvable host is not)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_tls(certfile: str | None, keyfile: str | None) -> None:
    """Both or neither of --ssl-certfile/--ssl-keyfile, and they load; else a ProbeError."""
    if (certfile is None) != (keyfile is None):
        raise ProbeError("--ssl-certfile and --ssl-keyfile go together")
    if certfile is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(f"cannot load the TLS certificate {certfile} with key {keyfile}: {exc}") from None


def protocol_class(header_timeout: float):
    """uvicorn's h11 protocol, closing a connection whose request headers take longer than header_timeout."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _header_timer = None

        def _expect_headers(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _headers_late(self) -> None:
            idle = self.cycle is None or self.cycle.response_complete  # no request under way: its headers are late
            if idle and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._expect_headers()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._expect_headers()

        def connection_lost(self, exc) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

    return Protocol


def uvicorn_config(app, *, header_timeout: float = HEADER_TIMEOUT, ssl_certfile: str | None = None,
                   ssl_keyfile: str | None = None, **extra):  # fmt: skip
    """uvicorn's Config for ``app`` with probe's timeouts and limits (``extra``: host, port, log_level, ...)."""
    uvicorn = need("uvicorn")
    options = {"log_level": "warning", "access_log": False, "timeout_keep_alive": KEEP_ALIVE,
               "limit_concurrency": MAX_CONNECTIONS, "timeout_graceful_shutdown": 10, **extra}  # fmt: skip
    return uvicorn.Config(app, http=protocol_class(header_timeout), ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                          lifespan="on", **options)  # fmt: skip


def serve(app, sock: socket.socket, **options) -> None:
    """Run ``app`` on the bound ``sock`` until SIGINT or SIGTERM (options: :func:`uvicorn_config`'s)."""
    uvicorn = need("uvicorn")
    uvicorn.Server(uvicorn_config(app, **options)).run(sockets=[sock])
