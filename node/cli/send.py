"""``ainode send`` and ``ainode process``: the commands that talk to a running node."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_send_commands"]


def add_send_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``send`` and ``process`` to the subcommands ``sub``."""
    send = sub.add_parser("send", help="send DICOM files with C-STORE")
    send.add_argument("paths", type=Path, nargs="+", help="files or folders")
    send.add_argument("--host", default="127.0.0.1", help="the receiver's host")
    send.add_argument("--port", type=int, default=11112, help="the receiver's DICOM port")
    send.add_argument("--aet", default="AINODE", help="called AE title")
    send.add_argument("--calling-aet", default="AINODE-SCU", help="our (calling) AE title")
    send.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on a terminal)")
    send.add_argument("--tls", action="store_true", help="send over DICOM TLS, verifying the receiver (default: plain TCP)")
    send.add_argument("--ca", type=Path, help="with --tls: CA certificates to verify the receiver against (default: the system's)")
    send.add_argument("--cert", type=Path, help="with --tls: our client certificate (PEM; default: none)")
    send.add_argument("--key", type=Path, help="with --tls: the client certificate's private key (default: in --cert)")
    send.set_defaults(func=_send)

    process = sub.add_parser("process", help="have the running node retrieve a study from a source and process it")
    process.add_argument("study_uid", help="Study Instance UID")
    process.add_argument("--source", required=True, help="a [[sources]] name of the node's configuration")
    process.add_argument("--route", action="append", dest="routes", metavar="ROUTE",
                         help="run only this route (repeat for several; default: every matching route)")
    process.add_argument("--node", default="http://127.0.0.1:8080", help="the node's HTTP address")
    process.add_argument("--token-file", type=Path, help="file holding the API's bearer token (default: none, or --config's)")
    process.add_argument("--config", type=Path, help="take the token file from this config's [http] token_file (default: none)")
    process.add_argument("--ca", type=Path, help="CA certificates to verify an https:// node against (default: the system's)")
    process.set_defaults(func=_process)


def _process(args: argparse.Namespace) -> int:
    import ssl

    import httpx

    token_file = args.token_file
    if token_file is None and args.config is not None:
        from ..config import ConfigError, load_config

        try:
            token_file = load_config(args.config).http.token_file
        except (ConfigError, OSError) as exc:
            print(f"ainode process: configuration error: {exc}", file=sys.stderr)
            return 2
    headers = {}
    if token_file is not None:
        try:
            headers["Authorization"] = f"Bearer {Path(token_file).read_text(encoding='utf-8').strip()}"
        except OSError as exc:
            print(f"ainode process: the token file cannot be read ({type(exc).__name__})", file=sys.stderr)
            return 2
    try:
        verify = True if args.ca is None else ssl.create_default_context(cafile=str(args.ca))
    except (OSError, ssl.SSLError) as exc:
        print(f"ainode process: the CA file cannot be used ({type(exc).__name__})", file=sys.stderr)
        return 2
    try:
        answer = httpx.post(f"{args.node.rstrip('/')}/api/studies/{args.study_uid}/process",
                            json={"source": args.source, "routes": args.routes}, headers=headers, timeout=600,
                            verify=verify)
    except httpx.HTTPError as exc:
        print(f"ainode process: the node at {args.node} cannot be reached ({type(exc).__name__})", file=sys.stderr)
        return 1
    body = answer.json()
    if answer.status_code != 200:
        print(f"ainode process: {body.get('detail', body)}", file=sys.stderr)
        return 1
    print(f"study {body['study_uid']} from {body['source']}: {body['stored']} instances stored,"
          f" {body['duplicate']} already held, {body['refused']} refused; jobs run again: {body['rerun_jobs'] or 'none'}")
    return 0


def _send(args: argparse.Namespace) -> int:
    import ssl

    from ..dicom.send import dicom_files, send_paths
    from ..dicom.tls import client_context

    files = dicom_files(args.paths)
    if not files:
        print("ainode send: no DICOM files found", file=sys.stderr)
        return 1
    if not args.tls and (args.ca or args.cert or args.key):
        print("ainode send: --ca, --cert and --key go with --tls", file=sys.stderr)
        return 2
    try:
        tls = client_context(args.ca, args.cert, args.key) if args.tls else None
    except (OSError, ssl.SSLError) as exc:
        print(f"ainode send: the TLS files cannot be used ({type(exc).__name__}: {exc.strerror or exc})",
              file=sys.stderr)
        return 2
    report = send_paths(files, args.host, args.port, args.aet, args.calling_aet,
                        progress=False if args.no_progress else None, tls=tls)
    print(f"sent {report.sent} of {len(files)}")
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    return 0 if not report.failed else 1
