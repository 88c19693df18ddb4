"""
tlskeys.py - helpers for the TLS/AUTH/key tests: certificates made with the
openssl CLI (as appliance-spec.md "Server certificates" tells a user), a key
volume directory, TLS settings for mtatest.Daemon, and a private Cyrus SASL
configuration (sasldb2 made by saslpasswd2, smtpd.conf pointing at it).
Not here: any test; the NFS server (nfsserver.py).
"""

import os
import shutil
import subprocess

import mtatest

SASL_USER = "user"
SASL_PASS = "s3cret-Pass"


def openssl(*args, stdin=None):
    subprocess.run(["openssl"] + list(args), check=True, input=stdin,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_keys(dirname, cn=mtatest.HOSTNAME, key="server.key", cert="server.pem"):
    """make_keys - an RSA key (mode 0600) and a self-signed certificate in DIRNAME."""
    os.makedirs(dirname, exist_ok=True)
    k, c = os.path.join(dirname, key), os.path.join(dirname, cert)
    openssl("genrsa", "-out", k, "2048")
    os.chmod(k, 0o600)
    openssl("req", "-x509", "-new", "-key", k, "-out", c, "-days", "2", "-subj", "/CN=" + cn)
    return k, c


def tls_settings(keydir, **extra):
    s = {"ssl_disabled": "no", "key_volume": keydir, "smtps_port": str(mtatest.free_port())}
    s.update(extra)
    return s


def make_sasl(dirname, user=SASL_USER, password=SASL_PASS, realm=mtatest.HOSTNAME):
    """make_sasl - DIRNAME/smtpd.conf and DIRNAME/sasldb2 holding USER@REALM."""
    if not shutil.which("saslpasswd2"):
        raise RuntimeError("saslpasswd2 missing (sasl2-bin)")
    os.makedirs(dirname, exist_ok=True)
    db = os.path.join(dirname, "sasldb2")
    subprocess.run(["saslpasswd2", "-c", "-p", "-f", db, "-u", realm, user],
                   input=(password + "\n").encode(), check=True)
    with open(os.path.join(dirname, "smtpd.conf"), "w") as f:
        f.write("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: %s\n"
                "mech_list: PLAIN LOGIN\n" % db)
    # mtad checks passwords as mail_owner (Debian: sasldb2 root:sasl 0640, mail_owner in sasl)
    mtatest.give_to_mail_owner(db)
    return {"smtpd_sasl_auth_enable": "yes", "smtpd_sasl_config_dir": dirname}
