"""
test_milter.py - smtpd_milters against a scripted milter (scriptmilter.py, the milter
protocol spoken by the test itself) on loopback: every modification action as seen in the
relayed message at a sink, the macros and events a milter gets, reject/tempfail/custom
SMFIR_REPLYCODE texts passed to the client exactly, discard, quarantine (held: mailq),
and a dead, slow or crashing milter under each milter_default_action with Postfix's log
line, while another SMTP session goes on unstalled.
Not here: real filters (test_milter_filters.py: OpenDKIM, rspamd).
"""

import email
import email.policy
import json
import os
import smtplib
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import scriptmilter  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

MSG = (b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: hello\r\nX-Drop: me\r\n"
       b"X-Keep: 1\r\n\r\nbody line one\r\nbody line two\r\n")


class MilterTest(mtatest.MtaTestCase):

    def sink(self):
        s = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(s.stop)
        return s

    def milter(self, script=None, **kw):
        m = scriptmilter.ScriptMilter(script, **kw).start()
        self.addCleanup(m.stop)
        return m

    def start(self, milter_spec, sink=None, **settings):
        conf = {"smtpd_milters": milter_spec}
        if sink:
            conf["smart_relay"] = "[127.0.0.1]:%d" % sink.port
        conf.update(settings)
        return self.daemon(conf)

    def send(self, d, rcpts=("b@dst.test",), body=MSG, sender="a@src.test"):
        """send - one message; returns (code, text) of the end of data (or the first refusal)."""
        s = d.smtp()
        try:
            s.ehlo("client.example")
            code, text = s.mail(sender)
            if code != 250:
                return code, text
            for r in rcpts:
                code, text = s.rcpt(r)
                if code != 250:
                    return code, text
            try:
                return s.data(body)
            except smtplib.SMTPDataError as e:  # DATA itself refused
                return e.smtp_code, e.smtp_error
        finally:
            try:
                s.quit()
            except smtplib.SMTPServerDisconnected:
                pass

    def mailq(self, d):
        return subprocess.run([mtatest.MTACTL, "-c", d.config_path, "queue"],
                              capture_output=True, text=True, timeout=t(20)).stdout

    # --- modifications ---

    def test_every_modification_reaches_the_relayed_message(self):
        sink = self.sink()
        m = self.milter({"eom": [("addheader", "X-Added", "yes"),
                                 ("insheader", 0, "X-First", "top"),
                                 ("chgheader", 1, "Subject", "changed"),
                                 ("chgheader", 1, "X-Drop", ""),
                                 ("replbody", b"new body\r\nsecond\r\n"),
                                 ("addrcpt", "<extra@dst.test>"),
                                 ("delrcpt", "<b@dst.test>"),
                                 ("chgfrom", "<bounce@src.test>"),
                                 ("continue",)]})
        d = self.start(m.spec, sink)
        code, text = self.send(d, rcpts=("b@dst.test", "c@dst.test"))
        self.assertEqual(code, 250, text)
        msg = sink.wait_messages(1, t(15))[0]
        self.assertEqual(msg.mail_from, "bounce@src.test")
        self.assertEqual(sorted(msg.rcpts), ["c@dst.test", "extra@dst.test"])
        self.assertTrue(msg.data.startswith(b"X-First: top\r\n"), msg.data[:200])
        p = email.message_from_bytes(msg.data, policy=email.policy.compat32)
        self.assertEqual(p["Subject"], "changed")
        self.assertEqual(p["X-Added"], "yes")
        self.assertIsNone(p["X-Drop"])
        self.assertEqual(p["X-Keep"], "1")
        self.assertTrue(msg.data.endswith(b"\r\n\r\nnew body\r\nsecond\r\n"), msg.data[-80:])
        # the milter saw the whole message and Postfix's macros
        hdrs = [e.strings() for e in m.find("header")]
        self.assertIn(["Subject", "hello"], hdrs)
        self.assertTrue(any(h[0] == "Received" for h in hdrs))
        body = b"".join(e.data for e in m.find("body"))
        self.assertEqual(body, b"body line one\r\nbody line two\r\n")
        conn = m.find("connect")[0]
        self.assertEqual(conn.macros.get("j"), d.settings()["hostname"] or conn.macros.get("j"))
        self.assertEqual(m.find("mail")[0].strings()[0], "<a@src.test>")
        self.assertEqual(m.find("rcpt")[0].macros.get("{rcpt_addr}"), "b@dst.test")
        qid = m.find("eom")[0].macros.get("i")
        self.assertRegex(qid, r"^[0-9A-F]{16}$")
        self.assertIn(qid, text.decode())

    def test_large_message_body_streams_to_the_milter(self):
        sink = self.sink()
        m = self.milter({"eom": [("addheader", "X-Seen", "big"), ("continue",)]})
        d = self.start(m.spec, sink)
        body = b"".join(b"line %06d " % i + b"x" * 60 + b"\r\n" for i in range(20000))
        code, text = self.send(d, body=b"Subject: big\r\n\r\n" + body)
        self.assertEqual(code, 250, text)
        got = b"".join(e.data for e in m.find("body"))
        self.assertEqual(got, body)
        self.assertTrue(all(len(e.data) <= 65535 for e in m.find("body")))
        msg = sink.wait_messages(1, t(20))[0]
        self.assertIn(b"X-Seen: big\r\n", msg.data)
        self.assertTrue(msg.data.endswith(body))

    # --- refusals ---

    def test_replies_reach_the_client_exactly(self):
        m = self.milter({"rcpt": ("replycode", "550 5.7.0 Custom %% refusal text"),
                         "mail": ("continue",)})
        d = self.start(m.spec)
        c = d.client()
        c.ehlo()
        self.assertEqual(c.cmd("MAIL FROM:<a@src.test>").code, 250)
        r = c.cmd("RCPT TO:<b@dst.test>")
        self.assertEqual(r.full(), "550 5.7.0 Custom % refusal text")
        d.wait_log(r"\S+: milter-reject: RCPT from \S+\[127\.0\.0\.1\]: 550 5\.7\.0 "
                   r"Custom % refusal text; from=<a@src\.test> to=<b@dst\.test> proto=ESMTP "
                   r"helo=<client\.example>")
        c.close()

    def test_bad_milter_settings_are_named(self):
        d = self.daemon({"smtpd_milters": "milter.example:8891",
                         "milter_default_action": "bounce"}, start=False)
        d.write_config()
        r = subprocess.run([mtatest.MTACTL, "-c", d.config_path, "check"], capture_output=True,
                           text=True, timeout=t(20))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("for smtpd_milters: Milter service needs transport:endpoint instead of "
                      "\"milter.example:8891\"", r.stderr)
        self.assertIn("for milter_default_action: expected tempfail, accept or reject", r.stderr)

    def test_refused_helo_is_not_remembered(self):
        m = self.milter({"helo": ("replycode", "550 5.7.1 Bad HELO")})
        d = self.start(m.spec)
        c = d.client()
        self.assertEqual(c.cmd("EHLO bad.example").full(), "550 5.7.1 Bad HELO")
        # smtpd_helo_required: the refused name does not count as a HELO
        self.assertEqual(c.cmd("MAIL FROM:<a@src.test>").full(),
                         "503 5.5.1 Error: send HELO/EHLO first")
        c.close()

    def test_tempfail_and_reject_at_each_stage(self):
        for stage, reply, want in (("mail", ("tempfail",),
                                    "451 4.7.1 Service unavailable - try again later"),
                                   ("data", ("reject",), "550 5.7.1 Command rejected"),
                                   ("eom", ("reject",), "550 5.7.1 Command rejected"),
                                   ("header", ("tempfail",),
                                    "451 4.7.1 Service unavailable - try again later")):
            with self.subTest(stage=stage):
                m = self.milter({stage: reply})
                d = self.start(m.spec)
                code, text = self.send(d)
                self.assertEqual("%d %s" % (code, text.decode()), want)
                self.assertEqual(d.queued_ids(), set())
                d.stop()

    def test_discard_and_quarantine(self):
        sink = self.sink()
        m = self.milter({"eom": ("discard",)})
        d = self.start(m.spec, sink)
        code, text = self.send(d)
        self.assertEqual(code, 250, text)
        d.wait_log(r"milter-discard: END-OF-MESSAGE from \S+: milter triggers DISCARD action")
        time.sleep(1)
        self.assertEqual(sink.messages, [])
        self.assertEqual(d.queued_ids(), set())
        d.stop()
        m2 = self.milter({"eom": [("quarantine", "looks odd"), ("continue",)]})
        d2 = self.start(m2.spec, sink)
        code, text = self.send(d2)
        self.assertEqual(code, 250, text)
        qid = mtatest.queue_id_of(mtatest.Reply(code, [text.decode()]))
        d2.wait_log(r"%s: milter-hold: END-OF-MESSAGE from \S+: looks odd" % qid)
        q = self.mailq(d2)
        self.assertRegex(q, r"(?m)^%s!" % qid)  # Postfix's mark of a held message
        time.sleep(1)
        self.assertEqual(sink.messages, [])

    def test_counters_on_metrics_api_and_dashboard(self):
        sink = self.sink()
        # per message: accepted, rejected, tempfailed, discarded, quarantined (in that order)
        verdicts = iter([("continue",), ("reject",), ("tempfail",), ("discard",),
                         [("quarantine", "held"), ("continue",)]])
        m = self.milter({"eom": lambda: next(verdicts)})
        d = self.start(m.spec, sink)
        for want in (250, 550, 451, 250, 250):
            self.assertEqual(self.send(d)[0], want)
        base = "http://127.0.0.1:%d" % d.ui_port
        metrics = urllib.request.urlopen(base + "/metrics", timeout=t(5)).read().decode()
        for name, n in (("accepted", 2), ("rejected", 1), ("tempfailed", 1), ("discarded", 1),
                        ("quarantined", 1)):
            self.assertRegex(metrics, r"(?m)^mta_milter_%s_total %d$" % (name, n))
        stats = json.loads(urllib.request.urlopen(base + "/api/stats", timeout=t(5)).read())
        self.assertEqual((stats["milter_accepted"], stats["milter_rejected"],
                          stats["milter_tempfailed"], stats["milter_discarded"],
                          stats["milter_quarantined"]), (2, 1, 1, 1, 1))
        page = urllib.request.urlopen(base + "/", timeout=t(5)).read().decode()
        self.assertRegex(page, r'Milter rejected</div><div class="value" data-k="milter_rejected"'
                               r' data-f="int">1<')

    def test_non_smtpd_milters_filter_local_mail(self):
        sendmail = os.environ.get("SENDMAIL") or os.path.join(os.path.dirname(mtatest.MTAD),
                                                              "sendmail")
        if not os.path.exists(sendmail):
            self.skipTest("sendmail not built")
        sink = self.sink()
        verdicts = iter([[("addheader", "X-Local", "filtered"), ("addrcpt", "<c@dst.test>"),
                          ("continue",)], ("reject",)])
        m = self.milter({"eom": lambda: next(verdicts)})
        d = self.daemon({"non_smtpd_milters": m.spec,
                         "smart_relay": "[127.0.0.1]:%d" % sink.port})

        def submit(subject):
            r = subprocess.run([sendmail, "-C", d.config_path, "-f", "a@src.test", "b@dst.test"],
                               input=b"Subject: %s\n\nlocal body\n" % subject,
                               capture_output=True, timeout=t(30))
            self.assertEqual(r.returncode, 0, r.stderr)
        submit(b"one")
        msg = sink.wait_messages(1, t(20))[0]
        self.assertIn(b"X-Local: filtered\r\n", msg.data)
        self.assertEqual(sorted(msg.rcpts), ["b@dst.test", "c@dst.test"])
        self.assertEqual(m.find("connect")[0].macros.get("_"), "localhost [127.0.0.1]")
        submit(b"two")
        d.wait_log(r"[0-9A-F]+: milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: "
                   r"550 5\.7\.1 Command rejected; from=<a@src\.test>")
        time.sleep(1)
        self.assertEqual(len(sink.messages), 1)
        self.assertEqual(os.listdir(os.path.join(d.data_volume, "maildrop")), [])
        # smtpd_milters is not asked for local mail, nor non_smtpd_milters for SMTP mail
        self.assertEqual(self.send(d)[0], 250)
        self.assertEqual(len(m.find("eom")), 2)

    # --- a milter that fails ---

    def test_dead_milter_follows_default_action(self):
        port = mtatest.free_port()
        spec = "inet:127.0.0.1:%d" % port
        sink = self.sink()
        for action, want in (("tempfail", 451), ("accept", 250)):
            with self.subTest(action=action):
                d = self.start(spec, sink, milter_default_action=action)
                c = d.client(greet=False)
                self.assertEqual(c.reply().code, 220)  # Postfix: 4xx at connect keeps the banner
                if want == 451:  # every later event gets the default reply, as in Postfix
                    r = c.cmd("EHLO client.example")
                    self.assertEqual(r.full(), "451 4.7.1 Service unavailable - try again later")
                    d.wait_log(r"warning: connect to Milter service %s: Connection refused"
                               % spec)
                    d.wait_log(r"NOQUEUE: milter-reject: HELO from \S+: 451 4\.7\.1 Service "
                               r"unavailable - try again later; proto=ESMTP")
                else:
                    c.ehlo()
                    self.assertEqual(c.cmd("MAIL FROM:<a@src.test>").code, 250)
                    c.close()
                    code, text = self.send(d)
                    self.assertEqual(code, 250, text)
                    self.assertEqual(len(sink.wait_messages(1, t(10))), 1)
                    d.wait_log(r"warning: connect to Milter service %s: Connection refused"
                               % spec)
                c.close()
                d.stop()

    def test_slow_milter_times_out_without_stalling_others(self):
        sink = self.sink()
        # the first connection's milter stalls at end of message; later ones answer at once
        m = self.milter({"eom": [("sleep_first", 4), ("continue",)]})
        d = self.start(m.spec, sink, milter_content_timeout="2s")
        result = {}

        def slow():
            result["r"] = self.send(d)
        th = threading.Thread(target=slow)
        th.start()
        deadline = time.time() + t(10)
        while not m.find("eom") and time.time() < deadline:
            time.sleep(0.05)
        # meanwhile a second session is served at once
        t0 = time.time()
        code, text = self.send(d)
        self.assertEqual(code, 250, text)
        self.assertLess(time.time() - t0, 1.5)
        th.join(t(20))
        self.assertEqual(result["r"][0], 451)
        self.assertEqual(result["r"][1].decode(), "4.7.1 Service unavailable - try again later")
        d.wait_log(r"warning: [0-9A-F]+: milter %s: can't read SMFIC_BODYEOB reply packet "
                   r"header: Connection timed out" % m.spec)

    def test_crashing_milter(self):
        for action, want in (("tempfail", 451), ("reject", 550), ("accept", 250)):
            with self.subTest(action=action):
                m = self.milter({"rcpt": ("close",)})
                d = self.start(m.spec, milter_default_action=action)
                code, text = self.send(d)
                self.assertEqual(code, want, text)
                d.wait_log(r"warning: milter %s: can't read SMFIC_RCPT reply packet header"
                           % m.spec)
                d.stop()


if __name__ == "__main__":
    mtatest.main()
