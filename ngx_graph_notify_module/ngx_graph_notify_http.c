
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"


/*
 * libcurl's multi-socket interface driven by the helper's event loop.
 *
 * curl owns its sockets: it opens and closes them, and tells us which
 * ones to watch.  A watched socket gets an NGINX connection, with level-
 * triggered events, so that curl need not read until EAGAIN.  When curl
 * stops watching a socket (which may stay open in its connection cache)
 * the events are deleted and the connection freed, never closed.
 */


#define NGX_GRAPH_NOTIFY_HTTP_MAX_BODY       (64 * 1024 * 1024)
#define NGX_GRAPH_NOTIFY_HTTP_MAX_CONNS      256
#define NGX_GRAPH_NOTIFY_HTTP_CONCURRENCY    16
#define NGX_GRAPH_NOTIFY_HTTP_CONNECT        10000
#define NGX_GRAPH_NOTIFY_HTTP_TIMEOUT        60000
#define NGX_GRAPH_NOTIFY_HTTP_BUFFER         4096


/* the public request followed by what only this file uses */
typedef struct {
    ngx_graph_notify_http_t       req;

    ngx_queue_t                   queue;
    u_char                       *url;
    size_t                        url_len;     /* without the query */
    const char                   *method;
    ngx_str_t                     post;
    size_t                        size;

    unsigned                      too_large:1;
    unsigned                      no_memory:1;
} ngx_graph_notify_http_req_t;


typedef struct {
    CURLM                        *multi;
    ngx_pid_t                     pid;
    ngx_log_t                    *log;

    ngx_event_t                   timer;

    /* timers need a connection with fd -1 as data for debug logging */
    ngx_connection_t              dummy;

    ngx_queue_t                   running;
    ngx_uint_t                    count;

    char                         *ca_file;
    long                          connect_timeout;
    long                          request_timeout;
} ngx_graph_notify_http_ctx_t;


static void ngx_graph_notify_http_cleanup_multi(void *data);
static int ngx_graph_notify_http_socket(CURL *easy, curl_socket_t s,
    int what, void *userp, void *socketp);
static ngx_int_t ngx_graph_notify_http_watch(ngx_event_t *ev,
    ngx_uint_t want);
static void ngx_graph_notify_http_unwatch(ngx_connection_t *c);
static int ngx_graph_notify_http_set_timer(CURLM *multi, long timeout_ms,
    void *userp);
static void ngx_graph_notify_http_timer_handler(ngx_event_t *ev);
static void ngx_graph_notify_http_event_handler(ngx_event_t *ev);
static void ngx_graph_notify_http_action(ngx_graph_notify_http_ctx_t *ctx,
    curl_socket_t s, int mask);
static void ngx_graph_notify_http_done(void);
static void ngx_graph_notify_http_cleanup(void *data);
static size_t ngx_graph_notify_http_write(char *ptr, size_t size,
    size_t nmemb, void *userdata);
static size_t ngx_graph_notify_http_read_header(char *buffer, size_t size,
    size_t nitems, void *userdata);


static ngx_graph_notify_http_ctx_t  *ngx_graph_notify_http_ctx;


