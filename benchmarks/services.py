"""Real services for tests and benchmarks: Orthanc (the PACS), the node, dcmtk storescu, on loopback."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, Callable, Sequence

import httpx

__all__ = ["HEAD_CT_ROUTE", "NodeProcess", "dcmtk", "default_routes", "stop_process", "OrthancServer", "free_port", "node_config", "start_node", "storescu", "wait_for"]



def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 15.0) -> None:
    """Terminate ``proc`` (if any) and wait; kill it if it has not ended after ``timeout`` seconds."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def default_routes(*names: str) -> str:
    """The ``[[routes]]`` tables of the embedded default configuration named ``names``, as TOML."""
    from node.config import DEFAULT_CONFIG_TOML

    blocks = {}
    for block in DEFAULT_CONFIG_TOML.split("[[routes]]")[1:]:
        table = block.split("\n[", 1)[0].strip()
        name = tomllib.loads(table)["name"]
        blocks[name] = f"\n[[routes]]\n{table}\n"
    missing = [n for n in names if n not in blocks]
    if missing:
        raise KeyError(f"no default route named {', '.join(missing)}")
    return "".join(blocks[n] for n in names)


HEAD_CT_ROUTE = default_routes("head-ct")
"""The route of most tests and benchmarks: head CT series to the hematoma pack, results to ``pacs``."""

ORTHANC_BIN = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # services starting up
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


def dcmtk(tool: str) -> str:
    """The path of dcmtk's ``tool`` (pynetdicom installs apps of the same names in the venv)."""
    dcmdump = shutil.which("dcmdump")  # dcmtk only
    beside = Path(dcmdump).parent / tool if dcmdump else None
    return str(beside) if beside is not None and beside.exists() else tool


def storescu(files: list[Path], port: int, called_ae: str = "AINODE", calling_ae: str = "MODALITY",
             options: Sequence[str] = ()) -> None:
    """Send ``files`` with dcmtk's storescu, as a modality would (``options``: e.g. ``-xv`` to
    propose JPEG 2000 and send a J2K file as encoded)."""
    cmd = [dcmtk("storescu"), *options, "-aet", calling_ae, "-aec", called_ae, "127.0.0.1", str(port), *map(str, files)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"storescu failed ({result.returncode}): {result.stderr[-2000:]}")


class OrthancServer:
    """A real Orthanc from the Debian package, with its own storage folder."""

    def __init__(self, workdir: Path, node_port: int | None = None, node_ae: str = "AINODE",
                 extra_config: dict[str, Any] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.ae_title = "ORTHANC"
        config: dict[str, Any] = {
            "Name": "test-pacs",
            "StorageDirectory": str(self.workdir / "db"),
            "IndexDirectory": str(self.workdir / "db"),
            "HttpPort": self.http_port,
            "HttpBindAddress": "127.0.0.1",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "UnknownSopClassAccepted": True,
            "DicomModalities": {"ainode": [node_ae, "127.0.0.1", node_port or 11112]},
            "StableAge": 2,
        }
        if DICOMWEB_PLUGIN.exists():
            config["Plugins"] = [str(DICOMWEB_PLUGIN)]
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
        config.update(extra_config or {})  # e.g. AuthenticationEnabled + RegisteredUsers
        self.config_path = self.workdir / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.url = f"http://127.0.0.1:{self.http_port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "OrthancServer":
        log = open(self.workdir / "orthanc.log", "ab")
        self._proc = subprocess.Popen([ORTHANC_BIN, str(self.config_path)], stdout=log, stderr=log)
        # 401: up, with AuthenticationEnabled
        wait_for(lambda: httpx.get(f"{self.url}/system", timeout=2).status_code in (200, 401), 30, what="Orthanc")
        return self

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def instances_of_study(self, study_uid: str) -> list[dict[str, Any]]:
        """Every instance of the study, with its main tags (``MainDicomTags`` + series tags)."""
        found = httpx.post(f"{self.url}/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}},
                           timeout=30).json()
        instances: list[dict[str, Any]] = []
        for study_id in found:
            for series in self.get(f"/studies/{study_id}/series"):
                for inst in self.get(f"/series/{series['ID']}/instances"):
                    inst["SeriesTags"] = series["MainDicomTags"]
                    instances.append(inst)
        return instances

    def results_by_class(self, study_uid: str, source_series_uid: str) -> dict[str, list[Any]]:
        """The study's instances outside the source series, read as datasets, by SOP Class UID."""
        import io

        import pydicom

        by_class: dict[str, list[Any]] = {}
        for inst in self.instances_of_study(study_uid):
            if inst["SeriesTags"].get("SeriesInstanceUID") == source_series_uid:
                continue
            ds = pydicom.dcmread(io.BytesIO(self.instance_file(inst["ID"])))
            by_class.setdefault(str(ds.SOPClassUID), []).append(ds)
        return by_class

    def instance_file(self, orthanc_id: str) -> bytes:
        response = httpx.get(f"{self.url}/instances/{orthanc_id}/file", timeout=30)
        response.raise_for_status()
        return response.content


class NodeProcess:
    """``ainode serve`` as a child process, its log captured to a file."""

    def __init__(self, workdir: Path, config_text: str, source: Path | None = None) -> None:
        """``source``: a checkout of another version of the node to run instead of this one."""
        self.source = source
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "config.toml"
        self.config_path.write_text(config_text)
        self.log_path = self.workdir / "node.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.dicom_port: int | None = None

    def start(self, http_port: int) -> "NodeProcess":
        log = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.source is not None:  # its packages first on the path (and as the current directory, which -m puts first)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.source), env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "serve", "--config", str(self.config_path.resolve())],
            stdout=log, stderr=log, env=env, start_new_session=True, cwd=self.source,
        )
        self.http_url = f"http://127.0.0.1:{http_port}"
        wait_for(lambda: httpx.get(f"{self.http_url}/healthz", timeout=2).status_code == 200, 60, what="node")
        return self

    def kill(self) -> None:
        """SIGKILL the node and its worker processes, as a crash would."""
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
            self._proc = None

    def jobs(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.http_url}/api/jobs", timeout=10).json()["jobs"]

    def metrics(self) -> str:
        return httpx.get(f"{self.http_url}/metrics", timeout=10).text

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def node_config(dicom_port: int, http_port: int, orthanc: OrthancServer, routes: str, *,
                quiet_seconds: float = 2.0, max_attempts: int = 200, extra: str = "") -> str:
    """A node configuration for tests and benchmarks: loopback ports, short quiet period,
    fast retries, Orthanc as the destination ``pacs``, then ``routes`` and ``extra`` (TOML)."""
    return f"""
[node]
ae_title = "AINODE"
dicom_host = "127.0.0.1"
dicom_port = {dicom_port}
http_port = {http_port}
data_dir = "data"

[assembler]
quiet_seconds = {quiet_seconds}
poll_seconds = 0.2

[egress]
max_attempts = {max_attempts}
backoff_seconds = 0.5
backoff_max_seconds = 1.0
timeout_seconds = 10

[[destinations]]
name = "pacs"
host = "127.0.0.1"
port = {orthanc.dicom_port}
ae_title = "{orthanc.ae_title}"
{routes}
{extra}
"""


