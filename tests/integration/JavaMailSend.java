/*
 * JavaMailSend.java - sends N messages through mtad with JavaMail (Debian's
 * libmail-java), the way a Tomcat web application does: one Transport.send per
 * message, each on its own connection. Run by test_javamail.py with Java's
 * single-file launcher (java -cp javax.mail.jar:... JavaMailSend.java ...).
 *
 * Usage: JavaMailSend MODE HOST PORT COUNT TAG [USER PASS]
 *   MODE plain     SMTP, no TLS, no AUTH
 *        smtps     implicit TLS (mail.smtp.ssl.enable) + AUTH
 *        starttls  STARTTLS required (mail.smtp.starttls.enable/.required) + AUTH
 * System properties: javax.net.ssl.trustStore (the test CA), mta.localaddress
 * (mail.smtp.localaddress: send from an untrusted loopback address).
 * Prints "sent N of COUNT" and, for each failure, the exception; exits 0 only
 * when every message was accepted. Not here: checking delivery (the test does).
 */
import java.util.Properties;
import javax.mail.Message;
import javax.mail.MessagingException;
import javax.mail.Session;
import javax.mail.Transport;
import javax.mail.internet.InternetAddress;
import javax.mail.internet.MimeMessage;

public class JavaMailSend {
    public static void main(String[] args) throws Exception {
        if (args.length != 5 && args.length != 7) {
            System.err.println("usage: JavaMailSend MODE HOST PORT COUNT TAG [USER PASS]");
            System.exit(2);
        }
        String mode = args[0], host = args[1], port = args[2], tag = args[4];
        int count = Integer.parseInt(args[3]);
        boolean auth = args.length == 7;

        Properties p = new Properties();
        p.put("mail.smtp.host", host);
        p.put("mail.smtp.port", port);
        p.put("mail.smtp.localhost", "javamail.example");
        p.put("mail.smtp.connectiontimeout", "20000");
        p.put("mail.smtp.timeout", "20000");
        p.put("mail.smtp.writetimeout", "20000");
        String local = System.getProperty("mta.localaddress");
        if (local != null)
            p.put("mail.smtp.localaddress", local);
        if (mode.equals("smtps")) {
            p.put("mail.smtp.ssl.enable", "true");
        } else if (mode.equals("starttls")) {
            p.put("mail.smtp.starttls.enable", "true");
            p.put("mail.smtp.starttls.required", "true");
        } else if (!mode.equals("plain")) {
            System.err.println("unknown mode " + mode);
            System.exit(2);
        }
        p.put("mail.smtp.auth", auth ? "true" : "false");
        Session session = Session.getInstance(p);

        int sent = 0;
        for (int i = 0; i < count; i++) {
            try {
                MimeMessage m = new MimeMessage(session);
                m.setFrom(new InternetAddress("app@example.org"));
                m.setRecipient(Message.RecipientType.TO,
                               new InternetAddress("rcpt@example.com"));
                m.setSubject(tag + " " + i);
                m.setText("JavaMail " + mode + " message " + i + "\n");
                if (auth)
                    Transport.send(m, args[5], args[6]);
                else
                    Transport.send(m);
                sent++;
            } catch (MessagingException e) {
                System.out.println("send " + i + " failed: " + e);
            }
        }
        System.out.println("sent " + sent + " of " + count);
        System.exit(sent == count ? 0 : 1);
    }
}