ngx_int_t
ngx_graph_notify_http_init(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf)
{
    long                          conns;
    CURLM                        *multi;
    CURLcode                      code;
    ngx_uint_t                    concurrency;
    ngx_pool_cleanup_t           *cln;
    curl_version_info_data       *info;
    ngx_graph_notify_http_ctx_t  *ctx;

    static ngx_pid_t              initialized;

    ctx = ngx_graph_notify_http_ctx;

    if (ctx && ctx->pid == ngx_pid) {
        return NGX_OK;
    }

    /*
     * Once per process, after the fork: neither the master nor the
     * workers ever initialize libcurl.
     */

    if (initialized != ngx_pid) {
        code = curl_global_init(CURL_GLOBAL_DEFAULT);

        if (code != CURLE_OK) {
            ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                          "graph_notify: curl_global_init() failed: %s",
                          curl_easy_strerror(code));
            return NGX_ERROR;
        }

        initialized = ngx_pid;
    }

    info = curl_version_info(CURLVERSION_NOW);

    if (!(info->features & CURL_VERSION_ASYNCHDNS)) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "graph_notify: libcurl %s resolves names synchronously, "
                      "a slow DNS server will stall the helper",
                      info->version);
    }

    ctx = ngx_pcalloc(cycle->pool, sizeof(ngx_graph_notify_http_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    if (gmcf->ca_file.len) {
        ctx->ca_file = ngx_pnalloc(cycle->pool, gmcf->ca_file.len + 1);
        if (ctx->ca_file == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_cpystrn((u_char *) ctx->ca_file, gmcf->ca_file.data,
                           gmcf->ca_file.len + 1);
    }

    ctx->connect_timeout = (gmcf->connect_timeout == 0
                            || gmcf->connect_timeout == NGX_CONF_UNSET_MSEC)
                           ? NGX_GRAPH_NOTIFY_HTTP_CONNECT
                           : (long) gmcf->connect_timeout;

    ctx->request_timeout = (gmcf->request_timeout == 0
                            || gmcf->request_timeout == NGX_CONF_UNSET_MSEC)
                           ? NGX_GRAPH_NOTIFY_HTTP_TIMEOUT
                           : (long) gmcf->request_timeout;

    concurrency = (gmcf->concurrency == 0
                   || gmcf->concurrency == NGX_CONF_UNSET_UINT)
                  ? NGX_GRAPH_NOTIFY_HTTP_CONCURRENCY : gmcf->concurrency;

    /*
     * The helper has 512 connections in all (connection_n is fixed for the
     * cache manager); curl queues transfers beyond its own limit.
     */

    conns = (long) ngx_min(concurrency * 2, NGX_GRAPH_NOTIFY_HTTP_MAX_CONNS);

    multi = curl_multi_init();
    if (multi == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "graph_notify: curl_multi_init() failed");
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        (void) curl_multi_cleanup(multi);
        return NGX_ERROR;
    }

    cln->handler = ngx_graph_notify_http_cleanup_multi;
    cln->data = ctx;

    ctx->multi = multi;
    ctx->pid = ngx_pid;
    ctx->log = cycle->log;

    ngx_queue_init(&ctx->running);

    ctx->dummy.fd = (ngx_socket_t) -1;

    ctx->timer.handler = ngx_graph_notify_http_timer_handler;
    ctx->timer.data = &ctx->dummy;
    ctx->timer.log = ctx->log;
    ctx->timer.cancelable = 1;

    if (curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION,
                          ngx_graph_notify_http_socket)
        != CURLM_OK
        || curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, ctx) != CURLM_OK
        || curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION,
                             ngx_graph_notify_http_set_timer)
           != CURLM_OK
        || curl_multi_setopt(multi, CURLMOPT_TIMERDATA, ctx) != CURLM_OK
        || curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns)
           != CURLM_OK
        || curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conns) != CURLM_OK
        || curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX)
           != CURLM_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "graph_notify: curl_multi_setopt() failed");
        return NGX_ERROR;
    }

    ngx_graph_notify_http_ctx = ctx;

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "graph_notify: HTTP client %s, up to %l connections",
                  info->version, conns);

    return NGX_OK;
}


static void
ngx_graph_notify_http_cleanup_multi(void *data)
{
    ngx_graph_notify_http_ctx_t  *ctx = data;

    ngx_queue_t                  *q;
    ngx_graph_notify_http_req_t  *r;

    /*
     * The cycle's pool goes away (the single process exits): transfers
     * still running are dropped without their handlers, and curl closes
     * the sockets of its connection cache, which frees their connections.
     */

    while (!ngx_queue_empty(&ctx->running)) {
        q = ngx_queue_head(&ctx->running);
        r = ngx_queue_data(q, ngx_graph_notify_http_req_t, queue);

        ngx_graph_notify_http_abort(&r->req);
    }

    if (ctx->multi) {
        (void) curl_multi_cleanup(ctx->multi);
        ctx->multi = NULL;
    }

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (ngx_graph_notify_http_ctx == ctx) {
        ngx_graph_notify_http_ctx = NULL;
    }
}


