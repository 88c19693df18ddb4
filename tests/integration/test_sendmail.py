"""
test_sendmail.py - local submission as programs use it (docs/sendmail.md): a message piped
to build/sendmail exactly as PHP's mail() (`sendmail -t -i`), Debian's cron (`sendmail
-FCronDaemon -i -B8BITMIME -oem root`) and Java's sendmail transports (`sendmail -oi -t`,
CRLF lines) run it reaches a sink through smart_relay with Bcc: removed and the header
completed as Postfix's cleanup does; the maillog has pickup's `uid=N from=<...>`; with mtad
stopped sendmail still exits 0 and the message goes out after the start; an unprivileged
user (nobody) submits through a setgid-mtadrop postdrop (and cannot without it); a maildrop
file crafted by hand goes to corrupt/ and nothing is sent; `sendmail -bs` speaks SMTP;
Postfix's exit codes and messages for a message without recipients; mailq/-bp/-q run
postqueue; newaliases exits 0.
Not here: postqueue and postsuper themselves (test_postqueue.py).
"""

import grp
import os
import re
import shutil
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

SENDMAIL = os.environ.get("SENDMAIL") or os.path.join(os.path.dirname(mtatest.MTAD), "sendmail")
BUILD = os.path.dirname(os.path.abspath(SENDMAIL))
HOST = mtatest.HOSTNAME
PICKUP_RE = r"/pickup\[\d+\]: ([0-9A-F]+): uid=%d from=<%s>$"


