/*
 * dkim_cost.c - what one DKIM signature costs with libopendkim (docs/dkim.md): per message
 * size, the handle and header feed, the body hash and dkim_eom (the PEM key parse and the
 * RSA or Ed25519 operation); for an Ed25519 key also mtad's own signer (dkim_ed25519.c, which
 * mtad uses for such keys: libopendkim leaks on each). A measurement, not a test.
 * Usage: dkim_cost KEY.pem [ITERATIONS]   (the key's type chooses rsa-sha256 or ed25519-sha256)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <opendkim/dkim.h>

#include "dkim_int.h"

/* now - monotonic seconds. */
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    static const char *hdrs[] = {"From: a@example.org", "To: b@example.net", "Subject: cost",
                                 "Date: Thu, 3 Dec 2026 11:00:00 +0000",
                                 "Message-ID: <x@example.org>"};
    static const size_t sizes[] = {1000, 65536, 1048576};
    char key[16384];
    FILE *f;
    size_t klen;
    int iters = argc > 2 ? atoi(argv[2]) : 100;

    if (argc < 2 || !(f = fopen(argv[1], "rb"))) {
        fprintf(stderr, "usage: dkim_cost KEY.pem [ITERATIONS]\n");
        return 2;
    }
    klen = fread(key, 1, sizeof(key) - 1, f);
    fclose(f);
    key[klen] = 0;
    int alg =
        strstr(key, "BEGIN RSA") || klen > 400 ? DKIM_SIGN_RSASHA256 : DKIM_SIGN_ED25519SHA256;
    DKIM_LIB *lib = dkim_init(NULL, NULL);
    for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
        size_t body = sizes[z];
        unsigned char *b = malloc(body);
        double ts = 0, tb = 0, te = 0;
        for (size_t i = 0; i < body; i++)
            b[i] = i % 72 == 70 ? '\r' : i % 72 == 71 ? '\n' : (unsigned char)('a' + i % 26);
        b[body - 2] = '\r';
        b[body - 1] = '\n';
        for (int it = 0; it < iters; it++) {
            DKIM_STAT st;
            double t0 = now();
            DKIM *d = dkim_sign(lib, (const unsigned char *)"ID", NULL, (unsigned char *)key,
                                (const unsigned char *)"sel", (const unsigned char *)"example.org",
                                DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, alg, -1, &st);
            if (!d) {
                fprintf(stderr, "dkim_sign: %s\n", dkim_getresultstr(st));
                return 1;
            }
            for (int h = 0; h < 5; h++)
                dkim_header(d, (unsigned char *)hdrs[h], strlen(hdrs[h]));
            dkim_eoh(d);
            double t1 = now();
            for (size_t o = 0; o < body; o += 65536)
                dkim_body(d, b + o, body - o < 65536 ? body - o : 65536);
            double t2 = now();
            if ((st = dkim_eom(d, NULL)) != DKIM_STAT_OK) {
                fprintf(stderr, "dkim_eom: %s\n", dkim_getresultstr(st));
                return 1;
            }
            te += now() - t2;
            tb += t2 - t1;
            ts += t1 - t0;
            dkim_free(d);
        }
        printf("%s body %7zu bytes: setup %5.0f us, body hash %6.0f us, sign (dkim_eom) %5.0f us\n",
               alg == DKIM_SIGN_RSASHA256 ? "rsa-sha256    " : "ed25519-sha256", body,
               ts / iters * 1e6, tb / iters * 1e6, te / iters * 1e6);
        if (alg != DKIM_SIGN_RSASHA256) { /* mtad's own Ed25519 signer, the key parsed once */
            static char *names[] = {"from", "to", "subject", "date", "message-id"};
            char hdr[512] = "", why[256];
            BIO *kb = BIO_new_mem_buf(key, (int)klen);
            EVP_PKEY *pk = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
            BIO_free(kb);
            for (int h = 0; h < 5; h++)
                snprintf(hdr + strlen(hdr), sizeof(hdr) - strlen(hdr), "%s\r\n", hdrs[h]);
            tb = te = 0;
            for (int it = 0; pk && it < iters; it++) {
                struct dkim_ed *e = dkim_ed_new();
                double t0 = now();
                dkim_ed_body(e, b, body);
                double t1 = now();
                char *sig = dkim_ed_sign(e, pk, hdr, strlen(hdr), names, 5, "example.org", "sel",
                                         why, sizeof(why));
                te += now() - t1;
                tb += t1 - t0;
                free(sig);
                dkim_ed_free(e);
            }
            EVP_PKEY_free(pk);
            printf("ed25519 (mtad) body %7zu bytes: body hash %6.0f us, sign %5.0f us\n", body,
                   tb / iters * 1e6, te / iters * 1e6);
        }
        free(b);
    }
    dkim_close(lib);
    return 0;
}