static int
ngx_graph_notify_http_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp)
{
    ngx_graph_notify_http_ctx_t  *ctx = userp;

    ngx_connection_t  *c;

    c = socketp;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ctx->log, 0,
                   "graph_notify http: socket %d what:%d c:%p",
                   (int) s, what, c);

    if (what == CURL_POLL_REMOVE) {

        /* newer curl may remove a socket it never announced */

        if (c) {
            ngx_graph_notify_http_unwatch(c);
            (void) curl_multi_assign(ctx->multi, s, NULL);
        }

        return 0;
    }

    if (c == NULL) {
        c = ngx_get_connection(s, ctx->log);

        if (c == NULL) {
            /*
             * Returning -1 would abort every transfer of the multi handle;
             * the transfer on this socket instead ends at its timeout.
             */
            ngx_log_error(NGX_LOG_ALERT, ctx->log, 0,
                          "graph_notify: no free connection for an HTTP "
                          "client socket");
            return 0;
        }

        c->data = ctx;
        c->read->handler = ngx_graph_notify_http_event_handler;
        c->write->handler = ngx_graph_notify_http_event_handler;
        c->read->log = ctx->log;
        c->write->log = ctx->log;

        if (curl_multi_assign(ctx->multi, s, c) != CURLM_OK) {
            ngx_free_connection(c);
            c->fd = (ngx_socket_t) -1;
            return 0;
        }
    }

    if (ngx_graph_notify_http_watch(c->read,
                                    what == CURL_POLL_IN
                                    || what == CURL_POLL_INOUT)
        != NGX_OK
        || ngx_graph_notify_http_watch(c->write,
                                       what == CURL_POLL_OUT
                                       || what == CURL_POLL_INOUT)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, ctx->log, ngx_socket_errno,
                      "graph_notify: cannot watch an HTTP client socket");
    }

    return 0;
}


static ngx_int_t
ngx_graph_notify_http_watch(ngx_event_t *ev, ngx_uint_t want)
{
    ngx_int_t  event;

    event = ev->write ? NGX_WRITE_EVENT : NGX_READ_EVENT;

    /* flags 0: level-triggered */

    if (want && !ev->active) {
        return ngx_add_event(ev, event, 0);
    }

    if (!want && ev->active) {
        if (ev->posted) {
            ngx_delete_posted_event(ev);
        }

        return ngx_del_event(ev, event, 0);
    }

    return NGX_OK;
}


static void
ngx_graph_notify_http_unwatch(ngx_connection_t *c)
{
    /* the socket may stay open in curl's cache: not NGX_CLOSE_EVENT */

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_free_connection(c);

    /* as ngx_close_connection() does: later events in a batch are stale */
    c->fd = (ngx_socket_t) -1;
}


static int
ngx_graph_notify_http_set_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_graph_notify_http_ctx_t  *ctx = userp;

    /*
     * Never drive curl from here: this runs inside curl's own calls.
     * The timer is deleted first, as ngx_add_timer() keeps a timer that
     * it would move by less than NGX_TIMER_LAZY_DELAY.
     */

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (timeout_ms >= 0) {
        ngx_add_timer(&ctx->timer, (ngx_msec_t) timeout_ms);
    }

    return 0;
}


static void
ngx_graph_notify_http_timer_handler(ngx_event_t *ev)
{
    ngx_graph_notify_http_ctx_t  *ctx;

    ctx = ngx_graph_notify_http_ctx;

    if (ctx == NULL || ctx->multi == NULL) {
        return;
    }

    ngx_graph_notify_http_action(ctx, CURL_SOCKET_TIMEOUT, 0);
}


