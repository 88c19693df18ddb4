"""
test_log_tools.py - the standard Postfix log tools read mta's maillog: one mixed
run of the real mtad (sent, deferred, bounced with its notification, rejected at
CONNECT/MAIL/RCPT/END-OF-MESSAGE, TLS in and out, AUTH success and failure, a
lost connection, start and stop) under syslog_name's default (postfix), then
Debian 12's prometheus-postfix-exporter (0.3.0, tailing the file), pflogsumm and
mtail with its example Postfix program. Every counter they expose must equal
what the run did, and the exporter's unsupported-line counter may only count
lines that Postfix itself writes in the same form and that the exporter does not
parse either (each one named below).
Not here: the line formats one by one (test_maillog.py).
"""

import base64
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
import tlskeys  # noqa: E402

# scripts/deps.sh unpacks (does not install) the two Debian packages here: the exporter's
# package would pull in postfix itself
TOOLS = os.environ.get("MTA_TEST_TOOLS", "/var/lib/mta-test-tools")


def tool(pkg, path):
    """tool - PATH inside the unpacked Debian package PKG, else the installed one."""
    for p in (os.path.join(TOOLS, pkg, path.lstrip("/")), path):
        if os.path.exists(p):
            return p
    return None


EXPORTER = tool("prometheus-postfix-exporter", "/usr/bin/prometheus-postfix-exporter")
MTAIL = tool("mtail", "/usr/bin/mtail")
MTAIL_PROG = tool("mtail", "/usr/share/doc/mtail/examples/postfix.mtail")
METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def body(msgid, extra=b""):
    return (b"From: s@src.example\r\nTo: r@dest.example\r\nSubject: tools\r\n"
            b"Message-ID: <" + msgid.encode() + b">\r\n\r\nhello\r\n" + extra)


