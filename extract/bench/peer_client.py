"""The bench's side of its peers: a worker process in the peers' venv, or the peers in this process.

``[bench] peers_python`` names the worker's python (``make bench-extract`` passes ``.venv-peers``'s);
"" runs them here, if their packages import here. Either way :func:`open_peers` gives an object
with ``build(...)`` and ``encode(name, n, save)`` -> {"seconds", "padded_tokens"}, the protocol of
``extract.bench.peer_worker``, and ``close()``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from probekit.core.errors import ProbekitError

WORKER = "probekit.stages.extract.bench.peer_worker"
HINT = "run make bench-extract (it builds .venv-peers and passes its python) or set bench.peers_python"


class InProcess:
    """The peers in this process (their packages import here)."""

    def __init__(self):
        from probekit.stages.extract.bench.peer_worker import Peers

        self.peers = Peers()

    def build(self, **req) -> dict:
        return self.peers.build(**req)

    def encode(self, name: str, n: int, save: str | None = None) -> dict:
        return self.peers.encode(name, n, save)

    def close(self) -> None:
        self.peers = None


class Worker:
    """One worker process in the peers' venv; its stderr goes to `log`."""

    def __init__(self, python: str, log: Path):
        self.python, self.log = python, Path(log)
        exe = Path(python)
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            raise ProbekitError(f"[bench] peers_python={python!r} is not an executable file; {HINT} to a python "
                                "with the peers extra.")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as err:  # one run, one log
            self.proc = subprocess.Popen([str(exe), "-m", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True, encoding="utf-8", bufsize=1)

    def _call(self, op: str, **req) -> dict:
        try:
            self.proc.stdin.write(json.dumps({"op": op, **req}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            code = self.proc.wait(timeout=30)
            raise ProbekitError(f"bench peers: the worker ({self.python}) exited with code {code} during {op!r}: "
                                f"{self._last_log_line()} (log: {self.log}); {HINT}.")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise ProbekitError(f"bench peers, in {self.python}: {reply['error']} (log: {self.log})")
        return reply

    def _last_log_line(self) -> str:
        try:
            lines = [s for s in self.log.read_text(encoding="utf-8", errors="replace").splitlines() if s.strip()]
        except OSError:
            lines = []
        return lines[-1].strip() if lines else "no output"

    def build(self, **req) -> dict:
        return self._call("build", **req)

    def encode(self, name: str, n: int, save: str | None = None) -> dict:
        return self._call("encode", name=name, n=n, save=save)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._call("quit")
                self.proc.wait(timeout=30)
            except (ProbekitError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def open_peers(names, python: str, log: Path):
    """The runner of the peers `names`: a :class:`Worker` in `python`, or :class:`InProcess` for "".

    Raises:
        ProbekitError: "" and the peers' packages missing here, or `python` not an executable file.
    """
    if python:
        return Worker(python, log)
    from probekit.stages.extract.bench.peers import missing_packages

    missing = missing_packages(names)
    if missing:
        raise ProbekitError(f"bench peers {', '.join(names)} need {', '.join(missing)}, not installed in this "
                            f"environment; {HINT} to a python with the peers extra, or set bench.peers=[].")
    return InProcess()