static void
ngx_graph_notify_http_event_handler(ngx_event_t *ev)
{
    curl_socket_t                 s;
    ngx_connection_t             *c;
    ngx_graph_notify_http_ctx_t  *ctx;

    c = ev->data;
    ctx = c->data;
    s = c->fd;

    /* c may be freed inside, by a CURL_POLL_REMOVE: not used after */

    ngx_graph_notify_http_action(ctx, s,
                                 ev->write ? CURL_CSELECT_OUT
                                           : CURL_CSELECT_IN);
}


static void
ngx_graph_notify_http_action(ngx_graph_notify_http_ctx_t *ctx,
    curl_socket_t s, int mask)
{
    int        running;
    CURLMcode  rc;

    rc = curl_multi_socket_action(ctx->multi, s, mask, &running);

    if (rc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, ctx->log, 0,
                      "graph_notify: curl_multi_socket_action() failed: %s",
                      curl_multi_strerror(rc));
    }

    ngx_graph_notify_http_done();
}


static void
ngx_graph_notify_http_done(void)
{
    int                           left;
    long                          status;
    char                         *p;
    CURL                         *easy;
    CURLcode                      result;
    CURLMsg                      *msg;
    ngx_uint_t                    level;
    ngx_graph_notify_http_t      *req;
    ngx_graph_notify_http_ctx_t  *ctx;
    ngx_graph_notify_http_req_t  *r;

    ctx = ngx_graph_notify_http_ctx;

    /*
     * The handlers run here, outside curl's calls; a handler may start,
     * abort or destroy requests, which curl_multi_info_read() copes with.
     */

    while (ctx->multi
           && (msg = curl_multi_info_read(ctx->multi, &left)) != NULL)
    {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        result = msg->data.result;

        p = NULL;
        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p);

        if (p == NULL) {
            (void) curl_multi_remove_handle(ctx->multi, easy);
            continue;
        }

        r = (ngx_graph_notify_http_req_t *) p;
        req = &r->req;

        status = 0;
        (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);

        (void) curl_multi_remove_handle(ctx->multi, easy);

        ngx_queue_remove(&r->queue);
        req->running = 0;
        ctx->count--;

        if (r->too_large) {
            result = CURLE_WRITE_ERROR;
            (void) ngx_snprintf((u_char *) req->error, CURL_ERROR_SIZE,
                                "response body larger than %uz bytes%Z",
                                req->max_body);

        } else if (r->no_memory) {
            result = CURLE_OUT_OF_MEMORY;
            (void) ngx_cpystrn((u_char *) req->error,
                               (u_char *) "out of memory", CURL_ERROR_SIZE);

        } else if (result != CURLE_OK && req->error[0] == '\0') {
            (void) ngx_cpystrn((u_char *) req->error,
                               (u_char *) curl_easy_strerror(result),
                               CURL_ERROR_SIZE);
        }

        req->result = result;
        req->status = status;

        /* the body is always NUL-terminated, if empty */

        if (req->body.data == NULL) {
            req->body.data = ngx_pnalloc(req->pool, 1);

            if (req->body.data == NULL) {
                req->body.data = (u_char *) "";

                if (req->result == CURLE_OK) {
                    req->result = CURLE_OUT_OF_MEMORY;
                    (void) ngx_cpystrn((u_char *) req->error,
                                       (u_char *) "out of memory",
                                       CURL_ERROR_SIZE);
                }

            } else {
                req->body.data[0] = '\0';
            }

        } else {
            req->body.data[req->body.len] = '\0';
        }

        if (req->result == CURLE_OK) {
            ngx_log_debug5(NGX_LOG_DEBUG_HTTP, req->log, 0,
                           "graph_notify http: %s %*s: %l, %uz bytes",
                           r->method, r->url_len, r->url, req->status,
                           req->body.len);

        } else {
            /* the caller tells what failed, with its own context */

            level = (r->too_large || r->no_memory) ? NGX_LOG_WARN
                                                   : NGX_LOG_INFO;

            ngx_log_error(level, req->log, 0,
                          "graph_notify: %s %*s failed: %s",
                          r->method, r->url_len, r->url, req->error);
        }

        /* the handler may destroy the request's pool */
        req->handler(req);
    }
}


