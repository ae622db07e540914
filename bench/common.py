"""What the benchmarks share: their own PostgreSQL databases, a gunicorn server, keep-alive JSON clients, the
machine's description and percentiles. Each benchmark stays one command; this module only keeps them from
repeating each other."""

import http.client
import json
import os
import platform
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("O2O_BENCH_PG", "postgres://postgres@127.0.0.1:5432")


def prepare_database(name: str, *, reset: bool) -> None:
    """Create the benchmark's own database (dropping it first with `reset`)."""
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and reset:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(db_name: str) -> None:
    os.environ["DATABASE_URL"] = f"{PG}/{db_name}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "o2o.settings")
    os.environ.setdefault("O2O_LOG_LEVEL", "WARNING")
    import django

    django.setup()


def start_gunicorn(db_name: str, *, workers: int, port: int, extra_env: dict | None = None) -> subprocess.Popen:
    """The production shape: gunicorn sync workers with persistent database connections."""
    env = {
        **os.environ, "DATABASE_URL": f"{PG}/{db_name}", "O2O_LOG_LEVEL": "WARNING", "O2O_DB_CONN_MAX_AGE": "600",
        **(extra_env or {}),
    }
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "o2o.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "--timeout", "120", "--preload"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/schema/", timeout=2)
            return server
        except Exception:  # noqa: BLE001 - waiting for gunicorn to listen
            if server.poll() is not None:
                raise SystemExit("gunicorn exited") from None
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


class JsonClient:
    """One keep-alive HTTP connection with an API key; reconnects when the server closed it."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        payload = json.dumps(body) if body is not None else None
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=payload, headers={**self.headers, **(headers or {})})
                res = self.conn.getresponse()
                return res.status, res.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    except (OSError, ValueError, IndexError):
        mem = 0
    import psycopg

    with psycopg.connect(f"{PG}/postgres") as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    return f"{cpu}, {os.cpu_count()} cores, {mem} GB RAM, Python {platform.python_version()}, PostgreSQL {pg}"


NGINX_CONF = """daemon off;
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %(dir)s/body; proxy_temp_path %(dir)s/proxy; fastcgi_temp_path %(dir)s/fastcgi;
  uwsgi_temp_path %(dir)s/uwsgi; scgi_temp_path %(dir)s/scgi;
  server {
    listen 127.0.0.1:%(port)d backlog=1024;
    location / {
      proxy_pass http://127.0.0.1:%(upstream)d;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
"""


def start_buffering_proxy(*, port: int, upstream: int) -> tuple[subprocess.Popen, str]:
    """nginx in front of gunicorn, as in production: gunicorn's sync workers read a request from the socket they
    accepted, so a client that connects first and sends later (wrk's paced connections, or any slow customer on a
    phone) holds a worker idle meanwhile. nginx hands gunicorn only complete requests. Returns the process (its
    own process group) and its directory (config and logs)."""
    import shutil
    import tempfile

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is not installed (apt-get install nginx-light), or pass --proxy none")
    directory = tempfile.mkdtemp(prefix="o2o-bench-nginx-")
    conf = Path(directory) / "nginx.conf"
    conf.write_text(NGINX_CONF % {"dir": directory, "port": port, "upstream": upstream})
    proxy = subprocess.Popen([nginx, "-c", str(conf), "-p", directory], start_new_session=True)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/schema/", timeout=2)
            return proxy, directory
        except Exception:  # noqa: BLE001 - waiting for nginx to listen
            if proxy.poll() is not None:
                raise SystemExit(f"nginx exited: {(Path(directory) / 'error.log').read_text()}") from None
            time.sleep(0.1)
    raise SystemExit("nginx did not start")


def server_cpu_seconds(gunicorn_pid: int, db: str, *, also_pgids: tuple[int, ...] = ()) -> float:
    """CPU time used so far by the gunicorn master and workers and by the PostgreSQL backends of the bench
    database (from /proc), plus any process group in `also_pgids` (a proxy in front): the server side of a
    benchmark, whatever else runs on the machine. Backends that closed in between are missed (the benchmarks keep
    persistent connections)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid, pgid = int(fields[1]), int(fields[2])
        if pgid == gunicorn_pid or ppid == gunicorn_pid or pgid in also_pgids or f"postgres {db} " in cmdline:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total
