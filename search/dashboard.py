"""Browse a study live in optuna-dashboard: `python -m search.dashboard --study cnn_reg`.

The dashboard has no authentication and can change the study (notes, renames, deletes), so it
listens on 127.0.0.1 unless --host says otherwise, and warns when the host is not a loopback one.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from typing import Any
from wsgiref.simple_server import WSGIServer

from ._console import (
    USAGE_ERRORS,
    HelpFormatter,
    add_study_options,
    error_exit,
    open_study_from_args,
)
from ._errors import UsageError
from ._study import redact

LOOPBACK = "127.0.0.1"
# Hosts that listen on every interface; a browser cannot open them, so the URL shows loopback.
WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.dashboard",
        description="Serve a study in optuna-dashboard (live: it shows trials as they finish).",
        formatter_class=HelpFormatter,
    )
    add_study_options(parser, out_alias=True)
    parser.add_argument(
        "--host",
        default=LOOPBACK,
        help="address to listen on; anything but loopback exposes the study, "
        "unauthenticated, to the network",
    )
    parser.add_argument("--port", type=_port, default=8080, help="TCP port to listen on")
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {value}")
    return value


def is_loopback(host: str) -> bool:
    """True when `host` (an address or a name) only ever means this machine's loopback."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if host.lower() == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # unresolvable: cannot prove it is private, so warn
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


def dashboard_url(host: str, port: int, study_id: int | None = None) -> str:
    """The address a browser on this machine opens: the study's page, or the dashboard root."""
    shown = LOOPBACK if host in WILDCARD_HOSTS else host.strip("[]")
    if ":" in shown:  # an IPv6 literal needs brackets in a URL
        shown = f"[{shown}]"
    path = f"/dashboard/studies/{study_id}" if study_id is not None else "/dashboard"
    return f"http://{shown}:{port}{path}"


def bind(storage: Any, host: str, port: int) -> WSGIServer:
    """optuna-dashboard serving `storage` on a server already listening on `host:port`.

    Bound before anything is printed, so a taken port or an address not on this machine fails
    in one line, with no "open ..." line claiming a dashboard that never listened.
    """
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import optuna_dashboard

    class Handler(WSGIRequestHandler):
        def address_string(self) -> str:  # the client's address, without a reverse DNS lookup
            return self.client_address[0]

    server_class = WSGIServer
    if ":" in host:  # an IPv6 literal; wsgiref's server is IPv4 unless told

        class server_class(WSGIServer):  # noqa: N801
            address_family = socket.AF_INET6

    return make_server(
        host.strip("[]"), port, optuna_dashboard.wsgi(storage), server_class, Handler
    )


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        study, storage, url = open_study_from_args(args)
        server = listen(storage, args.host, args.port)
        if not is_loopback(args.host):
            print(
                f"warning: the dashboard has no authentication; listening on {args.host} lets "
                "anyone who can reach this machine read and change the study",
                file=sys.stderr,
            )
        print(f"study {args.study!r} in {redact(url)}")
        print(
            f"open {dashboard_url(args.host, args.port, study._study_id)}  (Ctrl-C stops)",
            flush=True,
        )
    except USAGE_ERRORS as exc:
        raise SystemExit(error_exit(exc)) from None
    serve(server)


def listen(storage: Any, host: str, port: int) -> WSGIServer:
    """`bind`, with a failure to listen (port taken, address not on this machine, no
    permission) as a UsageError naming the address."""
    try:
        return bind(storage, host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(server: WSGIServer) -> None:
    """Serve until Ctrl-C, then close the socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