ngx_graph_notify_http_t *
ngx_graph_notify_http_create(ngx_pool_t *pool, ngx_log_t *log,
    const char *method, ngx_str_t *url)
{
    u_char                       *q;
    CURL                         *easy;
    CURLcode                      rc;
    ngx_pool_cleanup_t           *cln;
    ngx_graph_notify_http_t      *req;
    ngx_graph_notify_http_ctx_t  *ctx;
    ngx_graph_notify_http_req_t  *r;

    ctx = ngx_graph_notify_http_ctx;

    if (ctx == NULL || ctx->multi == NULL) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "graph_notify: the HTTP client is not initialized");
        return NULL;
    }

    if (ngx_strcmp(method, "GET") != 0
        && ngx_strcmp(method, "POST") != 0
        && ngx_strcmp(method, "PATCH") != 0
        && ngx_strcmp(method, "DELETE") != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "graph_notify: unsupported HTTP method \"%s\"", method);
        return NULL;
    }

    r = ngx_pcalloc(pool, sizeof(ngx_graph_notify_http_req_t));
    if (r == NULL) {
        return NULL;
    }

    req = &r->req;

    req->pool = pool;
    req->log = log;
    req->retry_after = -1;
    req->max_body = NGX_GRAPH_NOTIFY_HTTP_MAX_BODY;

    r->method = method;

    r->url = ngx_pnalloc(pool, url->len + 1);
    if (r->url == NULL) {
        return NULL;
    }

    (void) ngx_cpystrn(r->url, url->data, url->len + 1);

    /* logs show the URL without its query */

    q = ngx_strlchr(r->url, r->url + url->len, '?');
    r->url_len = q ? (size_t) (q - r->url) : url->len;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    easy = curl_easy_init();
    if (easy == NULL) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "graph_notify: curl_easy_init() failed");
        return NULL;
    }

    req->easy = easy;

    cln->handler = ngx_graph_notify_http_cleanup;
    cln->data = r;

    rc = CURLE_OK;

#define ngx_graph_notify_setopt(option, value)                                \
    if (rc == CURLE_OK) {                                                     \
        rc = curl_easy_setopt(easy, option, value);                           \
    }

    ngx_graph_notify_setopt(CURLOPT_URL, (char *) r->url);
    ngx_graph_notify_setopt(CURLOPT_PRIVATE, (char *) r);
    ngx_graph_notify_setopt(CURLOPT_NOSIGNAL, 1L);
    ngx_graph_notify_setopt(CURLOPT_ERRORBUFFER, req->error);

