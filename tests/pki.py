"""A test PKI made with the openssl command: a site CA, a server certificate for 127.0.0.1,
two client certificates of the site CA (CN ``modality`` and ``other-device``), and a client
certificate of another CA (``rogue``)."""
from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["Pki"]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, cert


def _issue(folder: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    key, csr, cert, ext = (folder / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]), "-CAcreateserial",
             "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return key, cert


class Pki:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_key, self.ca = _ca(folder, "site-ca")
        self.server_key, self.server = _issue(folder, "server", (self.ca_key, self.ca))
        self.client_key, self.client = _issue(folder, "modality", (self.ca_key, self.ca))
        self.other_key, self.other = _issue(folder, "other-device", (self.ca_key, self.ca))
        rogue_ca = _ca(folder, "rogue-ca")
        self.rogue_key, self.rogue = _issue(folder, "rogue", rogue_ca)
