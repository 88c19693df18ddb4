"""
test_delivery_lifecycle.py - what happens to a message over its life in the
queue, seen from outside through smart_relay sinks on free loopback ports: a
message that stays deferred past maximal_queue_lifetime is returned to its
sender (Postfix's `status=expired, returned to sender` and an RFC 3464 report
that reaches the sender's sink); the start-up warning that cc_mta is ignored
when smart_relay is set (and no copy goes there); the early 5.3.4 bounce when
the server's EHLO SIZE is smaller than the message (no MAIL, no DATA for it);
RET=HDRS returns only the headers; two messages back to back share one
connection, which is closed with QUIT after 2 s idle.
Not here: the basic relay cases and DSN parameters (test_delivery_relay.py), MX
delivery (test_delivery_mx.py).
"""

import email
import email.policy
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

FAST_RETRY = {"minimal_backoff_time": "1s", "maximal_backoff_time": "2s", "queue_run_delay": "1s"}


class DeliveryLifecycle(mtatest.MtaTestCase):

    def sink(self, **kw):
        s = smtpsink.Sink("127.0.0.1", 0, **kw).start()
        self.addCleanup(s.stop)
        return s

    def relay_daemon(self, sink, **extra):
        settings = {"smart_relay": "[127.0.0.1]:%d" % sink.port}
        settings.update(FAST_RETRY)
        settings.update(extra)
        return self.daemon(settings)

    def send(self, d, sender, rcpts, body, mail_options=(), rcpt_options=()):
        s = d.smtp()
        try:
            s.ehlo("client.example")
            s.sendmail(sender, rcpts, body, mail_options=list(mail_options),
                       rcpt_options=list(rcpt_options))
        finally:
            s.quit()

    def mtactl(self, d, *args):
        return subprocess.run([mtatest.MTACTL, "-c", d.config_path] + list(args),
                              capture_output=True, text=True, timeout=t(20))

    def bounce_to(self, sink, sender, timeout):
        """bounce_to - the one notification (null sender) the sink got for SENDER, parsed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with sink.lock:
                found = [m for m in sink.messages if m.mail_from == ""]
            if found:
                break
            time.sleep(0.05)
        self.assertEqual(len(found), 1, "notifications at the sink: %r" % sink.messages)
        self.assertEqual(found[0].rcpts, [sender])
        msg = email.message_from_bytes(found[0].data, policy=email.policy.default)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertEqual(msg["Subject"], "Undelivered Mail Returned to Sender")
        self.assertEqual(msg["To"], sender)
        return msg

    def status_fields(self, msg):
        """status_fields - the message/delivery-status blocks as dicts (first: per message)."""
        parts = list(msg.iter_parts())
        self.assertEqual(parts[1].get_content_type(), "message/delivery-status")
        return [dict(b.items()) for b in parts[1].get_payload()]

    # ------------------------------------------------------------------

    def test_expired_message_is_returned_to_sender(self):
        sink = self.sink(rcpt_map={"late@dst.test": "451 4.2.0 <late@dst.test>: mailbox busy"})
        d = self.relay_daemon(sink, maximal_queue_lifetime="3s")
        t0 = time.monotonic()
        self.send(d, "sender@src.test", ["late@dst.test"],
                  b"Subject: too late\r\nMessage-Id: <late-1@src.test>\r\n\r\nwill expire\r\n")
        qid = next(iter(self.wait_queued(d, 1)))
        # deferred first (not bounced at once) ...
        d.wait_log(r"\b%s: to=<late@dst\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*"
                   r"dsn=4\.2\.0, status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 451 "
                   r"4\.2\.0 <late@dst\.test>: mailbox busy \(in reply to RCPT TO command\)\)$"
                   % (qid, sink.port), t(10))
        # ... then, past the lifetime, returned (Postfix qmgr's wording)
        line = d.wait_log(r"postfix/qmgr\[\d+\]: %s: from=<sender@src\.test>, status=expired, "
                          r"returned to sender$" % qid, t(20))[0]
        # (ages are whole seconds, as in Postfix: 3s means "after more than 2s")
        self.assertGreater(time.monotonic() - t0, 2.0, line)
        self.assertGreaterEqual(len(d.log_lines(r"\b%s: to=<late@dst\.test>.*status=deferred" % qid)),
                                2, d.maillog())
        self.assertEqual(d.log_lines(r"\b%s: to=<late@dst\.test>.*status=(sent|bounced)" % qid), [])
        nl = d.wait_log(r"\b%s: sender non-delivery notification: [0-9A-F]+$" % qid, t(10))[0]
        newid = nl.rsplit(" ", 1)[1]
        msg = self.bounce_to(sink, "sender@src.test", t(10))
        fields = self.status_fields(msg)
        self.assertEqual(fields[0]["X-Postfix-Queue-ID"], qid)
        self.assertEqual(len(fields), 2, fields)
        r = fields[1]
        self.assertEqual(r["Final-Recipient"], "rfc822; late@dst.test")
        self.assertEqual(r["Action"], "failed")
        self.assertEqual(r["Status"], "4.2.0")  # the last temporary reason, as Postfix reports it
        self.assertIn("451 4.2.0 <late@dst.test>: mailbox busy", r["Diagnostic-Code"])
        returned = list(msg.iter_parts())[2]
        self.assertEqual(returned.get_content_type(), "message/rfc822")
        self.assertEqual(returned.get_payload()[0]["Subject"], "too late")
        # nothing for the recipient ever arrived; both messages leave the queue
        self.assertEqual([m for m in sink.messages if m.mail_from != ""], [])
        d.wait_log(r"\b%s: removed$" % qid, t(10))
        d.wait_log(r"\b%s: removed$" % newid, t(10))
        self.assertEqual(self.mtactl(d, "queue").stdout, "Mail queue is empty\n")

    def test_cc_mta_ignored_with_smart_relay_warns_at_start(self):
        relay = self.sink()
        cc = self.sink()
        d = self.relay_daemon(relay, cc_mta="[127.0.0.1]:%d" % cc.port)
        d.wait_log(r" postfix/qmgr\[%d\]: warning: cc_mta = \[127\.0\.0\.1\]:%d is ignored because "
                   r"smart_relay is set$" % (d.pid(), cc.port), t(5))
        # logged at start, before the daemon says it has started (the log writer may not have
        # written that line yet when the warning shows up, so wait for it too)
        d.wait_log(r" daemon started -- ", t(5))
        log = d.maillog()
        self.assertLess(log.index("is ignored because smart_relay is set"),
                        log.index("daemon started"), log)
        self.send(d, "s@src.test", ["r@dst.test"], b"Subject: cc\r\n\r\nbody\r\n")
        self.assertEqual(len(relay.wait_messages(1, t(10))), 1)
        d.wait_log(r": removed$", t(5))
        time.sleep(t(0.5))
        self.assertEqual(cc.sessions, 0, "cc_mta got a connection although smart_relay is set")
        self.assertEqual(relay.messages[0].rcpts, ["r@dst.test"])

    def test_size_limit_of_server_bounces_before_mail(self):
        sink = self.sink(size=10000)
        d = self.relay_daemon(sink)
        body = b"Subject: big\r\nMessage-Id: <big-1@src.test>\r\n\r\n" + (b"y" * 76 + b"\r\n") * 260
        # RET=HDRS keeps the notification under the server's limit, so it can be delivered
        self.send(d, "s@src.test", ["r@dst.test"], body, mail_options=["RET=HDRS"])
        qid = next(iter(self.wait_queued(d, 1)))
        line = d.wait_log(r"\b%s: to=<r@dst\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*"
                          r"dsn=5\.3\.4, status=bounced \(message size (\d+) exceeds size limit "
                          r"10000 of server 127\.0\.0\.1\[127\.0\.0\.1\]\)$" % (qid, sink.port),
                          t(10))[0]
        size = int(re.search(r"message size (\d+) exceeds", line).group(1))
        self.assertGreater(size, len(body))  # plus the Received: header
        msg = self.bounce_to(sink, "s@src.test", t(10))
        r = self.status_fields(msg)[1]
        self.assertEqual(r["Action"], "failed")
        self.assertEqual(r["Status"], "5.3.4")
        # the message itself was never offered: the only MAIL and DATA are the notification's
        with sink.lock:
            cmds = list(sink.commands)
        mails = [c for c in cmds if c.upper().startswith("MAIL ")]
        self.assertEqual(len(mails), 1, cmds)
        self.assertTrue(mails[0].upper().startswith("MAIL FROM:<>"), cmds)
        self.assertEqual(len([c for c in cmds if c.upper() == "DATA"]), 1, cmds)
        self.assertEqual([m for m in sink.messages if m.mail_from == "s@src.test"], [])

    def test_ret_hdrs_returns_only_the_headers(self):
        sink = self.sink(rcpt_map={"bad@dst.test": "550 5.1.1 <bad@dst.test>: User unknown"})
        d = self.relay_daemon(sink)
        original = (b"Subject: headers only\r\nMessage-Id: <hdrs-1@src.test>\r\n"
                    b"X-Marker: keep-me\r\n\r\nSECRET-BODY-LINE\r\n")
        self.send(d, "s@src.test", ["bad@dst.test"], original, mail_options=["RET=HDRS"])
        d.wait_log(r"to=<bad@dst\.test>, .*dsn=5\.1\.1, status=bounced", t(10))
        msg = self.bounce_to(sink, "s@src.test", t(10))
        parts = list(msg.iter_parts())
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/delivery-status", "text/rfc822-headers"])
        hdrs = parts[2].get_content()
        if isinstance(hdrs, bytes):
            hdrs = hdrs.decode("utf-8", "replace")
        self.assertIn("Subject: headers only", hdrs)
        self.assertIn("X-Marker: keep-me", hdrs)
        # the body is not returned, anywhere in the notification
        self.assertNotIn(b"SECRET-BODY-LINE", sink.messages[0].data)
        self.assertEqual(self.status_fields(msg)[1]["Action"], "failed")

    def test_back_to_back_messages_share_one_connection(self):
        sink = self.sink()
        d = self.relay_daemon(sink)
        self.send(d, "s@src.test", ["one@dst.test"], b"Subject: one\r\n\r\nfirst\r\n")
        d.wait_log(r"to=<one@dst\.test>, .*status=sent", t(10))
        # the second within the idle time (2 s) of the first connection
        self.send(d, "s@src.test", ["two@dst.test"], b"Subject: two\r\n\r\nsecond\r\n")
        d.wait_log(r"to=<two@dst\.test>, .*status=sent", t(10))
        self.assertEqual(len(sink.wait_messages(2, t(5))), 2)
        self.assertEqual(sink.sessions, 1, "two connections for two back-to-back messages")
        with sink.lock:
            cmds = [c.split(" ", 1)[0].split(":", 1)[0].upper() for c in sink.commands]
        # one greeting exchange; no RSET between two successful transactions
        self.assertEqual(cmds.count("EHLO"), 1, cmds)
        self.assertEqual(cmds.count("RSET"), 0, cmds)
        self.assertEqual(cmds.count("MAIL"), 2, cmds)
        self.assertNotIn("QUIT", cmds)
        # idle for longer than 2 s: the connection is closed politely ...
        deadline = time.monotonic() + t(6)
        while time.monotonic() < deadline:
            with sink.lock:
                if "QUIT" in sink.commands:
                    break
            time.sleep(0.1)
        self.assertIn("QUIT", sink.commands, "the idle connection was not closed with QUIT")
        # ... and the next message opens a new one
        self.send(d, "s@src.test", ["three@dst.test"], b"Subject: three\r\n\r\nthird\r\n")
        d.wait_log(r"to=<three@dst\.test>, .*status=sent", t(10))
        self.assertEqual(sink.sessions, 2)


if __name__ == "__main__":
    mtatest.main()
