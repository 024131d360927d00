"""`make stop` (and so `make serve`) stops only our server, and only returns once it has gone."""
from __future__ import annotations

import pathlib
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[1]
# A stand-in for `enja serve` that takes a second to drain after SIGTERM.
DRAINING = 'trap "sleep 1; exit 0" TERM; while :; do sleep 0.1; done'


def _make_stop(output_dir: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "stop",
                           f"OUTPUT_DIR={output_dir}"],
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_stale_pid_file_never_signals_another_process(tmp_path):
    other = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "server.pid").write_text(f"{other.pid}\n")
        assert _make_stop(tmp_path).returncode == 0
        assert other.poll() is None, "make stop signalled a process that is not enja serve"
        assert not (tmp_path / "server.pid").exists()
    finally:
        other.kill()
        other.wait()


def test_stop_waits_for_the_server_to_drain(tmp_path):
    server = subprocess.Popen(["bash", "-c", f"exec -a 'enja serve' bash -c '{DRAINING}'"])
    try:
        (tmp_path / "server.pid").write_text(f"{server.pid}\n")
        assert _make_stop(tmp_path).returncode == 0
        assert server.poll() is not None, "make stop returned before the server exited"
    finally:
        server.kill()
        server.wait()