#if (LIBCURL_VERSION_NUM >= 0x075500)
    ngx_graph_notify_setopt(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    ngx_graph_notify_setopt(CURLOPT_PROTOCOLS,
                            (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif

    ngx_graph_notify_setopt(CURLOPT_FOLLOWLOCATION, 0L);

    /* TLS is always verified */
    ngx_graph_notify_setopt(CURLOPT_SSL_VERIFYPEER, 1L);
    ngx_graph_notify_setopt(CURLOPT_SSL_VERIFYHOST, 2L);

    /*
     * A private CA (a TLS-inspecting proxy, tests).  CURLOPT_CAINFO
     * replaces curl's built-in CA bundle file, so the file must hold every
     * CA to trust; curl's built-in CA directory, if it has one (Debian:
     * /etc/ssl/certs), is still searched as well.
     */

    if (ctx->ca_file) {
        ngx_graph_notify_setopt(CURLOPT_CAINFO, ctx->ca_file);
    }

    ngx_graph_notify_setopt(CURLOPT_CONNECTTIMEOUT_MS, ctx->connect_timeout);
    ngx_graph_notify_setopt(CURLOPT_TIMEOUT_MS, ctx->request_timeout);
    ngx_graph_notify_setopt(CURLOPT_HTTP_VERSION,
                            (long) CURL_HTTP_VERSION_2TLS);

    /* wait for a connection that may multiplex rather than open another */
    ngx_graph_notify_setopt(CURLOPT_PIPEWAIT, 1L);
    ngx_graph_notify_setopt(CURLOPT_TCP_KEEPALIVE, 1L);

    ngx_graph_notify_setopt(CURLOPT_ACCEPT_ENCODING, "");
    ngx_graph_notify_setopt(CURLOPT_USERAGENT,
                            "ngx_graph_notify/" NGX_GRAPH_NOTIFY_VERSION);

    ngx_graph_notify_setopt(CURLOPT_WRITEFUNCTION,
                            ngx_graph_notify_http_write);
    ngx_graph_notify_setopt(CURLOPT_WRITEDATA, r);
    ngx_graph_notify_setopt(CURLOPT_HEADERFUNCTION,
                            ngx_graph_notify_http_read_header);
    ngx_graph_notify_setopt(CURLOPT_HEADERDATA, r);

    if (ngx_strcmp(method, "POST") == 0 || ngx_strcmp(method, "PATCH") == 0) {
        /*
         * POST and PATCH send a body, empty until one is set; without
         * POSTFIELDS curl would read the body from stdin.
         */

        ngx_graph_notify_setopt(CURLOPT_POST, 1L);
        ngx_graph_notify_setopt(CURLOPT_POSTFIELDSIZE, 0L);
        ngx_graph_notify_setopt(CURLOPT_POSTFIELDS, "");
    }

    if (ngx_strcmp(method, "PATCH") == 0
        || ngx_strcmp(method, "DELETE") == 0)
    {
        ngx_graph_notify_setopt(CURLOPT_CUSTOMREQUEST, method);
    }

#undef ngx_graph_notify_setopt

    if (rc != CURLE_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "graph_notify: curl_easy_setopt() failed: %s",
                      curl_easy_strerror(rc));
        return NULL;
    }

    return req;
}


static void
ngx_graph_notify_http_cleanup(void *data)
{
    ngx_graph_notify_http_req_t  *r = data;

    struct curl_slist  *l;

    ngx_graph_notify_http_abort(&r->req);

    if (r->req.easy) {
        curl_easy_cleanup(r->req.easy);
        r->req.easy = NULL;
    }

    /* headers and bodies may carry credentials */

    if (r->req.headers) {
        for (l = r->req.headers; l; l = l->next) {
            ngx_explicit_memzero(l->data, ngx_strlen(l->data));
        }

        curl_slist_free_all(r->req.headers);
        r->req.headers = NULL;
    }

    if (r->post.len) {
        ngx_explicit_memzero(r->post.data, r->post.len);
        r->post.len = 0;
    }
}


ngx_int_t
ngx_graph_notify_http_header(ngx_graph_notify_http_t *req, ngx_str_t *name,
    ngx_str_t *value)
{
    u_char             *line, *p;
    size_t              len;
    ngx_uint_t          i;
    struct curl_slist  *list;

    for (i = 0; i < name->len; i++) {
        if (name->data[i] <= ' ' || name->data[i] == ':'
            || name->data[i] >= 0x7f)
        {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < value->len; i++) {
        if (value->data[i] == CR || value->data[i] == LF
            || value->data[i] == '\0')
        {
            return NGX_ERROR;
        }
    }

    if (name->len == 0) {
        return NGX_ERROR;
    }

    len = name->len + 2 + value->len + 1;

    /* a line of its own, wiped after curl has copied it */

    line = ngx_alloc(len, req->log);
    if (line == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(line, name->data, name->len);

    if (value->len) {
        *p++ = ':';
        *p++ = ' ';
        p = ngx_cpymem(p, value->data, value->len);

    } else {
        /* curl's way of sending an empty header rather than dropping it */
        *p++ = ';';
    }

    *p++ = '\0';

    list = curl_slist_append(req->headers, (char *) line);

    ngx_explicit_memzero(line, len);
    ngx_free(line);

    if (list == NULL) {
        return NGX_ERROR;
    }

    req->headers = list;

    return NGX_OK;
}


ngx_int_t
ngx_graph_notify_http_body(ngx_graph_notify_http_t *req, ngx_str_t *body,
    const char *content_type)
{
    ngx_graph_notify_http_req_t  *r = (ngx_graph_notify_http_req_t *) req;

    u_char             *p;
    size_t              len;
    struct curl_slist  *list;

    if (req->running) {
        return NGX_ERROR;
    }

    /*
     * A copy of our own rather than CURLOPT_COPYPOSTFIELDS: the body may
     * carry a client secret, and this copy is wiped by the pool cleanup.
     */

    p = ngx_pnalloc(req->pool, body->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, body->data, body->len);
    p[body->len] = '\0';

    if (r->post.len) {
        ngx_explicit_memzero(r->post.data, r->post.len);
    }

    r->post.data = p;
    r->post.len = body->len;

    if (ngx_strcmp(r->method, "DELETE") == 0) {

        /* a DELETE with a body: POST data under the DELETE method */

        if (curl_easy_setopt(req->easy, CURLOPT_POST, 1L) != CURLE_OK) {
            return NGX_ERROR;
        }
    }

    if (curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t) body->len)
        != CURLE_OK
        || curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, (char *) p)
           != CURLE_OK)
    {
        return NGX_ERROR;
    }

    if (content_type) {
        len = sizeof("Content-Type: ") - 1 + ngx_strlen(content_type) + 1;

        p = ngx_pnalloc(req->pool, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_sprintf(p, "Content-Type: %s%Z", content_type);

        list = curl_slist_append(req->headers, (char *) p);
        if (list == NULL) {
            return NGX_ERROR;
        }

        req->headers = list;
    }

    /* no "Expect: 100-continue" round trip for bodies over 1 KiB */

    list = curl_slist_append(req->headers, "Expect:");
    if (list == NULL) {
        return NGX_ERROR;
    }

    req->headers = list;

    return NGX_OK;
}


ngx_int_t
ngx_graph_notify_http_start(ngx_graph_notify_http_t *req)
{
    ngx_graph_notify_http_req_t  *r = (ngx_graph_notify_http_req_t *) req;

    CURLMcode                     rc;
    ngx_graph_notify_http_ctx_t  *ctx;

    ctx = ngx_graph_notify_http_ctx;

    if (ctx == NULL || ctx->multi == NULL || req->running
        || req->handler == NULL)
    {
        return NGX_ERROR;
    }

    /* a request may be started again once its handler has run */

    req->result = CURLE_OK;
    req->status = 0;
    req->retry_after = -1;
    req->error[0] = '\0';
    req->body.len = 0;

    r->too_large = 0;
    r->no_memory = 0;

    if (curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers)
        != CURLE_OK
        || curl_easy_setopt(req->easy, CURLOPT_MAXFILESIZE_LARGE,
                            (curl_off_t) req->max_body)
           != CURLE_OK)
    {
        return NGX_ERROR;
    }

    /* curl only asks for a timer here; the transfer runs from the loop */

    rc = curl_multi_add_handle(ctx->multi, req->easy);

    if (rc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, req->log, 0,
                      "graph_notify: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(rc));
        return NGX_ERROR;
    }

    req->running = 1;
    ngx_queue_insert_tail(&ctx->running, &r->queue);
    ctx->count++;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, req->log, 0,
                   "graph_notify http: %s %*s started",
                   r->method, r->url_len, r->url);

    return NGX_OK;
}


