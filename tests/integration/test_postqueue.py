"""
test_postqueue.py - the hold queue and Postfix's queue commands, driven as an
administrator and a local user do: postsuper -h keeps a message out of delivery
across a kill -9 and restart, a flush and a queue run, and postsuper -H lets it
reach a sink; postsuper -d ALL (and -d - from stdin) empties the queue;
postqueue -p prints Postfix 3.7's mailq layout byte for byte (with the ! and *
markers and the deferral reason), mailq on an empty queue says so; postqueue -j
has Postfix's fields and the very bytes of /api/queue; an unprivileged user
lists the queue through a setgid postqueue but postsuper refuses them; the web
UI, /api/queue, /api/stats and /metrics show the held message; postqueue's
exit codes when the mail system is down and for bad requests.
Not here: mtactl's paging of the listing (test_http_api.py / test_delivery_relay.py).
"""

import grp
import http.client
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

BUILD = os.path.dirname(os.path.abspath(mtatest.MTACTL))
POSTQUEUE = os.environ.get("POSTQUEUE") or os.path.join(BUILD, "postqueue")
POSTSUPER = os.environ.get("POSTSUPER") or os.path.join(BUILD, "postsuper")
FAST_RETRY = {"minimal_backoff_time": "1s", "maximal_backoff_time": "2s", "queue_run_delay": "1s"}
EX_USAGE, EX_UNAVAILABLE, EX_SOFTWARE = 64, 69, 70