class SendmailTest(mtatest.MtaTestCase):

    def setUp(self):
        super().setUp()
        if not os.path.exists(SENDMAIL):
            self.skipTest("sendmail not built (%s)" % SENDMAIL)

    def sink(self):
        s = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(s.stop)
        return s

    def relay_daemon(self, sink, settings=None, start=True):
        s = {"smart_relay": "[127.0.0.1]:%d" % sink.port}
        s.update(settings or {})
        return self.daemon(s, start=start)

    def sendmail(self, d, args, data, user=None, config=None, argv0=None):
        """sendmail - run build/sendmail ARGS with -C the daemon's configuration (as USER,
        a (uid, gid) pair, when given), DATA on its standard input."""
        kw = {}
        if user and mtatest.SANITIZE:
            # LeakSanitizer cannot run in a setgid process (postdrop): it stops with an error
            kw["env"] = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
        if user:
            uid, gid = user

            def drop():
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            kw["preexec_fn"] = drop
        prog = SENDMAIL if argv0 is None else os.path.join(BUILD, argv0)
        return subprocess.run([prog, "-C", config or d.config_path] + list(args), input=data,
                              capture_output=True, timeout=t(30), **kw)

    def message(self, m):
        """message - the sink's message M as (its header with LF line ends, its body as sent)."""
        text = m.data.decode("utf-8", "replace")
        head, _, body = text.partition("\r\n\r\n")
        return head.replace("\r\n", "\n"), body

    def test_php_mail_t_i(self):
        """PHP's mail(): sendmail -t -i, bare LF lines, To:/Subject: and extra headers;
        a lone dot does not end the message; Bcc: is a recipient and is removed."""
        sink = self.sink()
        d = self.relay_daemon(sink)
        data = (b"To: alice@dst.test\nSubject: php test\nX-PHP-Originating-Script: 0:mail.php\n"
                b"Bcc: hidden@dst.test\nMIME-Version: 1.0\n"
                b"Content-Type: text/plain; charset=UTF-8\n\nline one\n.\nline after dot\n")
        p = self.sendmail(d, ["-t", "-i"], data)
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        msgs = sink.wait_messages(1, t(15))
        self.assertEqual(len(msgs), 1)
        m = msgs[0]
        self.assertEqual(m.mail_from, "root@" + HOST)
        self.assertEqual(sorted(m.rcpts), ["alice@dst.test", "hidden@dst.test"])
        head, body = self.message(m)
        self.assertNotIn("hidden@dst.test", m.data.decode())
        self.assertNotRegex(head, r"(?im)^bcc:")
        lines = head.split("\n")
        self.assertRegex(lines[0], r"^Received: by %s \(mta, from userid 0\)$" % re.escape(HOST))
        self.assertRegex(lines[1], r"^\tid [0-9A-F]+; \w{3}, [ \d]\d \w{3} \d{4} ")
        self.assertIn("Subject: php test", lines)
        self.assertIn("X-PHP-Originating-Script: 0:mail.php", lines)
        self.assertRegex(head, r"(?m)^Message-Id: <\d{14}\.[0-9A-F]+@%s>$" % re.escape(HOST))
        self.assertRegex(head, r"(?m)^Date: ")
        self.assertRegex(head, r"(?m)^From: .*<root@%s>$" % re.escape(HOST))
        self.assertEqual(body, "line one\r\n.\r\nline after dot\r\n")
        self.assertNotIn(b"\n", m.data.replace(b"\r\n", b""))  # LF became CRLF everywhere
        d.wait_log(r"/pickup\[\d+\]: [0-9A-F]+: uid=0 from=<root>$")
        log = d.maillog()
        qid = re.search(PICKUP_RE % (0, "root"), log, re.M).group(1)
        self.assertRegex(log, r"/cleanup\[\d+\]: %s: message-id=<\d{14}\.%s@" % (qid, qid))
        self.assertRegex(log, r"/qmgr\[\d+\]: %s: from=<root@%s>, size=\d+, nrcpt=2 "
                         r"\(queue active\)" % (qid, re.escape(HOST)))
        d.wait_log(r"%s: to=<hidden@dst\.test>, .*status=sent" % qid)
        self.assertEqual(os.listdir(os.path.join(d.data_volume, "maildrop")), [])

    def test_real_php_mail(self):
        """PHP's own mail() (Debian 12's php-cli) with sendmail_path pointing at our sendmail:
        the header PHP builds, its CRLF/LF mix, additional headers with Cc:/Bcc:, and the
        additional parameter -f (envelope sender) all come out as PHP users expect."""
        php = shutil.which("php")
        self.assertIsNotNone(php, "php-cli missing: run scripts/deps.sh test")
        sink = self.sink()
        d = self.relay_daemon(sink)
        script = ('$ok = mail("alice@dst.test", "php real", "line one\n.\nlast line\n", '
                  '"From: App <app@src.test>\r\nCc: carol@dst.test\r\n'
                  'Bcc: hidden@dst.test\r\nX-Mailer: PHP/" . phpversion(), '
                  '"-fbounces@src.test"); exit($ok ? 0 : 3);')
        p = subprocess.run([php, "-n", "-d", "sendmail_path=%s -t -i -C %s"
                            % (SENDMAIL, d.config_path), "-r", script],
                           capture_output=True, timeout=t(30))
        self.assertEqual((p.returncode, p.stderr), (0, b""), p.stdout)
        msgs = sink.wait_messages(1, t(15))
        self.assertEqual(len(msgs), 1)
        m = msgs[0]
        self.assertEqual(m.mail_from, "bounces@src.test")
        self.assertEqual(sorted(m.rcpts), ["alice@dst.test", "carol@dst.test", "hidden@dst.test"])
        head, body = self.message(m)
        self.assertNotRegex(head, r"(?im)^bcc:")
        self.assertRegex(head, r"(?m)^To: alice@dst\.test$")
        self.assertRegex(head, r"(?m)^Subject: php real$")
        self.assertRegex(head, r"(?m)^From: App <app@src\.test>$")
        self.assertRegex(head, r"(?m)^Cc: carol@dst\.test$")
        self.assertRegex(head, r"(?m)^X-Mailer: PHP/8")
        self.assertRegex(head, r"(?m)^Message-Id: <")
        # PHP writes "\n" after the message text; Postfix keeps it, and so do we
        self.assertEqual(body, "line one\r\n.\r\nlast line\r\n\r\n")
        d.wait_log(PICKUP_RE % (0, r"bounces@src\.test"))

    def test_cron(self):
        """Debian cron's exact invocation; the recipient "root" gets @myhostname; cron's own
        From: stays; BODY=8BITMIME from -B8BITMIME."""
        sink = self.sink()
        d = self.relay_daemon(sink)
        data = ("From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@%s> echo hi\n"
                "MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
                "Content-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\n"
                "X-Cron-Env: <HOME=/root>\n\nhi \u00e9t\u00e9\n" % HOST).encode()
        p = self.sendmail(d, ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], data)
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        m = sink.wait_messages(1, t(15))[0]
        self.assertEqual(m.rcpts, ["root@" + HOST])
        self.assertIn("BODY=8BITMIME", m.mail_params.upper())
        head, body = self.message(m)
        self.assertEqual(re.findall(r"(?m)^From: .*$", head), ["From: root (Cron Daemon)"])
        self.assertEqual(body, "hi \u00e9t\u00e9\r\n")

    def test_java_oi_t_crlf_and_fullname(self):
        """Java's sendmail transports: -oi -t with CRLF lines (not doubled), To: and Cc:
        with display names, a group and a comment; and -F for a message without From:."""
        sink = self.sink()
        d = self.relay_daemon(sink)
        data = (b"To: \"Doe, Jane\" <jane@dst.test>, team: a@dst.test, b@dst.test;\r\n"
                b"Cc: carl@dst.test (Carl)\r\n\t, <dora@dst.test>\r\nSubject: java\r\n\r\n"
                b"body\r\n")
        p = self.sendmail(d, ["-oi", "-t", "-F", "Job Runner", "-f", "app@src.test"], data)
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        m = sink.wait_messages(1, t(15))[0]
        self.assertEqual(m.mail_from, "app@src.test")
        self.assertEqual(sorted(m.rcpts), ["a@dst.test", "b@dst.test", "carl@dst.test",
                                           "dora@dst.test", "jane@dst.test"])
        head, body = self.message(m)
        self.assertEqual(body, "body\r\n")
        self.assertIn("From: Job Runner <app@src.test>", head.split("\n"))
        self.assertNotIn(b"\r\r", m.data)
        d.wait_log(PICKUP_RE % (0, re.escape("app@src.test")))

    def test_daemon_down_then_delivered_after_start(self):
        """sendmail with mtad stopped: exit 0, the message waits in the maildrop (durably) and
        goes out after the start."""
        sink = self.sink()
        d = self.relay_daemon(sink)
        self.assertEqual(d.stop(), 0)
        p = self.sendmail(d, ["-i", "late@dst.test"], b"Subject: while down\n\nqueued\n")
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        self.assertEqual(len(os.listdir(os.path.join(d.data_volume, "maildrop"))), 1)
        time.sleep(0.5)
        self.assertEqual(sink.messages, [])
        d.start()
        m = sink.wait_messages(1, t(15))[0]
        self.assertEqual(m.rcpts, ["late@dst.test"])
        self.assertIn(b"Subject: while down\r\n", m.data)
        d.wait_log(r"/pickup\[\d+\]: [0-9A-F]+: uid=0 from=<root>$")

    def test_stop_while_picking_up_loses_nothing(self):
        """SIGTERM while pickup works through a full maildrop: mtad exits 0, and after the
        restart every message is delivered (each at least once, none lost)."""
        sink = self.sink()
        d = self.relay_daemon(sink)
        self.assertEqual(d.stop(), 0)
        n = 100
        for i in range(n):
            p = self.sendmail(d, ["-i", "many@dst.test"], b"Subject: n%d\n\nx\n" % i)
            self.assertEqual((p.returncode, p.stderr), (0, b""))
        d.start()
        self.assertEqual(d.stop(), 0)  # mid-way, most likely
        d.start()
        deadline = time.monotonic() + t(30)
        while time.monotonic() < deadline:
            got = {re.search(rb"Subject: (n\d+)", m.data).group(1) for m in sink.messages}
            if len(got) == n:
                break
            time.sleep(0.1)
        self.assertEqual(got, {b"n%d" % i for i in range(n)})
        self.assertEqual(os.listdir(os.path.join(d.data_volume, "maildrop")), [])
        self.assertEqual(os.listdir(os.path.join(d.data_volume, "corrupt")), [])

    def unprivileged_setup(self, d, setgid):
        """unprivileged_setup - a command directory with a copy of postdrop (setgid mtadrop
        with mode 2755 when SETGID) and a configuration nobody can read that names it."""
        bindir = os.path.join(self.tmp, "bin")
        os.makedirs(bindir, exist_ok=True)
        os.chmod(bindir, 0o755)
        pd = os.path.join(bindir, "postdrop")
        shutil.copy(os.path.join(BUILD, "postdrop"), pd)
        if setgid:
            os.chown(pd, 0, grp.getgrnam("mtadrop").gr_gid)
            os.chmod(pd, 0o2755)
        else:
            os.chmod(pd, 0o755)
        conf = os.path.join(self.tmp, "public.cf")
        with open(d.config_path) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text + "command_directory = %s\n" % bindir)
        os.chmod(conf, 0o644)
        return conf

    def test_unprivileged_user_through_setgid_postdrop(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to run as nobody and to make postdrop setgid")
        try:
            grp.getgrnam("mtadrop")
        except KeyError:
            self.skipTest("group mtadrop missing (scripts/test.sh creates it)")
        sink = self.sink()
        d = self.relay_daemon(sink)
        nobody = (65534, 65534)
        conf = self.unprivileged_setup(d, setgid=False)
        p = self.sendmail(d, ["-i", "u@dst.test"], b"Subject: no\n\nx\n", user=nobody,
                          config=conf)
        self.assertEqual(p.returncode, 77, p.stderr)  # EX_NOPERM: the maildrop is closed
        self.assertRegex(p.stderr.decode(), r"postdrop: fatal: .*maildrop.*Permission denied")
        conf = self.unprivileged_setup(d, setgid=True)
        p = self.sendmail(d, ["-i", "u@dst.test"], b"Subject: yes\n\nx\n", user=nobody,
                          config=conf)
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        m = sink.wait_messages(1, t(15))[0]
        self.assertEqual(m.mail_from, "nobody@" + HOST)
        self.assertIn(b"(mta, from userid 65534)", m.data)
        d.wait_log(PICKUP_RE % (65534, "nobody"))

    def drop_file(self, d, name, content, second_link=False):
        """drop_file - put a maildrop file in place by rename, as postdrop does (with a
        second hard link elsewhere when SECOND_LINK)."""
        md = os.path.join(d.data_volume, "maildrop")
        tmp = os.path.join(md, ".tmp.test." + name)
        with open(tmp, "wb") as f:
            f.write(content)
        os.chmod(tmp, 0o644)
        if second_link:
            os.link(tmp, os.path.join(self.tmp, "second-link"))
        os.rename(tmp, os.path.join(md, name))

    def test_crafted_files_go_to_corrupt(self):
        sink = self.sink()
        d = self.relay_daemon(sink)
        body = b"Subject: x\n\nx\n"

        def good(uid=0, rcpt=b"v@dst.test", extra=b""):
            return (b"MAILDROP 1\nuid %d\ntime 1700000000\nsender root\n%srcpt %s\n"
                    b"content %d\n%send\n" % (uid, extra, rcpt, len(body), body))
        bad = {
            "BADUID": good(uid=4242),                               # not the file's owner
            "BADRCPT": good(rcpt=b"v@dst.test\x01evil"),            # control byte
            "BADSPACE": good(rcpt=b"v@dst.test> evil"),             # '>' and a space
            "BADLEN": good().replace(b"content %d" % len(body), b"content 999"),
            "BADMAGIC": b"From: x\n" + good(),
            "BADORDER": good().replace(b"uid 0\ntime 1700000000\n", b"time 1700000000\nuid 0\n"),
            "BADNUM": good().replace(b"content %d" % len(body), b"content -1"),
        }
        for name, content in bad.items():
            self.drop_file(d, name, content)
        self.drop_file(d, "BADLINKS", good(), second_link=True)  # valid but for its 2 links
        bad["BADLINKS"] = None
        md = os.path.join(d.data_volume, "maildrop")
        os.symlink("/etc/passwd", os.path.join(md, ".tmp.link"))
        os.rename(os.path.join(md, ".tmp.link"), os.path.join(md, "BADLINK"))
        for name in list(bad) + ["BADLINK"]:
            d.wait_log(r"/pickup\[\d+\]: warning: maildrop/%s: .*; moved to corrupt/maildrop-%s$"
                       % (name, name), timeout=t(15))
        corrupt = os.listdir(os.path.join(d.data_volume, "corrupt"))
        for name in list(bad) + ["BADLINK"]:
            self.assertIn("maildrop-" + name, corrupt)
        self.assertEqual(os.listdir(md), [])
        log = d.maillog()
        self.assertRegex(log, r"maildrop/BADUID: uid 4242 does not match the file's owner 0;")
        self.assertRegex(log, r"maildrop/BADLINK: a symbolic link;")
        self.assertRegex(log, r"maildrop/BADLINKS: 2 hard links;")
        self.assertRegex(log, r"maildrop/BADMAGIC: not a maildrop file \(first line\);")
        self.assertNotRegex(log, r"/pickup\[\d+\]: [0-9A-F]+: uid=")
        # a good file after the bad ones is delivered: the checks refuse only what is wrong
        self.drop_file(d, "GOOD", good())
        m = sink.wait_messages(1, t(15))[0]
        self.assertEqual(m.rcpts, ["v@dst.test"])
        time.sleep(0.3)
        self.assertEqual(len(sink.messages), 1)

    def test_bs_speaks_smtp(self):
        sink = self.sink()
        d = self.relay_daemon(sink)
        dialogue = (b"EHLO client.example\r\nMAIL FROM:<bs@src.test> BODY=8BITMIME\r\n"
                    b"RCPT TO:<bs@dst.test>\r\n"
                    b"DATA\r\nSubject: bs\r\n\r\n..dot stuffed\r\n.\r\nRCPT TO:<x@dst.test>\r\n"
                    b"QUIT\r\n")
        p = self.sendmail(d, ["-bs"], dialogue)
        self.assertEqual(p.returncode, 0, p.stderr)
        codes = re.findall(rb"(?m)^(\d{3})[ ]", p.stdout)
        self.assertEqual(codes, [b"220", b"250", b"250", b"250", b"354", b"250", b"503", b"221"],
                         p.stdout)
        self.assertIn(b"250 2.0.0 Ok: queued", p.stdout)
        self.assertIn(b"503 5.5.1 Error: need MAIL command", p.stdout)
        m = sink.wait_messages(1, t(15))[0]
        self.assertEqual((m.mail_from, m.rcpts), ("bs@src.test", ["bs@dst.test"]))
        self.assertIn("BODY=8BITMIME", m.mail_params.upper())
        self.assertIn(b"\r\n\r\n.dot stuffed\r\n", m.data)

    def test_exit_codes_and_messages(self):
        d = self.daemon()
        p = self.sendmail(d, ["-t", "-i"], b"Subject: nobody to send to\n\nx\n")
        self.assertEqual(p.returncode, 64)  # EX_USAGE, as Postfix's sendmail
        self.assertEqual(p.stderr, b"sendmail: fatal: root(0): No recipient addresses found "
                                   b"in message header\n")
        p = self.sendmail(d, ["-i"], b"x\n")
        self.assertEqual(p.returncode, 64)
        self.assertIn(b"Recipient addresses must be specified on the command line or via the "
                      b"-t option", p.stderr)
        p = self.sendmail(d, ["-Bbogus", "x@dst.test"], b"x\n")
        self.assertEqual((p.returncode, p.stderr),
                         (64, b"sendmail: fatal: -B option needs 8BITMIME or 7BIT\n"))
        p = self.sendmail(d, ["-i", "-o", "message_size_limit=1", "x@dst.test"], b"x\n")
        self.assertEqual(p.returncode, 0, p.stderr)  # -o... is Sendmail's option: ignored
        big = b"Subject: big\n\n" + (b"x" * 999 + b"\n") * 10300
        p = self.sendmail(d, ["-i", "x@dst.test"], big)
        self.assertEqual(p.returncode, 69, p.stderr)  # EX_UNAVAILABLE
        self.assertIn(b"message file too big", p.stderr)
        if not mtatest.SANITIZE:  # ASan reserves far more address space than this limit
            # one 150 MB line, no LF, under a 100 MB address-space limit: refused for its size
            # at once, never read whole into memory (nor cut short and queued)
            import resource

            def small():
                resource.setrlimit(resource.RLIMIT_AS, (100 << 20, 100 << 20))
            p = subprocess.run([SENDMAIL, "-C", d.config_path, "-i", "x@dst.test"],
                               input=b"Subject: one line\n\n" + b"y" * (150 << 20),
                               capture_output=True, timeout=t(60), preexec_fn=small)
            self.assertEqual(p.returncode, 69, p.stderr)
            self.assertIn(b"message file too big", p.stderr)
        missing = os.path.join(self.tmp, "missing.cf")
        p = self.sendmail(d, ["-i", "x@dst.test"], b"x\n", config=missing)
        self.assertEqual(p.returncode, 75, p.stderr)  # EX_TEMPFAIL, as Postfix's on fatal errors
        self.assertIn(b"sendmail: fatal: cannot read the configuration " + missing.encode(),
                      p.stderr)
        # the options programs pass are accepted (and ignored where Postfix ignores them)
        p = self.sendmail(d, ["-v", "-oem", "-om", "-odb", "-N", "never", "-R", "hdrs", "-V",
                              "envid", "-U", "-i", "y@dst.test"], b"Subject: opts\n\nx\n")
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        # MAIL_CONFIG names the configuration (a directory means DIR/mtad.conf)
        cdir = os.path.join(self.tmp, "confdir")
        os.mkdir(cdir)
        shutil.copy(d.config_path, os.path.join(cdir, "mtad.conf"))
        p = subprocess.run([SENDMAIL, "-i", "z@dst.test"], input=b"Subject: env\n\nx\n",
                           capture_output=True, timeout=t(30),
                           env=dict(os.environ, MAIL_CONFIG=cdir))
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        d.wait_log(r"from=<root@%s>, size=\d+, nrcpt=1 \(queue active\)" % re.escape(HOST),
                   count=3)

    def test_mailq_runs_the_real_postqueue(self):
        """build/mailq next to build/postqueue: the message sendmail queued is listed."""
        d = self.daemon()  # delivery deferred: the message stays queued
        p = self.sendmail(d, ["-i", "q@dst.test"], b"Subject: listed\n\nx\n")
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        d.wait_log(r"/pickup\[\d+\]: [0-9A-F]+: uid=0 from=<root>$")
        qid = re.search(r"/pickup\[\d+\]: ([0-9A-F]+): uid=0", d.maillog()).group(1)
        # pickup logs uid= when it starts on the file; the queue lists it once committed
        d.wait_log(r"/qmgr\[\d+\]: %s: from=<root@" % qid)
        p = self.sendmail(d, [], b"", argv0="mailq")
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        out = p.stdout.decode()
        self.assertRegex(out, r"(?m)^%s\*? +\d+ .* root@%s$" % (qid, re.escape(HOST)))
        self.assertRegex(out, r"(?m)^ +q@dst\.test$")

    def test_mailq_flush_newaliases(self):
        """mailq, -bp and -q run postqueue -p / -f from the command directory (with -c the
        chosen configuration); newaliases has nothing to do (no alias database) and exits 0."""
        d = self.daemon()
        bindir = os.path.join(self.tmp, "fakebin")
        os.mkdir(bindir)
        out = os.path.join(self.tmp, "postqueue.args")
        with open(os.path.join(bindir, "postqueue"), "w") as f:
            f.write("#!/bin/sh\necho \"$0 $*\" >> %s\necho queue listing\n" % out)
        os.chmod(os.path.join(bindir, "postqueue"), 0o755)
        conf = os.path.join(self.tmp, "fake.cf")
        with open(d.config_path) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text + "command_directory = %s\n" % bindir)
        p = self.sendmail(d, ["-bp"], b"", config=conf)
        self.assertEqual((p.returncode, p.stdout), (0, b"queue listing\n"), p.stderr)
        p = self.sendmail(d, [], b"", config=conf, argv0="mailq")
        self.assertEqual((p.returncode, p.stdout), (0, b"queue listing\n"), p.stderr)
        p = self.sendmail(d, ["-q"], b"", config=conf)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out) as f:
            calls = f.read().splitlines()
        pq = os.path.join(bindir, "postqueue")
        self.assertEqual(calls, ["%s -c %s -p" % (pq, conf)] * 2 + ["%s -c %s -f" % (pq, conf)])
        p = self.sendmail(d, [], b"", argv0="newaliases")
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, b"", b""))
        p = self.sendmail(d, ["-bi"], b"")
        self.assertEqual((p.returncode, p.stderr), (0, b""))


if __name__ == "__main__":
    mtatest.main()
