"""Real services started by the tests: a single-node SLURM and a local PostgreSQL.

Both are started from the Debian packages (see tests/system/install.sh) into a
temporary folder, as children of the test process, and stopped by PID.  When a
service cannot be started (not root, packages missing, a site configuration in
the way) :class:`Unavailable` says why, and the fixtures skip with that reason.

The SLURM cluster is one node, ``localhost``, in one partition ``debug``:

- munged with its own key and socket; slurmctld and slurmd in the foreground;
- ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none`` (no cgroups);
- no accounting database: job status is read with ``squeue``, so ``MinJobAge``
  keeps finished jobs visible for :data:`MIN_JOB_AGE` seconds;
- two fake GPUs: ``GresTypes=gpu``, ``Gres=gpu:fake:2`` and a gres.conf whose
  ``File=`` lines point at two character devices (major 195, the NVIDIA
  number) made in the temporary folder, so GPU requests are accepted,
  scheduled and counted like on a GPU node;
- ``SlurmctldDebug=debug``: the controller log records every submission.

Clients and the jobs themselves read ``/etc/slurm/slurm.conf`` (the executor's
job step strips ``SLURM_CONF``), so that path becomes a symlink to the
temporary config while the cluster runs; an existing regular file there is a
real site configuration and is never replaced.  A lock file serialises test
clusters of concurrent test runs on one machine.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

__all__ = ["Unavailable", "SlurmCluster", "PostgresServer", "free_port"]

SLURM_CONF_PATH = Path("/etc/slurm/slurm.conf")
LOCK_PATH = Path("/tmp/popdl-test-slurm.lock")
MARKER = "# popdl test cluster"
NODE = "localhost"
PARTITION = "debug"
#: Seconds a finished job stays visible to squeue/scontrol (>= 3x the
#: executor's first status-check delay, else squeue misses finished jobs).
MIN_JOB_AGE = 900
#: Fake GPUs declared on the node.
GPUS = 2
#: What the node declares (not what the machine has: the jobs are tiny).
NODE_CPUS = 16
NODE_MEMORY_MB = 64000
DEF_MEM_PER_CPU_MB = 500


class Unavailable(RuntimeError):
    """The service cannot be started here; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _which(*names: str) -> dict[str, str]:
    found, missing = {}, []
    for name in names:
        path = shutil.which(name) or next(
            (str(Path(d) / name) for d in ("/usr/sbin", "/sbin") if (Path(d) / name).exists()), None
        )
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        raise Unavailable(f"missing executables: {', '.join(missing)} (run tests/system/install.sh)")
    return found


