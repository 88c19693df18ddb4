"""
nfsserver.py - a private nfs-ganesha for the tests (test-servers.md section 2):
FSAL VFS, NFSv4 only on 127.0.0.1:PORT, no rpcbind, no root squash (libnfs
sends uid 0, and the key is mode 0600). Started in the foreground with its own
log and pid file, ready when nfs-ls lists the export, stopped with SIGTERM.
Not here: what is exported (the test writes files into export_dir).
"""

import os
import shutil
import signal
import subprocess
import time

import mtatest

CONF = """
NFS_CORE_PARAM {
    Bind_Addr = 127.0.0.1;
    NFS_Port = @PORT@;  MNT_Port = @MNT@;  NLM_Port = @NLM@;  Rquota_Port = @RQ@;
    Enable_NLM = false;  Enable_RQUOTA = false;  Enable_UDP = false;
    Protocols = 4;
    mount_path_pseudo = true;
    Plugins_Dir = "/usr/lib/x86_64-linux-gnu/ganesha";
}
NFSV4 { Graceless = true; RecoveryBackend = fs; RecoveryRoot = "@DIR@/recov";
        Lease_Lifetime = 10; Grace_Period = 10;
        Allow_Numeric_Owners = true; Only_Numeric_Owners = true; }
NFS_KRB5 { Active_krb5 = false; }
EXPORT_DEFAULTS { SecType = sys; Squash = No_Root_Squash; Transports = TCP; }
EXPORT { Export_Id = 1; Path = "@DIR@/export"; Pseudo = "/export"; Access_Type = RO;
         Protocols = 4; Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; } }
LOG { Default_Log_Level = EVENT; }
"""


def available():
    return shutil.which("ganesha.nfsd") is not None and shutil.which("nfs-ls") is not None


class NfsServer:
    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "nfs")
        self.export_dir = os.path.join(self.dir, "export")
        os.makedirs(self.export_dir, exist_ok=True)
        os.makedirs(os.path.join(self.dir, "recov"), exist_ok=True)
        self.port = mtatest.free_port()
        self.proc = None

    def url(self, path="/export"):
        return "nfs://127.0.0.1%s?version=4&nfsport=%d" % (path, self.port)

    def start(self, timeout=None):
        conf = CONF.replace("@DIR@", self.dir).replace("@PORT@", str(self.port))
        for k in ("@MNT@", "@NLM@", "@RQ@"):
            conf = conf.replace(k, str(mtatest.free_port()))
        cf = os.path.join(self.dir, "ganesha.conf")
        with open(cf, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(
            ["ganesha.nfsd", "-F", "-f", cf, "-L", os.path.join(self.dir, "ganesha.log"),
             "-p", os.path.join(self.dir, "ganesha.pid"), "-N", "NIV_EVENT"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + (timeout or mtatest.t(30))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ganesha.nfsd exited: %s" % self.log()[-2000:])
            r = subprocess.run(["nfs-ls", self.url()], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30)
            if r.returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("ganesha.nfsd not ready: %s" % self.log()[-2000:])

    def log(self):
        try:
            with open(os.path.join(self.dir, "ganesha.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
