"""The ingest baseline: a minimal pynetdicom storage SCP that only writes the raw bytes.

``python -m node.bench.raw_scp --port P --out DIR`` — no fsync, no index, no job store.
With ``--durable`` each file is written as the node promises it (a temporary file,
fsync'd, renamed, its directory fsync'd) before the answer: the price of durability alone.
"""
from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path

from pynetdicom import AE, AllStoragePresentationContexts, evt

__all__ = ["main"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--durable", action="store_true", help="fsync each file and its directory before answering")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    def handle_store(event: evt.Event) -> int:
        path = args.out / f"{event.request.AffectedSOPInstanceUID}.dcm"
        if not args.durable:
            path.write_bytes(event.encoded_dataset())
            return 0x0000
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as fp:
            fp.write(event.encoded_dataset())
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(temporary, path)
        directory = os.open(args.out, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return 0x0000

    ae = AE(ae_title="RAWSCP")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax)
    ae.start_server(("127.0.0.1", args.port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    threading.Event().wait()


if __name__ == "__main__":
    main()
