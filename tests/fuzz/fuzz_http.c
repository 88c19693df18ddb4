/*
 * fuzz_http.c - the HTTP service's handling of a request (src/stats): the
 * routing by path, the query parameters (q=, id=, after=, limit=), message IDs
 * in paths, asset names, and Basic authentication. Requests are built as
 * libevent's parser leaves them (method, URI parsed with
 * EVHTTP_URI_NONCONFORMANT, headers) and handed to http_request_cb without a
 * socket; the reply then frees the request, so a request left unanswered
 * shows as a leak. Input: one byte for the method and whether username is
 * set, the URI up to the first blank or line end, then the Authorization
 * header value up to the line end.
 */
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>

#include "fuzz_util.h"
#include "mta/conf.h"
#include "stats_int.h"

static struct stats fuzz_st[2]; /* 0: no username, 1: Basic authentication on */

/* fuzz_setup - two stats handles (without and with a username) on configurations with defaults. */
static void fuzz_setup(void)
{
    static char *ov0[] = {"data_volume=/nonexistent/fuzz"};
    static char *ov1[] = {"data_volume=/nonexistent/fuzz", "username=admin", "password=secret"};
    char *err = NULL;

    for (int i = 0; i < 2; i++) {
        const struct conf *c = conf_load(NULL, i ? ov1 : ov0, i ? 3 : 1, &err);
        if (!c) {
            fprintf(stderr, "fuzz_http: conf_load: %s\n", err ? err : "?");
            abort();
        }
        fuzz_st[i].conf = c;
        fuzz_st[i].start_mono =
            stats_mono_now(); /* no connection limit, throttle, spool or queue */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum evhttp_cmd_type methods[] = {
        EVHTTP_REQ_GET,    EVHTTP_REQ_HEAD,    EVHTTP_REQ_POST,  EVHTTP_REQ_PUT,
        EVHTTP_REQ_DELETE, EVHTTP_REQ_OPTIONS, EVHTTP_REQ_PATCH, EVHTTP_REQ_GET,
    };
    struct fuzz_in in = {data, size};
    unsigned f = fuzz_byte(&in);
    char *text = fuzz_strndup(in.p, in.n), *auth = NULL, *nl;
    struct evhttp_request *req;
    size_t ulen;

    if (!fuzz_st[0].conf)
        fuzz_setup();
    ulen = strcspn(text, " \t\r\n");
    if (text[ulen] && (nl = strchr(text + ulen, '\n'))) {
        auth = nl + 1;
        auth[strcspn(auth, "\r\n")] = '\0';
    }
    text[ulen] = '\0';
    if (!(req = evhttp_request_new(NULL, NULL)))
        abort();
    req->kind = EVHTTP_REQUEST;
    req->type = methods[f % 8];
    req->uri = strdup(text);
    if (!req->uri)
        abort();
    req->uri_elems = evhttp_uri_parse_with_flags(req->uri, EVHTTP_URI_NONCONFORMANT);
    if (!req->uri_elems) { /* libevent answers 400 itself: never reaches us */
        evhttp_request_free(req);
        free(text);
        return 0;
    }
    if (auth && *auth)
        (void)evhttp_add_header(req->input_headers, "Authorization", auth);
    http_request_cb(req, &fuzz_st[(f >> 3) & 1]); /* the reply frees REQ (no connection) */
    free(text);
    return 0;
}