def fetch(d, path):
    """fetch - GET PATH from D's HTTP service: (status, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", d.ui_port, timeout=t(10))
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


class PostQueue(mtatest.MtaTestCase):

    def setUp(self):
        super().setUp()
        for p in (POSTQUEUE, POSTSUPER):
            if not os.path.exists(p):
                self.skipTest("%s not built" % p)

    # -- helpers --
    def run_prog(self, d, prog, *args, stdin=None, env=None, prefix=()):
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run(list(prefix) + [prog, "-c", d.config_path] + list(args),
                              input=stdin, capture_output=True, text=True, timeout=t(60), env=e)

    def postqueue(self, d, *args, **kw):
        return self.run_prog(d, POSTQUEUE, *args, **kw)

    def postsuper(self, d, *args, **kw):
        return self.run_prog(d, POSTSUPER, *args, **kw)

    def send(self, d, sender, rcpts, subject="hold test"):
        """send - queue one message over SMTP; returns its queue ID."""
        with d.client() as c:
            c.ehlo()
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender).code, 250)
            for r in rcpts:
                self.assertEqual(c.cmd("RCPT TO:<%s>" % r).code, 250)
            self.assertEqual(c.cmd("DATA").code, 354)
            c.send(("Subject: %s\r\nFrom: <%s>\r\n\r\nbody\r\n.\r\n" % (subject, sender)).encode())
            r = c.reply()
            self.assertEqual(r.code, 250, str(r))
            return mtatest.queue_id_of(r)

    def listing(self, d):
        """listing - postqueue -j as {queue_id: object}."""
        r = self.postqueue(d, "-j")
        self.assertEqual(r.returncode, 0, r.stderr)
        return {o["queue_id"]: o for o in map(json.loads, r.stdout.splitlines())}

    def wait_state(self, d, qid, pred, what, timeout=t(20)):
        """wait_state - wait until PRED(message object of QID) holds; returns the object."""
        deadline = time.monotonic() + timeout
        m = None
        while time.monotonic() < deadline:
            m = self.listing(d).get(qid)
            if m is not None and pred(m):
                return m
            time.sleep(0.1)
        self.fail("%s: not %s within %.0fs: %r" % (qid, what, timeout, m))

    def wait_deferred(self, d, qid):
        return self.wait_state(d, qid, lambda m: m["queue_name"] == "deferred" and all(
            r.get("delay_reason") for r in m["recipients"]), "deferred with a reason")

    # -- hold and release --
    def test_hold_survives_kill9_restart_and_flush_release_delivers(self):
        sink = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(sink.stop)
        d = self.daemon(dict(FAST_RETRY))  # smart_relay: the harness's dead port (deferred)
        held = self.send(d, "alice@example.org", ["bob@example.net"], "held one")
        other = self.send(d, "alice@example.org", ["carol@example.net"], "not held")
        self.wait_deferred(d, held)
        r = self.postsuper(d, "-h", held)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "postsuper: Placed on hold: 1 message\n")
        self.assertEqual(self.listing(d)[held]["queue_name"], "hold")
        d.wait_log(r"postsuper\[\d+\]: %s: placed on hold$" % held)
        # a crash right after postsuper returned, then a start with a next hop that works
        d.kill()
        d.user_settings["smart_relay"] = "[127.0.0.1]:%d" % sink.port
        d.start()
        got = sink.wait_messages(1, timeout=t(20))
        self.assertEqual([m.rcpts for m in got], [["carol@example.net"]])
        self.assertEqual(self.wait_state(d, held, lambda m: True, "listed")["queue_name"], "hold")
        # neither a flush of everything, nor of this message, nor queue runs deliver it
        self.assertEqual(self.postqueue(d, "-f").returncode, 0)
        self.assertEqual(self.postqueue(d, "-i", held).returncode, 0)
        time.sleep(t(3))  # three queue runs (queue_run_delay 1s)
        self.assertEqual(len(sink.messages), 1, sink.messages)
        out = self.postqueue(d, "-p").stdout
        self.assertIn("%s!" % held, out)
        self.assertNotIn(other, out)
        # a graceful restart keeps it held too
        self.assertEqual(d.stop(), 0)
        d.start()
        self.wait_state(d, held, lambda m: m["queue_name"] == "hold", "held after restart")
        time.sleep(t(2))
        self.assertEqual(len(sink.messages), 1, sink.messages)
        # released: into the deferred queue, delivered at the next queue run
        r = self.postsuper(d, "-H", held)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "postsuper: Released from hold: 1 message\n")
        got = sink.wait_messages(2, timeout=t(20))
        self.assertEqual(sorted(m.rcpts[0] for m in got), ["bob@example.net", "carol@example.net"])
        d.wait_log(r"postsuper\[\d+\]: %s: released from hold$" % held)
        d.wait_log(r": %s: to=<bob@example.net>, .*status=sent" % held)
        # the counts as postsuper prints them: already released / unknown IDs count 0
        r = self.postsuper(d, "-H", held, "-h", "ALL", "-d", "0123456789ABCDEF")
        self.assertEqual(r.stderr, "postsuper: Deleted: 0 messages\n"
                                   "postsuper: Placed on hold: 0 messages\n"
                                   "postsuper: Released from hold: 0 messages\n")
        r = self.postsuper(d, "-h", "not/an-id")
        self.assertEqual(r.stderr, "postsuper: warning: invalid mail queue id: not/an-id\n"
                                   "postsuper: Placed on hold: 0 messages\n")

    def test_mtactl_hold_release(self):
        d = self.daemon()
        qid = self.send(d, "a@example.org", ["b@example.net"])
        self.wait_deferred(d, qid)
        mtactl = [mtatest.MTACTL, "-c", d.config_path]
        r = subprocess.run(mtactl + ["hold", qid], capture_output=True, text=True, timeout=t(20))
        self.assertEqual((r.returncode, r.stdout), (0, "postsuper: Placed on hold: 1 message\n"))
        r = subprocess.run(mtactl + ["hold", "0000000000000000"], capture_output=True, text=True,
                           timeout=t(20))
        self.assertEqual(r.returncode, 1)
        self.assertIn("0000000000000000: no such queue ID", r.stderr)
        self.assertIn("%s!" % qid, subprocess.run(mtactl + ["queue"], capture_output=True,
                                                  text=True, timeout=t(20)).stdout)
        r = subprocess.run(mtactl + ["release", "ALL"], capture_output=True, text=True,
                           timeout=t(20))
        self.assertEqual((r.returncode, r.stdout),
                         (0, "postsuper: Released from hold: 1 message\n"))

    # -- delete --
    def test_postsuper_delete_all_and_stdin(self):
        d = self.daemon()
        ids = [self.send(d, "a@example.org", ["r%d@example.net" % i]) for i in range(4)]
        r = self.postsuper(d, "-d", "-", stdin="%s\n" % ids[0])
        self.assertEqual((r.returncode, r.stderr), (0, "postsuper: Deleted: 1 message\n"))
        self.assertEqual(self.postsuper(d, "-h", ids[1]).returncode, 0)
        r = self.postsuper(d, "-d", "ALL")
        self.assertEqual((r.returncode, r.stderr), (0, "postsuper: Deleted: 3 messages\n"))
        for qid in ids:
            d.wait_log(r"postsuper\[\d+\]: %s: removed$" % qid)
        deadline = time.monotonic() + t(10)
        while d.queued_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(set(d.queued_ids()), set())
        r = self.postqueue(d, "-p")
        self.assertEqual((r.returncode, r.stdout), (0, "Mail queue is empty\n"))

    # -- the listing --
    def expected_mailq(self, msgs):
        """expected_mailq - Postfix 3.7 showq_compat (long queue IDs) for MSGS (-j objects)."""
        out = "%-17s %8s %-19s %s\n" % ("----Queue ID-----", "--Size--", "---Arrival Time----",
                                        "--Sender/Recipient------")
        for i, m in enumerate(msgs):
            if i:
                out += "\n"
            mark = {"active": "*", "hold": "!"}.get(m["queue_name"], "")
            when = time.asctime(time.localtime(m["arrival_time"]))[:19]
            out += "%-17s %8d %19.19s %s\n" % (m["queue_id"] + mark, m["message_size"], when,
                                               m["sender"] or "MAILER-DAEMON")
            saved = ""
            for r in m["recipients"]:
                why = r.get("delay_reason", "")
                if why != saved:
                    saved = why
                    show = why or "reason unavailable"
                    out += "%*s(%s)\n" % (max(76 - len(show), 0), "", show)
                out += "%-17s %8s %-19s %s\n" % ("", "", "", r["address"])
        total = sum(m["message_size"] for m in msgs)
        return out + "\n-- %d Kbytes in %d Request%s.\n" % (total // 1024, len(msgs),
                                                             "" if len(msgs) == 1 else "s")

    def test_mailq_layout_and_json_fields(self):
        d = self.daemon()
        r = self.postqueue(d, "-p")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "Mail queue is empty\n", ""))
        self.assertEqual(self.postqueue(d, "-j").stdout, "")
        a = self.send(d, "alice@example.org", ["bob@example.net"])
        b = self.send(d, "", ["x@example.net", "y@example.net"])
        self.wait_deferred(d, a)
        self.wait_deferred(d, b)
        self.assertEqual(self.postsuper(d, "-h", b).returncode, 0)
        r = self.postqueue(d, "-j")
        self.assertEqual(r.returncode, 0, r.stderr)
        objs = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual([o["queue_id"] for o in objs], [a, b])
        for o in objs:
            self.assertEqual(list(o), ["queue_name", "queue_id", "arrival_time", "message_size",
                                       "forced_expire", "sender", "recipients"])
            self.assertIs(o["forced_expire"], False)
            for rc in o["recipients"]:
                self.assertEqual(list(rc), ["address", "delay_reason"])
                self.assertIn("Connection refused", rc["delay_reason"])
        self.assertEqual([o["queue_name"] for o in objs], ["deferred", "hold"])
        self.assertEqual(objs[1]["sender"], "")
        # Postfix's -j bytes: ", " and ": " separators; /api/queue is the same listing
        self.assertTrue(r.stdout.startswith('{"queue_name": "deferred", "queue_id": "%s", ' % a))
        st, body = fetch(d, "/api/queue")
        self.assertEqual((st, body.decode()), (200, r.stdout))
        # mailq: the literal layout, with the ! of the held one and the reason lines
        out = self.postqueue(d, "-p").stdout
        self.assertEqual(out, self.expected_mailq(objs))
        self.assertIn("\n%-17s " % (b + "!"), out)
        self.assertIn("                                               bob@example.net\n", out)
        # MAILER-DAEMON for the null sender, and the reason right-aligned to column 78
        reason = objs[0]["recipients"][0]["delay_reason"]
        self.assertIn("\n%s(%s)\n" % (" " * (76 - len(reason)), reason), out)

    def test_active_marker(self):
        # a next hop that accepts the connection but never greets: the message stays active
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        self.addCleanup(silent.close)
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % silent.getsockname()[1]})
        qid = self.send(d, "a@example.org", ["b@example.net"])
        m = self.wait_state(d, qid, lambda m: m["queue_name"] == "active", "active")
        out = self.postqueue(d, "-p").stdout
        self.assertEqual(out, self.expected_mailq([m]))
        self.assertIn("\n%s* " % qid, "\n" + out)

    # -- who may do what --
    def test_unprivileged_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (to run as nobody and make a setgid copy)")
        try:
            group = grp.getgrnam("mtadrop")
        except KeyError:
            self.skipTest("group mtadrop missing (scripts/test.sh creates it)")
        d = self.daemon()
        qid = self.send(d, "a@example.org", ["b@example.net"])
        os.chmod(d.config_path, 0o644)
        bindir = os.path.join(self.tmp, "bin")
        os.mkdir(bindir, 0o755)
        pq = os.path.join(bindir, "postqueue")
        shutil.copy(POSTQUEUE, pq)
        nobody = pwd.getpwnam("nobody")
        as_nobody = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                     "--clear-groups"]
        # without the group: the socket is out of reach (not "down": EX_SOFTWARE)
        os.chmod(pq, 0o755)
        r = self.run_prog(d, pq, "-p", prefix=as_nobody)
        self.assertEqual(r.returncode, EX_SOFTWARE, r.stderr)
        self.assertIn("postqueue: fatal: Connect to the mta control service", r.stderr)
        # installed as Postfix's: setgid setgid_group
        os.chown(pq, 0, group.gr_gid)
        os.chmod(pq, 0o2755)
        r = self.run_prog(d, pq, "-p", prefix=as_nobody)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(qid, r.stdout)
        self.assertTrue(r.stdout.endswith(" Kbytes in 1 Request.\n"), r.stdout)
        r = subprocess.run(as_nobody + [pq, "-j"], capture_output=True, text=True,
                           timeout=t(30), env=dict(os.environ, MAIL_CONFIG=d.config_path))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["queue_id"], qid)
        self.assertEqual(self.run_prog(d, pq, "-f", prefix=as_nobody).returncode, 0)
        # a configuration file of the user's own does not get the group
        own = os.path.join(self.tmp, "own.cf")
        shutil.copy(d.config_path, own)
        os.chown(own, nobody.pw_uid, nobody.pw_gid)
        r = subprocess.run(as_nobody + [pq, "-c", own, "-p"], capture_output=True, text=True,
                           timeout=t(30))
        self.assertEqual(r.returncode, EX_SOFTWARE, r.stderr)
        # postsuper: the superuser's only
        r = self.run_prog(d, POSTSUPER, "-d", "ALL", prefix=as_nobody)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "postsuper: fatal: use of this command is reserved for the "
                                   "superuser\n")
        self.assertIn(qid, self.listing(d))

    # -- UI and API --
    def test_ui_and_api_show_hold(self):
        d = self.daemon()
        qid = self.send(d, "a@example.org", ["b@example.net"])
        self.wait_deferred(d, qid)
        self.assertEqual(self.postsuper(d, "-h", qid).returncode, 0)
        st, body = fetch(d, "/queue")
        self.assertEqual(st, 200)
        self.assertIn('<span class="tag q-hold">hold</span>', body.decode())
        st, body = fetch(d, "/api/queue")
        self.assertEqual(json.loads(body)["queue_name"], "hold")
        st, body = fetch(d, "/api/stats")
        self.assertEqual(json.loads(body)["mqueue_held"], 1)
        st, body = fetch(d, "/metrics")
        self.assertIn("\nmta_mqueue_held 1\n", body.decode())
        self.assertEqual(self.postsuper(d, "-H", "ALL").returncode, 0)
        st, body = fetch(d, "/api/stats")
        self.assertEqual(json.loads(body)["mqueue_held"], 0)

    # -- exit codes --
    def test_exit_codes(self):
        d = self.daemon(start=False)
        d.smtp_port, d.ui_port = mtatest.free_port(), mtatest.free_port()
        d.write_config()  # a configuration whose daemon is not running
        r = self.postqueue(d, "-p")
        self.assertEqual(r.returncode, EX_UNAVAILABLE)
        self.assertTrue(r.stderr.startswith(
            "postqueue: fatal: Queue report unavailable - mail system is down ("), r.stderr)
        r = self.postqueue(d, "-f")
        self.assertEqual((r.returncode, r.stderr),
                         (EX_UNAVAILABLE,
                          "postqueue: fatal: Cannot flush mail queue - mail system is down\n"))
        r = subprocess.run([POSTQUEUE], capture_output=True, text=True, timeout=t(10))
        self.assertEqual(r.returncode, EX_USAGE)
        self.assertEqual(r.stderr, "postqueue: fatal: usage: postqueue -f | postqueue -i queueid"
                                   " | postqueue -j | postqueue -p | postqueue -s site\n")
        r = self.postqueue(d, "-i", "no/such")
        self.assertEqual((r.returncode, r.stderr),
                         (EX_USAGE, 'postqueue: fatal: Cannot flush queue ID - invalid name: '
                                    '"no/such"\n'))
        r = self.postqueue(d, "-s", "example.net")
        self.assertEqual((r.returncode, r.stderr),
                         (EX_UNAVAILABLE, 'postqueue: fatal: Flush service is not configured '
                                          'for destination "example.net"\n'))
        r = self.postsuper(d, "-d", "ALL")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith("postsuper: fatal: mail system is down: "), r.stderr)


if __name__ == "__main__":
    mtatest.main()
