"""
test_http_startup.py - start-up errors of the HTTP service and the mon terminal as
the administrator sees them: a bad ui_port, a ui_port that cannot be bound, a
mon_terminal that is not ip:port. Each stops mtad with a non-zero exit and the
exact message of appliance-spec.md on standard error.
Not here: the running service (test_http_api.py).
"""

import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import t  # noqa: E402


class HttpStartup(mtatest.MtaTestCase):
    def run_mtad(self, settings):
        """run_mtad - mtad with SETTINGS that must fail to start: (exit code, stderr)."""
        d = self.daemon(settings=settings, start=False)
        d.smtp_port = mtatest.free_port()
        if d.ui_port is None:
            d.ui_port = mtatest.free_port()
        d.write_config()
        try:
            p = subprocess.run([mtatest.MTAD, "-c", d.config_path], capture_output=True,
                               timeout=t(20), cwd=self.tmp)
        except subprocess.TimeoutExpired:
            self.fail("mtad kept running with %r" % settings)
        return p.returncode, p.stderr.decode("utf-8", "replace")

    def test_bad_ui_port(self):
        for v in ("0", "65536", "-1", "http"):
            rc, err = self.run_mtad({"ui_port": v})
            self.assertNotEqual(rc, 0, v)
            self.assertIn("Error: ui_port value must be between 1 and 65535.", err, v)

    def test_ui_port_in_use(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            rc, err = self.run_mtad({"ui_port": str(port)})
        self.assertNotEqual(rc, 0)
        self.assertIn("Error: Failed to initialize UI backend.", err)

    def test_ui_port_on_foreign_address(self):
        # 192.0.2.1 (TEST-NET-1) is not an address of this host: bind fails
        rc, err = self.run_mtad({"in_address": "192.0.2.1"})
        self.assertNotEqual(rc, 0)
        self.assertIn("Error:", err)

    def test_mon_terminal_must_be_an_ip_literal(self):
        for v in ("statsd.example:8125", "127.0.0.1", "127.0.0.1:99999"):
            rc, err = self.run_mtad({"mon_terminal": v})
            self.assertNotEqual(rc, 0, v)
            self.assertIn("mon_terminal", err, v)


if __name__ == "__main__":
    mtatest.main()