void
ngx_graph_notify_http_abort(ngx_graph_notify_http_t *req)
{
    ngx_graph_notify_http_req_t  *r = (ngx_graph_notify_http_req_t *) req;

    ngx_graph_notify_http_ctx_t  *ctx;

    if (!req->running) {
        return;
    }

    ctx = ngx_graph_notify_http_ctx;

    if (ctx && ctx->multi) {
        (void) curl_multi_remove_handle(ctx->multi, req->easy);
    }

    ngx_queue_remove(&r->queue);
    req->running = 0;

    if (ctx) {
        ctx->count--;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, req->log, 0,
                   "graph_notify http: %s %*s aborted",
                   r->method, r->url_len, r->url);
}


ngx_uint_t
ngx_graph_notify_http_running(void)
{
    return ngx_graph_notify_http_ctx ? ngx_graph_notify_http_ctx->count : 0;
}


static size_t
ngx_graph_notify_http_write(char *ptr, size_t size, size_t nmemb,
    void *userdata)
{
    ngx_graph_notify_http_req_t  *r = userdata;

    u_char                   *p;
    size_t                    n, need, cap;
    curl_off_t                length;
    ngx_graph_notify_http_t  *req;

    req = &r->req;
    n = size * nmemb;
    need = req->body.len + n;

    /* a short count makes curl end the transfer with CURLE_WRITE_ERROR */

    if (need > req->max_body || need < n) {
        r->too_large = 1;
        return 0;
    }

    if (need + 1 > r->size) {
        cap = r->size ? r->size * 2 : NGX_GRAPH_NOTIFY_HTTP_BUFFER;

        if (r->size == 0
            && curl_easy_getinfo(req->easy,
                                 CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length)
               == CURLE_OK
            && length > 0 && (uint64_t) length <= req->max_body)
        {
            /* usually the whole body at once; gzip'ed ones grow later */
            cap = (size_t) length + 1;
        }

        if (cap < need + 1) {
            cap = need + 1;
        }

        if (cap > req->max_body + 1) {
            cap = req->max_body + 1;
        }

        p = ngx_pnalloc(req->pool, cap);
        if (p == NULL) {
            r->no_memory = 1;
            return 0;
        }

        if (req->body.len) {
            ngx_memcpy(p, req->body.data, req->body.len);
        }

        if (req->body.data) {
            (void) ngx_pfree(req->pool, req->body.data);
        }

        req->body.data = p;
        r->size = cap;
    }

    ngx_memcpy(req->body.data + req->body.len, ptr, n);
    req->body.len += n;
    req->body.data[req->body.len] = '\0';

    return n;
}


