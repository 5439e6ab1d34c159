"""``ainode serve``, ``ainode worker`` and ``ainode check-config``: running the node from its configuration."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["add_serve_commands"]


def add_serve_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``serve``, ``worker`` and ``check-config`` to the subcommands ``sub``."""
    serve = sub.add_parser("serve", help="run the node")
    serve.add_argument("--config", type=Path, help="config.toml (default: the embedded defaults)")
    serve.add_argument("--dicom-port", type=int, help="override [node] dicom_port (default: the config's)")
    serve.add_argument("--http-port", type=int, help="override [node] http_port (default: the config's)")
    serve.add_argument("--data-dir", type=Path, help="override [node] data_dir (default: the config's)")
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="run jobs only, from a job store and spool shared with ingest nodes")
    worker.add_argument("--config", type=Path, required=True, help="config.toml with [store] url (PostgreSQL)")
    worker.add_argument("--deliver", action="store_true", help="also deliver results to the destinations")
    worker.add_argument("--data-dir", type=Path, help="override [node] data_dir: results, engine cache (default: the config's)")
    worker.add_argument("--metrics-port", type=int,
                        help="serve GET /metrics on this port of [node] http_host (default: [runner] metrics_port; 0: none)")
    worker.set_defaults(func=_worker)

    check = sub.add_parser("check-config", help="validate a config file and print it")
    check.add_argument("config", type=Path, help="the config.toml to check")
    check.set_defaults(func=_check_config)


def _load_config(path: Path | None) -> Config | None:
    """The configuration at ``path`` (embedded defaults: ``None``), or ``None`` after saying why not."""
    from ..config import ConfigError, load_config

    try:
        return load_config(path)
    except (ConfigError, OSError) as exc:
        print(f"ainode: configuration error: {exc}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    import ssl

    from ..http.auth import AuthError
    from ..ports import PortInUse, check_ports
    from ..service import Node

    config = _load_config(args.config)
    if config is None:
        return 2
    config = Node.with_overrides(
        config, dicom_port=args.dicom_port, http_port=args.http_port,
        data_dir=args.data_dir.resolve() if args.data_dir else None,
    )
    try:
        check_ports(config.node)
    except PortInUse as exc:
        print(exc, file=sys.stderr)
        return 3
    return _run_node(config, "ainode", config_errors=(AuthError, ssl.SSLError))


def _worker(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..service import Node

    config = _load_config(args.config)
    if config is None:
        return 2
    if config.store.url is None:
        print("ainode worker: [store] url is not set: a worker shares a PostgreSQL job store with the ingest nodes",
              file=sys.stderr)
        return 2
    config = Node.with_overrides(config, data_dir=args.data_dir.resolve() if args.data_dir else None)
    if args.metrics_port is not None:
        config = replace(config, runner=replace(config.runner, metrics_port=args.metrics_port))
    return _run_node(config, "ainode worker", worker=True, deliver=args.deliver)


def _run_node(config: Config, command: str, *, config_errors: tuple[type[Exception], ...] = (),
              **options: bool) -> int:
    """Log as configured, make what the node writes its user's only, and run it until stopped.

    ``config_errors``: what building the node raises for a configuration it cannot use
    (exit 2); a job store it cannot reach (``ConnectionError``) exits 1.
    """
    import os

    from ..logs import configure_logging
    from ..service import Node

    configure_logging(config.node.log_level)
    os.umask(0o077)  # everything the node writes (job store, spool, results) is its user's only
    try:
        node = Node(config, **options)
    except config_errors as exc:
        print(f"ainode: configuration error: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:  # the shared job store ([store] url) cannot be reached
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    node.serve_forever()
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    if config is None:
        return 2
    print(config)
    return 0