def noverify():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def parse_metrics(text):
    """parse_metrics - {(name, labels): value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_RE.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def total(metrics, name, label=None):
    """total - the sum of NAME over its series (those whose labels contain LABEL)."""
    return sum(v for (n, lab), v in metrics.items()
               if n == name and (label is None or label in lab))


class LogTools(mtatest.MtaTestCase):
    """One run, three tools (each test reads the same maillog)."""

    maillog = None
    facts = None

    def setUp(self):
        super().setUp()
        if LogTools.maillog is None:
            LogTools.maillog, LogTools.facts = self.mixed_run()

    def smtp_session(self, d, steps, source=None):
        """smtp_session - one plain session: EHLO, then (command, code) STEPS, then QUIT."""
        with d.client(source=source) as c:
            c.ehlo("client.example")
            for cmd, code in steps:
                if isinstance(cmd, bytes):
                    c.send(cmd)
                    self.assertReply(c.reply(), code)
                else:
                    self.assertReply(c.cmd(cmd), code)
            self.assertReply(c.cmd("QUIT"), 221)

    def mixed_run(self):
        """mixed_run - the run; returns the maillog text and what the run did."""
        keys = os.path.join(self.tmp, "keys")
        tlskeys.make_keys(keys)
        sink = smtpsink.Sink(addr="127.0.0.1", port=0, tls_dir=self.tmp,
                             rcpt_map={"defer@dest.example": "451 4.3.0 try again later",
                                       "gone@dest.example": "550 5.1.1 no such user"})
        sink.start()
        self.addCleanup(sink.stop)
        s = tlskeys.tls_settings(keys, **tlskeys.make_sasl(os.path.join(self.tmp, "sasl")))
        s.update({"smart_relay": "[127.0.0.1]:%d" % sink.port, "message_size_limit": "100000",
                  "smtpd_client_connection_count_limit": "2", "smtpd_error_sleep_time": "0",
                  "smtpd_forbid_bare_newline": "reject"})
        d = self.daemon(settings=s)
        run = {"sessions": 1}  # the harness's readiness probe (greeting, QUIT)
        data = ("DATA", 354)

        def msg(msgid, extra=b""):
            return (body(msgid, extra) + b".\r\n", 250)

        # three plain messages: sent, deferred (451 at RCPT), bounced (550 at RCPT)
        for rcpt in ("ok@dest.example", "defer@dest.example", "gone@dest.example"):
            self.smtp_session(d, [("MAIL FROM:<s@src.example>", 250), ("RCPT TO:<%s>" % rcpt, 250),
                                  data, msg(rcpt.split("@")[0] + "@tools")])
        run["sessions"] += 3
        # STARTTLS and AUTH: one good login sends a message, one bad password
        for good in (True, False):
            with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=mtatest.t(10)) as c:
                c.ehlo("client.example")
                c.starttls(context=noverify())
                c.ehlo("client.example")
                pw = tlskeys.SASL_PASS if good else "wrong"
                code, _ = c.docmd("AUTH", "PLAIN " + base64.b64encode(
                    ("\0%s\0%s" % (tlskeys.SASL_USER, pw)).encode()).decode())
                self.assertEqual(code, 235 if good else 535)
                if good:
                    self.assertEqual(c.sendmail("s@src.example", ["ok2@dest.example"],
                                                body("auth@tools")), {})
        run["sessions"] += 2
        # rejected at RCPT (relay access denied), at MAIL (SIZE), at END-OF-MESSAGE (bare LF)
        self.smtp_session(d, [("MAIL FROM:<s@src.example>", 250), ("RCPT TO:<x@y.example>", 554)],
                          source="127.0.0.2")
        self.smtp_session(d, [("MAIL FROM:<s@src.example> SIZE=200000", 552)])
        with d.client() as c:
            c.ehlo("client.example")
            self.assertReply(c.cmd("MAIL FROM:<s@src.example>"), 250)
            self.assertReply(c.cmd("RCPT TO:<ok@dest.example>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(body("barelf@tools", b"bare\nlf\r\n") + b".\r\n")
            self.assertReply(c.reply(), 521)
        # lost connection after RCPT
        with d.client() as c:
            c.ehlo("client.example")
            self.assertReply(c.cmd("MAIL FROM:<s@src.example>"), 250)
            self.assertReply(c.cmd("RCPT TO:<ok@dest.example>"), 250)
        run["sessions"] += 4
        d.wait_log(r"lost connection after RCPT from ")
        # refused at CONNECT: a third concurrent session from one client address
        held = [d.client(source="127.0.0.3"), d.client(source="127.0.0.3")]
        try:
            with d.client(source="127.0.0.3", greet=False) as c:
                self.assertReply(c.reply(), 421)
        finally:
            for c in held:
                self.assertReply(c.cmd("QUIT"), 221)
                c.close()
        run["sessions"] += 3
        d.wait_log(r"\]: disconnect from unknown\[127\.0\.0\.3\]", count=2)
        # deliveries: ok, ok2 and the bounce notification sent; defer deferred; gone bounced
        sink.wait_messages(3, timeout=mtatest.t(20))
        d.wait_log(r"/bounce\[\d+\]: \w+: sender non-delivery notification: \w+$")
        d.wait_log(r"/qmgr\[\d+\]: \w+: removed$", count=4)
        d.wait_log(r"status=deferred", count=1)
        self.assertEqual(d.stop(), 0)
        run.update({
            "queued": 5,            # 4 from clients + 1 non-delivery notification
            "client_lines": 6,      # sessions that reached an accepted RCPT (Postfix: client=)
            "sasl_clients": 1,
            "deliveries": 5,        # ok, ok2, notification (sent), defer (deferred), gone (bounced)
            "sent": 3, "deferred": 1, "bounced": 1, "removed": 4,
            "rejects": 3,           # RCPT 554, MAIL 552, END-OF-MESSAGE bare LF
            "rcpt_rejects_554": 1,
            "sasl_failures": 1,
            "tls_in": 2,
            "tls_out": sink.sessions,  # the sink offers STARTTLS; every delivery uses it
            "lost_rcpt": 1,
        })
        with open(d.maillog_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        return text, run

    # -- prometheus-postfix-exporter --
    def scrape(self, port):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                    timeout=mtatest.t(5)) as r:
            return parse_metrics(r.read().decode())

    def test_prometheus_postfix_exporter(self):
        self.assertTrue(EXPORTER, "prometheus-postfix-exporter missing: run scripts/deps.sh test")
        logfile = os.path.join(self.tmp, "exporter-maillog")
        open(logfile, "w").close()
        port = mtatest.free_port()
        with open(os.path.join(self.tmp, "exporter.out"), "wb") as out:
            p = subprocess.Popen([EXPORTER, "--web.listen-address=127.0.0.1:%d" % port,
                                  "--postfix.logfile_path=" + logfile, "--log.unsupported",
                                  "--postfix.showq_path=" + os.path.join(self.tmp, "no-showq")],
                                 stdout=out, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (p.kill(), p.wait()))
        # it tails from the end of the file: wait until a sentinel line is counted
        deadline = time.monotonic() + mtatest.t(15)
        base = None
        while time.monotonic() < deadline:
            try:
                with open(logfile, "a") as f:
                    f.write("sentinel\n")
                time.sleep(0.2)
                base = self.scrape(port)
                if total(base, "postfix_unsupported_log_entries_total") > 0:
                    break
            except OSError:
                time.sleep(0.2)
        self.assertIsNotNone(base, "exporter did not answer")
        with open(logfile, "a") as f:
            f.write(self.maillog)
        last, stable = None, 0
        while time.monotonic() < deadline + mtatest.t(15) and stable < 3:
            time.sleep(0.3)
            cur = self.scrape(port)
            stable = stable + 1 if cur == last else 0
            last = cur

        def got(name, label=None):
            return total(last, name, label) - total(base, name, label)

        if os.environ.get("LOG_TOOLS_REPORT"):  # the figures for a report, before vs after
            names = sorted({(n, lab) for n, lab in last if n.startswith("postfix_")
                            and not n.endswith("_bucket") and not n.endswith("_sum")})
            for n, lab in names:
                v = last[(n, lab)] - base.get((n, lab), 0)
                if v:
                    sys.stderr.write("exporter %s%s %g\n" % (n, lab, v))

        run = self.facts
        with open(os.path.join(self.tmp, "exporter.out"), encoding="utf-8",
                  errors="replace") as f:
            unsupported = [l.split("Unsupported Line: ", 1)[1] for l in f.read().splitlines()
                           if "Unsupported Line: " in l and "sentinel" not in l]
        detail = "\nunsupported:\n" + "\n".join(unsupported)
        self.assertEqual(got("postfix_smtpd_connects_total"), run["sessions"], detail)
        self.assertEqual(got("postfix_smtpd_disconnects_total"), run["sessions"], detail)
        self.assertEqual(got("postfix_smtpd_messages_processed_total"), run["client_lines"], detail)
        # (0.3.0's pattern "sasl_method=(\S+)" takes the comma too, from Postfix's lines as well)
        self.assertEqual(got("postfix_smtpd_messages_processed_total", 'sasl_method="PLAIN,"'),
                         run["sasl_clients"], detail)
        self.assertEqual(got("postfix_smtpd_messages_rejected_total", 'code="554"'),
                         run["rcpt_rejects_554"], detail)
        self.assertEqual(got("postfix_smtpd_messages_rejected_total"), run["rcpt_rejects_554"],
                         detail)
        self.assertEqual(got("postfix_smtpd_sasl_authentication_failures_total"),
                         run["sasl_failures"], detail)
        self.assertEqual(got("postfix_smtpd_tls_connections_total"), run["tls_in"], detail)
        self.assertEqual(got("postfix_smtpd_connections_lost_total"), run["lost_rcpt"], detail)
        self.assertEqual(got("postfix_smtpd_connections_lost_total", 'after_stage="RCPT"'),
                         run["lost_rcpt"], detail)
        self.assertEqual(got("postfix_cleanup_messages_processed_total"), run["queued"], detail)
        self.assertEqual(got("postfix_qmgr_messages_inserted_size_bytes_count"), run["queued"],
                         detail)
        self.assertEqual(got("postfix_qmgr_messages_inserted_receipients_count"), run["queued"],
                         detail)
        self.assertEqual(got("postfix_qmgr_messages_removed_total"), run["removed"], detail)
        # 0.3.0 observes each of the four delays= stages with an empty stage label
        self.assertEqual(got("postfix_smtp_delivery_delay_seconds_count", 'stage=""'),
                         4 * run["deliveries"], detail)
        self.assertEqual(got("postfix_smtp_status_deferred"), run["deferred"], detail)
        self.assertEqual(got("postfix_smtp_tls_connections_total"), run["tls_out"], detail)
        # Lines Postfix writes in the same form that exporter 0.3.0 has no pattern for:
        # master's start/stop, bounce's notification line, smtpd's reject at MAIL and at
        # END-OF-MESSAGE (it matches RCPT only), the concurrency-limit warning and Cyrus
        # SASL's own complaint about the wrong password (Postfix's xsasl_cyrus_log).
        expected_unsupported = {
            "master": r"^(daemon started -- version \S+, configuration \S+|"
                      r"terminating on signal 15|stopped|running as .*|open-file limit .*)$",
            "bounce": r"^\w+: sender non-delivery notification: \w+$",
            "smtpd": r"^(NOQUEUE: reject: MAIL from \S+: 552 5\.3\.4 .*|"
                     r"\w+: reject: END-OF-MESSAGE from \S+: bare <LF> received; .*|"
                     r"warning: Connection concurrency limit exceeded: 3 from "
                     r"unknown\[127\.0\.0\.3\] for service smtp|"
                     r"warning: SASL authentication failure: Password verification failed)$",
        }
        for line in unsupported:
            m = re.search(r" postfix/(\w+)\[\d+\]: (.*)$", line)
            self.assertIsNotNone(m, "not a postfix/ line: " + line)
            self.assertIn(m.group(1), expected_unsupported, line)
            self.assertRegex(m.group(2), expected_unsupported[m.group(1)], line)
        self.assertEqual(got("postfix_unsupported_log_entries_total", 'service="smtpd"'), 4, detail)
        self.assertEqual(got("postfix_unsupported_log_entries_total", 'service="bounce"'), 1, detail)
        self.assertEqual(got("postfix_unsupported_log_entries_total", 'service=""'), 0, detail)
        for svc in ("cleanup", "qmgr", "smtp"):
            self.assertEqual(got("postfix_unsupported_log_entries_total", 'service="%s"' % svc),
                             0, detail)

    # -- pflogsumm --
    def test_pflogsumm(self):
        path = os.path.join(self.tmp, "maillog")
        with open(path, "w") as f:
            f.write(self.maillog)
        out = subprocess.run(["pflogsumm", "--smtpd-stats", path], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, check=False,
                             timeout=60).stdout.decode("utf-8", "replace")

        def num(word):
            m = re.search(r"^\s*(\d+)\s+%s\b" % word, out, re.M)
            self.assertIsNotNone(m, word + "\n" + out)
            return int(m.group(1))

        run = self.facts
        if os.environ.get("LOG_TOOLS_REPORT"):
            sys.stderr.write("pflogsumm %s\n" % {w: num(w) for w in (
                "received", "delivered", "deferred", "bounced", "rejected", "connections")})
        self.assertEqual(num("received"), run["client_lines"], out)
        self.assertEqual(num("delivered"), run["sent"], out)
        self.assertEqual(num("deferred"), run["deferred"], out)
        self.assertEqual(num("bounced"), run["bounced"], out)
        self.assertEqual(num("rejected"), run["rejects"], out)
        self.assertEqual(num("connections"), run["sessions"], out)
        # a reject line it cannot take apart makes pflogsumm's Perl warn (the old bare <LF> form)
        self.assertNotIn("uninitialized value", out)

    # -- mtail --
    def test_mtail_postfix_program(self):
        self.assertTrue(MTAIL and MTAIL_PROG, "mtail or its postfix.mtail missing: run "
                        "scripts/deps.sh test")
        progs = os.path.join(self.tmp, "progs")
        os.mkdir(progs)
        shutil.copy(MTAIL_PROG, progs)
        path = os.path.join(self.tmp, "maillog")
        with open(path, "w") as f:
            f.write(self.maillog)
        r = subprocess.run([MTAIL, "--progs", progs, "--logs", path, "--one_shot",
                            "--one_shot_format=prometheus", "--address", "127.0.0.1",
                            "--port", str(mtatest.free_port())],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, r.stderr.decode("utf-8", "replace")[-2000:])
        m = parse_metrics(out)
        run = self.facts
        if os.environ.get("LOG_TOOLS_REPORT"):
            for (n, lab), v in sorted(m.items()):
                if v and not n.endswith("_bucket") and not n.endswith("_sum"):
                    sys.stderr.write("mtail %s%s %g\n" % (n, lab, v))
        self.assertEqual(total(m, "postfix_smtpd_connects_total"), run["sessions"], out)
        self.assertEqual(total(m, "postfix_smtpd_disconnects_total"), run["sessions"], out)
        self.assertEqual(total(m, "postfix_smtpd_messages_processed_total"), run["client_lines"],
                         out)
        self.assertEqual(total(m, "postfix_smtpd_messages_processed_total", 'sasl_username="user"'),
                         run["sasl_clients"], out)
        self.assertEqual(total(m, "postfix_smtpd_messages_rejected_total"),
                         run["rcpt_rejects_554"], out)
        self.assertEqual(total(m, "postfix_smtpd_sasl_authentication_failures_total"),
                         run["sasl_failures"], out)
        self.assertEqual(total(m, "postfix_smtpd_tls_connections_total"), run["tls_in"], out)
        self.assertEqual(total(m, "postfix_smtpd_connections_lost_total", 'after_stage="RCPT"'),
                         run["lost_rcpt"], out)
        self.assertEqual(total(m, "postfix_smtpd_connections_lost_total"), run["lost_rcpt"], out)
        self.assertEqual(total(m, "postfix_cleanup_messages_processed_total"), run["queued"], out)
        self.assertEqual(total(m, "postfix_qmgr_messages_removed_total"), run["removed"], out)
        self.assertEqual(total(m, "postfix_smtp_tls_connections_total"), run["tls_out"], out)


if __name__ == "__main__":
    mtatest.main()