def start_node(workdir: Path, orthanc: OrthancServer, routes: str, **options: Any) -> NodeProcess:
    """A started :class:`NodeProcess` on free ports (``.dicom_port`` set) delivering to ``orthanc``."""
    http_port, dicom_port = free_port(), free_port()
    node = NodeProcess(workdir, node_config(dicom_port, http_port, orthanc, routes, **options))
    node.dicom_port = dicom_port
    return node.start(http_port)


# -- observation helpers for the reliability suite and ``ainode bench faults`` ----------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant of it (read from ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: the fields start after the last ')'
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        if Path(f"/proc/{current}").exists():
            tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def process_tree_rss(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` and its descendants, summed (``VmRSS``)."""
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except (OSError, ValueError, IndexError):
            continue
    return total


def node_pid(node: NodeProcess) -> int | None:
    """The process id of a running node (``None`` when it is not running)."""
    proc = node._proc  # noqa: SLF001 - same module
    return proc.pid if proc is not None and proc.poll() is None else None


def node_exit_code(node: NodeProcess) -> int | None:
    """The exit status of a node that exited by itself; ``None`` while it runs or was never started."""
    proc = node._proc  # noqa: SLF001 - same module
    return None if proc is None else proc.poll()


def echoscu(port: int, called_ae: str = "AINODE", timeout: float = 10.0) -> str | None:
    """C-ECHO with dcmtk's ``echoscu``; ``None`` when answered, else why not."""
    cmd = [dcmtk("echoscu"), "-aet", "PROBE", "-aec", called_ae, "-to", str(int(timeout)), "-ta", str(int(timeout)),
           "-td", str(int(timeout)), "127.0.0.1", str(port)]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return f"echoscu did not finish in {timeout + 5:.0f}s"
    if result.returncode != 0:
        return f"echoscu exit {result.returncode}: {(result.stderr or result.stdout).strip()[-300:]}"
    return None


def orthanc_study_instances(orthanc: OrthancServer, study_uid: str) -> list[dict[str, str]]:
    """Every instance Orthanc holds for ``study_uid``: ``series_uid``, ``sop_instance_uid``,
    ``sop_class_uid``, ``orthanc_id``."""
    found = httpx.post(f"{orthanc.url}/tools/find", json={"Level": "Instance", "Expand": True,
                                                         "Query": {"StudyInstanceUID": study_uid}}, timeout=30)
    found.raise_for_status()
    out = []
    series_uids: dict[str, str] = {}
    for inst in found.json():
        parent = inst["ParentSeries"]
        if parent not in series_uids:
            series_uids[parent] = orthanc.get(f"/series/{parent}")["MainDicomTags"].get("SeriesInstanceUID", "")
        response = httpx.get(f"{orthanc.url}/instances/{inst['ID']}/metadata/SopClassUid", timeout=30)
        if response.status_code == 200:
            sop_class = response.text.strip()
        else:
            sop_class = str(orthanc.get(f"/instances/{inst['ID']}/simplified-tags").get("SOPClassUID", ""))
        out.append({"series_uid": series_uids[parent], "sop_instance_uid": inst["MainDicomTags"]["SOPInstanceUID"],
                    "sop_class_uid": sop_class, "orthanc_id": inst["ID"]})
    return out
