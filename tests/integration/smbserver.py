"""
smbserver.py - a private Samba server (smbd) on 127.0.0.1 for the log-terminal
tests: its own run directory and smb.conf, a free port, an anonymous read/write
share named `share`; started, probed and stopped exactly as
docs/test-servers.md section 1 describes (smbd --foreground without
--no-process-group, readiness through smbclient, stop by PID only).
Not here: any test, nor knowledge of the daemon.

As a module:  srv = SmbServer(); srv.start(); srv.url; srv.share_dir; srv.stop()
As a program: smbserver.py start RUNDIR [PORT [ro]]   (prints "PORT PID", leaves smbd running;
              ro: the share is read-only)
              smbserver.py stop RUNDIR
Standard library only.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SMB_CONF = """# Private Samba config for MTA integration tests (smbserver.py).
[global]
   server role = standalone server
   workgroup = WORKGROUP
   netbios name = MTATEST
   disable netbios = yes
   smb ports = @PORT@
   interfaces = 127.0.0.1
   bind interfaces only = yes
   lock directory = @DIR@/lock
   state directory = @DIR@/state
   cache directory = @DIR@/cache
   private dir = @DIR@/private
   pid directory = @DIR@/run
   ncalrpc dir = @DIR@/run/ncalrpc
   binddns dir = @DIR@/bind-dns
   passdb backend = tdbsam:@DIR@/private/passdb.tdb
   log file = @DIR@/log/log.%m
   max log size = 0
   log level = 1
   map to guest = Bad User
   guest account = nobody
   restrict anonymous = 0
   server min protocol = SMB2_02
   load printers = no
   printing = bsd
   printcap name = /dev/null
   disable spoolss = yes
   usershare max shares = 0
   smb encrypt = off
   rpc start on demand helpers = no

[share]
   path = @DIR@/share
   guest ok = yes
   guest only = yes
   read only = @READONLY@
   browseable = yes
   force user = root
   create mask = 0644
   directory mask = 0755
"""

SUBDIRS = ("lock", "state", "cache", "private", "run", "run/ncalrpc", "bind-dns", "log", "share")


def free_port():
    """free_port - a TCP port on 127.0.0.1 that the kernel just gave out."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(port):
    """port_taken - True when something listens on 127.0.0.1:PORT (a leaked server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class SmbServer:
    """One private smbd. The run directory and port survive stop(), so start() again
    brings the same share back on the same port (for outage tests)."""

    def __init__(self, rundir=None, port=None, read_only=False):
        self.own_dir = rundir is None
        self.dir = rundir or tempfile.mkdtemp(prefix="mta-smbd-")
        self.port = port or free_port()
        self.read_only = read_only
        self.proc = None
        self.pid = None

    @property
    def url(self):
        return "smb://127.0.0.1:%d/share" % self.port

    @property
    def share_dir(self):
        return os.path.join(self.dir, "share")

    def _write_conf(self):
        for d in SUBDIRS:
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        conf = (SMB_CONF.replace("@DIR@", self.dir).replace("@PORT@", str(self.port))
                .replace("@READONLY@", "yes" if self.read_only else "no"))
        with open(os.path.join(self.dir, "smb.conf"), "w") as f:
            f.write(conf)

    def smbclient(self, command, timeout=10):
        """smbclient - run one smbclient -c COMMAND against the share; (rc, stdout bytes)."""
        p = subprocess.run(["smbclient", "-N", "-p", str(self.port), "//127.0.0.1/share",
                            "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        return p.returncode, p.stdout

    def get(self, path, timeout=20):
        """get - a file's bytes read back through SMB (smbclient get PATH -)."""
        rc, out = self.smbclient("get %s -" % path, timeout=timeout)
        if rc != 0:
            raise IOError("smbclient get %s failed (rc %d)" % (path, rc))
        return out

    def ready(self):
        try:
            rc, _ = self.smbclient("ls", timeout=5)
            return rc == 0
        except subprocess.TimeoutExpired:
            return False

    def start(self, timeout=20):
        """start - smbd in the foreground (it setsid()s itself); wait until the share answers."""
        if port_taken(self.port):
            raise RuntimeError("port %d is already taken" % self.port)
        self._write_conf()
        out = open(os.path.join(self.dir, "smbd.out"), "ab")
        self.proc = subprocess.Popen(["smbd", "--foreground", "-s",
                                      os.path.join(self.dir, "smb.conf"), "--debug-stdout", "-d1"],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        out.close()
        self.pid = self.proc.pid
        with open(os.path.join(self.dir, "smbd.pid"), "w") as f:
            f.write("%d\n" % self.pid)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("smbd exited with %s; see %s/smbd.out" %
                                   (self.proc.returncode, self.dir))
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("smbd did not become ready in %ss" % timeout)

    def stop(self):
        """stop - SIGTERM to our smbd only, wait up to 5 s, then SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        # its children (smbd-notifyd, cleanupd, the client's smbd) leave with it; wait for
        # the port to be free so a restart on the same port does not race them
        deadline = time.time() + 5
        while time.time() < deadline and port_taken(self.port):
            time.sleep(0.1)

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


def main(argv):
    if len(argv) >= 3 and argv[1] == "start":
        srv = SmbServer(rundir=os.path.abspath(argv[2]),
                        port=int(argv[3]) if len(argv) > 3 and int(argv[3]) else None,
                        read_only=len(argv) > 4 and argv[4] == "ro")
        srv.start()
        # leave it running: the caller stops it with "stop RUNDIR" (by PID)
        srv.proc = None
        print("%d %d" % (srv.port, srv.pid), flush=True)
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        path = os.path.join(os.path.abspath(argv[2]), "smbd.pid")
        try:
            pid = int(open(path).read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return 0
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return 0
            time.sleep(0.1)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return 0
    sys.stderr.write("usage: smbserver.py start RUNDIR [PORT [ro]] | stop RUNDIR\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