static size_t
ngx_graph_notify_http_read_header(char *buffer, size_t size, size_t nitems,
    void *userdata)
{
    ngx_graph_notify_http_req_t  *r = userdata;

    u_char  *p, *last;
    size_t   n;
    time_t   t;

    n = size * nitems;
    p = (u_char *) buffer;
    last = p + n;

    /* a new response (after 1xx, for one): forget the last one's headers */

    if (n > 5 && ngx_strncmp(p, "HTTP/", 5) == 0) {
        r->req.retry_after = -1;
        return n;
    }

    if (n < sizeof("Retry-After:") - 1
        || ngx_strncasecmp(p, (u_char *) "Retry-After:",
                           sizeof("Retry-After:") - 1)
           != 0)
    {
        return n;
    }

    p += sizeof("Retry-After:") - 1;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == CR || last[-1] == LF
                        || last[-1] == ' ' || last[-1] == '\t'))
    {
        last--;
    }

    if (p == last) {
        return n;
    }

    if (*p >= '0' && *p <= '9') {
        /* delay-seconds; absurd values are left to the caller to cap */
        t = (last - p <= 10) ? ngx_atotm(p, last - p) : NGX_ERROR;

    } else {
        /* an HTTP-date */
        t = ngx_parse_http_time(p, last - p);

        if (t != NGX_ERROR) {
            t = (t > ngx_time()) ? t - ngx_time() : 0;
        }
    }

    if (t != NGX_ERROR) {
        r->req.retry_after = t;
    }

    return n;
}