def _stop(proc: subprocess.Popen | None, *, timeout: float = 20.0) -> None:
    """SIGTERM one child we started, then SIGKILL after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _wait(predicate, *, timeout: float, what: str, proc: subprocess.Popen | None = None,
          log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise Unavailable(f"{what}: process exited with {proc.returncode}\n{tail}")
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise Unavailable(f"{what}: not ready after {timeout:.0f} s\n{tail}")


class SlurmCluster:
    """A one-node SLURM cluster under ``root`` (a temporary folder).

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.conf = self.root / "etc" / "slurm.conf"
        self.ctld_log = self.root / "log" / "slurmctld.log"
        self.slurmd_log = self.root / "log" / "slurmd.log"
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock_fh = None
        self._linked = False

    # -- life cycle -------------------------------------------------------
    def __enter__(self) -> "SlurmCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, *, lock_timeout: float = 600.0) -> None:
        if os.geteuid() != 0:
            raise Unavailable("starting SLURM daemons needs root")
        self.bin = _which("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol",
                          "sinfo", "scancel", "srun")
        try:
            self._acquire_lock(lock_timeout)
            self._prepare_conf_path()
            self._write_files()
            self._start_munge()
            self._start_slurm()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Cancel our jobs, stop our daemons by PID, remove the symlink, unlock."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            subprocess.run([self.bin["scancel"], "--full", "--partition", PARTITION],
                           capture_output=True, timeout=30, check=False)
        for name in ("slurmd", "slurmctld", "munged"):
            _stop(self._procs.pop(name, None))
        if self._linked and SLURM_CONF_PATH.is_symlink():
            SLURM_CONF_PATH.unlink()
            self._linked = False
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    # -- steps ------------------------------------------------------------
    def _acquire_lock(self, timeout: float) -> None:
        self._lock_fh = open(LOCK_PATH, "a")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._lock_fh.close()
                    self._lock_fh = None
                    raise Unavailable(f"another test cluster holds {LOCK_PATH}") from None
                time.sleep(1)

    def _prepare_conf_path(self) -> None:
        path = SLURM_CONF_PATH
        if path.is_symlink():
            target = Path(os.readlink(path))
            stale = not target.exists() or MARKER in target.read_text(errors="replace")
            if not stale:
                raise Unavailable(f"{path} links to {target}, a configuration that is not a test's")
            path.unlink()  # left by a test run that was killed; we hold the lock
        elif path.exists():
            raise Unavailable(f"a site SLURM configuration exists at {path}; not replacing it")
        path.parent.mkdir(parents=True, exist_ok=True)

    def _write_files(self) -> None:
        for sub in ("etc", "log", "state", "spool", "munge", "dev", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(self.root / sub, 0o700)
        os.chmod(self.root, 0o755)
        devices = []
        for i in range(GPUS):
            dev = self.root / "dev" / f"nvidia{i}"
            if not dev.exists():
                try:
                    os.mknod(dev, 0o600 | stat.S_IFCHR, os.makedev(195, i))
                except PermissionError as exc:
                    raise Unavailable(f"cannot create a device node for the fake GPUs: {exc}") from None
            devices.append(dev)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        self.munge_socket = self.root / "munge" / "munge.sock"
        self.ctld_port, self.slurmd_port = free_port(), free_port()
        self.conf.write_text(
            "\n".join(
                [
                    MARKER,
                    "ClusterName=popdltest",
                    f"SlurmctldHost={NODE}(127.0.0.1)",
                    f"SlurmctldPort={self.ctld_port}",
                    f"SlurmdPort={self.slurmd_port}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'run' / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'run' / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.ctld_log}",
                    f"SlurmdLogFile={self.slurmd_log}",
                    "SlurmctldDebug=debug",
                    "DebugFlags=Gres",
                    "SlurmdDebug=info",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "MpiDefault=none",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "SlurmdParameters=config_overrides",
                    "ReturnToService=2",
                    f"MinJobAge={MIN_JOB_AGE}",
                    f"DefMemPerCPU={DEF_MEM_PER_CPU_MB}",
                    "GresTypes=gpu",
                    f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} "
                    f"RealMemory={NODE_MEMORY_MB} Gres=gpu:fake:{GPUS} State=UNKNOWN",
                    f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        (self.conf.parent / "gres.conf").write_text(
            "".join(f"NodeName={NODE} Name=gpu Type=fake File={dev}\n" for dev in devices)
        )
        (self.conf.parent / "cgroup.conf").write_text("CgroupPlugin=autodetect\n")
        SLURM_CONF_PATH.symlink_to(self.conf)
        self._linked = True

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        out = open(self.root / "log" / f"{name}.out", "ab")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=self.root, start_new_session=True)
        out.close()
        self._procs[name] = proc
        return proc

    def _start_munge(self) -> None:
        m = self.root / "munge"
        proc = self._spawn("munged", [
            self.bin["munged"], "--foreground", "--force",
            f"--socket={self.munge_socket}", f"--key-file={m / 'munge.key'}",
            f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
            f"--seed-file={m / 'munged.seed'}",
        ])
        _wait(self.munge_socket.exists, timeout=30, what="munged", proc=proc, log=m / "munged.log")

    def _run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([self.bin.get(cmd[0], cmd[0]), *cmd[1:]], capture_output=True,
                              text=True, timeout=timeout, check=False)

    def _start_slurm(self) -> None:
        ctld = self._spawn("slurmctld", [self.bin["slurmctld"], "-D", "-i", "-f", str(self.conf)])
        _wait(lambda: self._run("scontrol", "ping").stdout.count("UP") > 0, timeout=60,
              what="slurmctld", proc=ctld, log=self.ctld_log)
        slurmd = self._spawn("slurmd", [self.bin["slurmd"], "-D", "-N", NODE, "-f", str(self.conf)])
        deadline = time.monotonic() + 90
        while True:
            state = self.node_state()
            if state.startswith("idle") or state.startswith("mix"):
                return
            if any(state.startswith(s) for s in ("drain", "down", "fail")):
                self._run("scontrol", "update", f"NodeName={NODE}", "State=RESUME")
            if slurmd.poll() is not None or time.monotonic() > deadline:
                tail = self.slurmd_log.read_text(errors="replace")[-2000:] if self.slurmd_log.exists() else ""
                raise Unavailable(f"slurmd: node {NODE} is {state or 'unknown'}, not idle\n{tail}")
            time.sleep(0.5)

    # -- queries ----------------------------------------------------------
    def node_state(self) -> str:
        """The node's state as sinfo reports it (``idle``, ``mixed``, ``down*``...)."""
        return self._run("sinfo", "-h", "-N", "-n", NODE, "-o", "%T").stdout.strip()

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller still remembers (``scontrol show job``), as dicts."""
        out = self._run("scontrol", "show", "job", "--oneliner", "--details").stdout
        jobs = []
        for line in out.splitlines():
            if not line.startswith("JobId="):
                continue
            job, key = {}, None
            for token in line.split():
                if "=" in token and not token.startswith("="):
                    key, _, value = token.partition("=")
                    job[key] = value
                elif key is not None:  # a value with spaces (Command=..., Comment=...)
                    job[key] += " " + token
            jobs.append(job)
        return jobs

    def submissions_logged(self) -> list[str]:
        """Lines of the controller log that record a batch submission."""
        if not self.ctld_log.exists():
            return []
        return [line for line in self.ctld_log.read_text(errors="replace").splitlines()
                if "_slurm_rpc_submit_batch_job" in line]


class PostgresServer:
    """A PostgreSQL server under ``root``, listening on a free port of 127.0.0.1.

    Runs as the ``postgres`` system user when started by root (PostgreSQL
    refuses to run as root), else as the current user.  Use as a
    context manager; :attr:`url` is the SQLAlchemy URL of database ``popdl``.
    """

    def __init__(self, root: Path, *, database: str = "popdl"):
        self.root = Path(root)
        self.database = database
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "PostgresServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @staticmethod
    def _bindir() -> Path:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                          key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
        if not versions:
            raise Unavailable("PostgreSQL server binaries not found under /usr/lib/postgresql "
                              "(run tests/system/install.sh)")
        return versions[-1].parent

    def _user_kwargs(self) -> dict:
        """Popen arguments that run a command as the server's user (not root)."""
        if os.geteuid() != 0:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def start(self) -> None:
        import pwd

        bindir = self._bindir()
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("no 'postgres' system user to run the server as") from None
            uid, gid = pw.pw_uid, pw.pw_gid
        else:
            uid, gid = os.getuid(), os.getgid()
        self.uid, self.gid = uid, gid
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.socket_dir = self.root / "socket"
        for d in (self.data, self.socket_dir):
            d.mkdir(exist_ok=True)
            os.chown(d, uid, gid)
            os.chmod(d, 0o700)
        # The server's user must be able to reach its folders.
        for parent in self.root.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                raise Unavailable(f"{parent} is not searchable by the postgres user")
        try:
            init = subprocess.run(
                [str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                 "--no-sync", "-E", "UTF8"],
                capture_output=True, text=True, timeout=120, check=False, cwd=self.root,
                **self._user_kwargs())
            if init.returncode != 0:
                raise Unavailable(f"initdb failed: {init.stderr.strip()[-1000:]}")
            self.port = free_port()
            out = open(self.log, "ab")
            self.proc = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", str(self.socket_dir),
                 "-c", "fsync=off", "-c", "max_connections=50"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=self.root, **self._user_kwargs())
            out.close()

            def ready() -> bool:
                r = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True, timeout=10, check=False)
                return r.returncode == 0

            _wait(ready, timeout=60, what="postgres", proc=self.proc, log=self.log)
            made = subprocess.run(
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", "postgres", self.database],
                capture_output=True, text=True, timeout=60, check=False)
            if made.returncode != 0:
                raise Unavailable(f"createdb failed: {made.stderr.strip()}")
        except BaseException:
            self.stop()
            raise
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        """Stop the server by PID (SIGINT: PostgreSQL's fast shutdown)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
