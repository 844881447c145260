
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"
#include "ngx_graph_notify_bounds.h"
#include "ngx_graph_notify_envelope.h"
#include "ngx_graph_notify_crypto.h"
#include "ngx_graph_notify_jwt.h"
#include "ngx_graph_notify_ratelog.h"
#include "ngx_graph_notify_journal.h"

#if (NGX_THREADS && NGX_LINUX)
#include <sys/resource.h>
#include <sys/syscall.h>
#endif


/* per thread task: a batch never holds the pool, or a thread, for long */
#define NGX_GRAPH_NOTIFY_CHUNK_RICH     16
#define NGX_GRAPH_NOTIFY_CHUNK_ITEMS    256

/* at most so many batches' stages in one task */
#define NGX_GRAPH_NOTIFY_RUN_BATCHES    32

/* how much lower than the worker the threads of the pool run (nice) */
#define NGX_GRAPH_NOTIFY_THREAD_NICE    5

/* bodies up to this size are read on the event loop (about 0.2 ms) */
#define NGX_GRAPH_NOTIFY_INLINE_BODY    (64 * 1024)

/* kinds of rejected requests with a rate-limited log line of their own */
#define NGX_GRAPH_NOTIFY_REJECT_KINDS   32


/* the log lines a client can cause, each written at most once a second */
typedef enum {
    NGX_GRAPH_NOTIFY_LOG_DROPS = 0,
    NGX_GRAPH_NOTIFY_LOG_QUEUE_FULL,
    NGX_GRAPH_NOTIFY_LOG_OVERLOAD,
    NGX_GRAPH_NOTIFY_LOG_N
} ngx_graph_notify_log_e;


typedef struct {
    const char                 *fmt;
    ngx_graph_notify_ratelog_t  log;
} ngx_graph_notify_reject_kind_t;


typedef struct {
    ngx_uint_t                  dropped[NGX_GRAPH_NOTIFY_DROP_N];
    ngx_uint_t                  total;
    ngx_uint_t                  first_index;
    ngx_graph_notify_drop_e     first_reason;
    u_char                     *first_subscription;
} ngx_graph_notify_drops_t;


/* one item of a batch, from intake to the push */
typedef struct {
    ngx_graph_notify_envelope_item_t   item;
    const char                    *kind;
    ngx_graph_notify_decrypt_t    *rich;
    ngx_graph_notify_entry_t       entry;
    ngx_graph_notify_drop_e        reason;
    unsigned                       dropped:1;
} ngx_graph_notify_slot_t;


typedef enum {
    NGX_GRAPH_NOTIFY_STAGE_INTAKE = 0,
    NGX_GRAPH_NOTIFY_STAGE_CHUNK
} ngx_graph_notify_stage_e;


/*
 * A batch being processed.  Its work runs on the event loop or, for
 * large or rich batches, one stage at a time in a thread of the pool;
 * a threaded stage allocates only from the batch's own pool, never from
 * the request's, and the event loop leaves the batch alone meanwhile, so
 * that a thread and the event loop never share a structure.
 */
typedef struct {
    ngx_pool_t                    *pool;
    ngx_graph_notify_loc_conf_t   *glcf;
    ngx_str_t                      body;
    u_char                         received[sizeof("1970-01-01T00:00:00.000Z")];

    ngx_array_t                    items;
    ngx_str_t                      tokens;
    ngx_graph_notify_slot_t       *slots;
    ngx_uint_t                     n;
    ngx_uint_t                     njobs;
    ngx_uint_t                     next;

    /* a failure: answered and logged on the event loop */
    ngx_int_t                      status;
    const char                    *fmt;
    size_t                         msg_len;
    u_char                         msg[256];

    /* the first dropped item's subscription, for the log */
    u_char                         first_subscription[80];

    /* the items dropped, and kept, once the batch is journaled */
    ngx_graph_notify_drops_t       drops;
    ngx_uint_t                     kept;

    unsigned                       threaded:1;

#if (NGX_THREADS)
    /* the pool's queue was full: 503 */
    unsigned                       overloaded:1;

    ngx_http_request_t            *request;
    ngx_queue_t                    queue;      /* waiting for a task */
    ngx_uint_t                     weight;     /* rich items, for a task */
    ngx_graph_notify_stage_e       stage;
    ngx_uint_t                     from;
    ngx_uint_t                     to;
#endif
} ngx_graph_notify_ctx_t;


#if (NGX_THREADS)

/*
 * A task of the thread pool: the next stage of several batches, run one
 * after the other by one thread.  A worker has at most as many in the
 * pool as there are CPUs; stages that come meanwhile wait, and go
 * together in the next task, so that under load one wake-up of a thread
 * and one of the event loop serve many requests.
 */

typedef struct ngx_graph_notify_run_s  ngx_graph_notify_run_t;

struct ngx_graph_notify_run_s {
    ngx_thread_task_t             *task;
    ngx_graph_notify_runs_t       *runs;
    ngx_graph_notify_run_t        *next;       /* idle */
    ngx_uint_t                     n;
    ngx_graph_notify_ctx_t        *ctx[NGX_GRAPH_NOTIFY_RUN_BATCHES];
};


/* a worker's tasks; on the event loop only */

struct ngx_graph_notify_runs_s {
    ngx_thread_pool_t             *pool;
    ngx_str_t                     *pool_name;
    ngx_queue_t                    waiting;    /* batches' stages */
    ngx_graph_notify_run_t        *free;       /* idle tasks */
    ngx_event_t                    dispatch;
};

#endif


static ngx_int_t ngx_graph_notify_handshake(ngx_http_request_t *r,
    ngx_str_t *token);
static void ngx_graph_notify_body_handler(ngx_http_request_t *r);
#if (NGX_THREADS)
static ngx_int_t ngx_graph_notify_batch_pool(ngx_http_request_t *r,
    ngx_graph_notify_ctx_t *ctx);
static void ngx_graph_notify_batch_cleanup(void *data);
#endif
static void ngx_graph_notify_received(u_char *buf);
static void ngx_graph_notify_intake(ngx_graph_notify_ctx_t *ctx);
static void ngx_graph_notify_next(ngx_http_request_t *r,
    ngx_graph_notify_ctx_t *ctx);
static ngx_uint_t ngx_graph_notify_chunk_end(ngx_graph_notify_ctx_t *ctx);
static void ngx_graph_notify_chunk(ngx_graph_notify_ctx_t *ctx,
    ngx_uint_t from, ngx_uint_t to);
#if (NGX_THREADS)
static ngx_int_t ngx_graph_notify_post(ngx_http_request_t *r,
    ngx_graph_notify_ctx_t *ctx, ngx_graph_notify_stage_e stage);
static ngx_graph_notify_runs_t *ngx_graph_notify_runs(
    ngx_graph_notify_main_conf_t *gmcf);
static void ngx_graph_notify_dispatch(ngx_event_t *ev);
static void ngx_graph_notify_thread(void *data, ngx_log_t *log);
static void ngx_graph_notify_thread_done(ngx_event_t *ev);
static void ngx_graph_notify_resume(ngx_graph_notify_ctx_t *ctx);
#endif
static ngx_int_t ngx_graph_notify_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_graph_notify_item(ngx_graph_notify_ctx_t *ctx,
    ngx_graph_notify_slot_t *slot);
static ngx_int_t ngx_graph_notify_envelope_item(void *data,
    ngx_graph_notify_envelope_item_t *item);
static ngx_int_t ngx_graph_notify_check_item(ngx_graph_notify_ctx_t *ctx,
    ngx_graph_notify_envelope_item_t *item, ngx_str_t *tenant);
static ngx_int_t ngx_graph_notify_string(ngx_pool_t *pool,
    ngx_graph_notify_json_value_t *v, ngx_str_t *s);
static ngx_int_t ngx_graph_notify_tenant_allowed(
    ngx_graph_notify_loc_conf_t *glcf, ngx_str_t *tenant);
static ngx_int_t ngx_graph_notify_prepare_rich(ngx_graph_notify_ctx_t *ctx,
    ngx_graph_notify_slot_t *slot);
static void ngx_graph_notify_journaled(ngx_http_request_t *r, ngx_int_t rc);
static ngx_int_t ngx_graph_notify_kept(ngx_http_request_t *r,
    ngx_graph_notify_ctx_t *ctx);
static void ngx_graph_notify_synced(ngx_http_request_t *r, ngx_int_t rc);

static ngx_graph_notify_ratelog_t  ngx_graph_notify_share_log;

static ngx_int_t ngx_graph_notify_accepted(ngx_http_request_t *r);
static ngx_int_t ngx_graph_notify_accept(ngx_http_request_t *r,
    ngx_graph_notify_ctx_t *ctx);
static ngx_int_t ngx_graph_notify_failed(ngx_http_request_t *r,
    ngx_graph_notify_ctx_t *ctx);
static ngx_int_t ngx_graph_notify_unavailable(ngx_http_request_t *r);
static ngx_int_t ngx_graph_notify_line(ngx_pool_t *pool,
    ngx_graph_notify_envelope_item_t *item, const char *kind,
    u_char *received, ngx_graph_notify_decrypt_t *rich, ngx_str_t *line);
static void ngx_graph_notify_log_drops(ngx_http_request_t *r,
    ngx_graph_notify_drops_t *drops, ngx_uint_t n);
static void ngx_graph_notify_fail(ngx_graph_notify_ctx_t *ctx,
    ngx_int_t status, const char *fmt, ...);
static ngx_int_t ngx_graph_notify_reject(ngx_http_request_t *r,
    ngx_int_t status, const char *fmt, ...);
static ngx_int_t ngx_graph_notify_reject_line(ngx_http_request_t *r,
    ngx_int_t status, const char *fmt, u_char *msg, size_t len);
static void ngx_graph_notify_sanitize(ngx_graph_notify_json_value_t *value,
    u_char *buf, size_t size);
static char *ngx_graph_notify_held(ngx_uint_t held, u_char *buf,
    size_t size);


static ngx_graph_notify_ratelog_t  ngx_graph_notify_log[NGX_GRAPH_NOTIFY_LOG_N];

/* one limit per kind of rejection, the format of its line naming it */
static ngx_graph_notify_reject_kind_t
    ngx_graph_notify_reject_kinds[NGX_GRAPH_NOTIFY_REJECT_KINDS];


/* the labels of the status page and their log wording */

ngx_str_t  ngx_graph_notify_drop_names[] = {
    ngx_string("malformed"),
    ngx_string("client_state"),
    ngx_string("tenant"),
    ngx_string("unknown_key"),
    ngx_string("thumbprint"),
    ngx_string("base64"),
    ngx_string("data_key"),
    ngx_string("key_length"),
    ngx_string("signature"),
    ngx_string("decrypt"),
    ngx_string("not_json"),
    ngx_string("depth")
};


static char  *ngx_graph_notify_drop_text[] = {
    "malformed item",
    "clientState missing or wrong",
    "tenant not allowed",
    "unknown encryptionCertificateId",
    "encryptionCertificateThumbprint does not match the certificate",
    "invalid base64 in encryptedContent",
    "dataKey does not decrypt with the private key",
    "data key is not 32 bytes long",
    "dataSignature does not match (HMAC-SHA256)",
    "AES-256-CBC decryption failed (bad padding)",
    "decrypted content is not JSON",
    "decrypted content nested deeper than 64 levels"
};


ngx_int_t
ngx_graph_notify_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_str_t                      token;
    ngx_table_elt_t               *h;
    ngx_graph_notify_queue_t      *q;
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_graph_notify_module);
    q = gmcf->shm_zone->data;

    if (r->method != NGX_HTTP_POST) {
        ngx_graph_notify_stat_inc(q, rejected);

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        ngx_str_set(&h->value, "POST");

        return ngx_graph_notify_reject(r, NGX_HTTP_NOT_ALLOWED,
                                       "method %V not allowed, Graph uses "
                                       "POST", &r->method_name);
    }

    /* the handshake carries the token in the query, never a body to read */

    if (ngx_http_arg(r, (u_char *) "validationToken", 15, &token) == NGX_OK) {
        return ngx_graph_notify_handshake(r, &token);
    }

    ngx_graph_notify_stat_inc(q, requests);

    rc = ngx_http_read_client_request_body(r, ngx_graph_notify_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        ngx_graph_notify_stat_inc(q, rejected);
        return rc;
    }

    return NGX_DONE;
}


static ngx_int_t
ngx_graph_notify_handshake(ngx_http_request_t *r, ngx_str_t *token)
{
    ngx_int_t                      rc;
    ngx_buf_t                     *b;
    ngx_str_t                      decoded;
    ngx_chain_t                    out;
    ngx_table_elt_t               *h;
    ngx_graph_notify_queue_t      *q;
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_graph_notify_module);
    q = gmcf->shm_zone->data;

    if (token->len > 3 * NGX_GRAPH_NOTIFY_TOKEN_MAX) {
        ngx_graph_notify_stat_inc(q, rejected);
        return ngx_graph_notify_reject(r, NGX_HTTP_BAD_REQUEST,
                                       "validationToken longer than %d bytes",
                                       NGX_GRAPH_NOTIFY_TOKEN_MAX);
    }

    decoded.data = ngx_pnalloc(r->pool, token->len + 1);
    if (decoded.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_graph_notify_form_decode(token, &decoded) != NGX_OK) {
        ngx_graph_notify_stat_inc(q, rejected);
        return ngx_graph_notify_reject(r, NGX_HTTP_BAD_REQUEST,
                                       "validationToken has an invalid "
                                       "%%-escape or a NUL byte");
    }

    if (decoded.len == 0 || decoded.len > NGX_GRAPH_NOTIFY_TOKEN_MAX) {
        ngx_graph_notify_stat_inc(q, rejected);
        return ngx_graph_notify_reject(r, NGX_HTTP_BAD_REQUEST,
                                       "validationToken is empty or longer "
                                       "than %d bytes",
                                       NGX_GRAPH_NOTIFY_TOKEN_MAX);
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_graph_notify_stat_inc(q, handshakes);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "graph_notify: answered a validation handshake");

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Content-Type-Options");
    ngx_str_set(&h->value, "nosniff");

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = decoded.len;
    ngx_str_set(&r->headers_out.content_type, "text/plain; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = decoded.data;
    b->last = decoded.data + decoded.len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_graph_notify_form_decode(ngx_str_t *src, ngx_str_t *dst)
{
    u_char      *s, *end, *d;
    ngx_int_t    hi, lo;

    /*
     * Graph form-encodes the token: "+" is a space, "%3a" a colon;
     * ngx_unescape_uri() does not turn "+" into a space.
     */

    s = src->data;
    end = src->data + src->len;
    d = dst->data;

    while (s < end) {

        if (*s == '+') {
            *d++ = ' ';
            s++;
            continue;
        }

        if (*s != '%') {
            *d++ = *s++;
            continue;
        }

        if (end - s < 3) {
            return NGX_ERROR;
        }

        hi = ngx_hextoi(s + 1, 1);
        lo = ngx_hextoi(s + 2, 1);

        if (hi == NGX_ERROR || lo == NGX_ERROR || (hi == 0 && lo == 0)) {
            return NGX_ERROR;
        }

        *d++ = (u_char) (hi << 4 | lo);
        s += 3;
    }

    dst->len = d - dst->data;

    return NGX_OK;
}


static void
ngx_graph_notify_body_handler(ngx_http_request_t *r)
{
    ngx_str_t                      body;
    ngx_graph_notify_ctx_t        *ctx;
    ngx_graph_notify_queue_t      *q;
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_graph_notify_module);
    q = gmcf->shm_zone->data;

    if (ngx_graph_notify_read_body(r, &body) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (body.len == 0) {
        ngx_graph_notify_stat_inc(q, rejected);
        ngx_http_finalize_request(r,
            ngx_graph_notify_reject(r, NGX_HTTP_BAD_REQUEST,
                                    "empty request body"));
        return;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_graph_notify_ctx_t));
    if (ctx == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /*
     * A batch read on the event loop uses the request's pool; one handed to
     * the thread pool gets a pool of its own (ngx_graph_notify_batch_pool()),
     * created only then: creating and destroying one took about 4 % of a
     * one-item batch's instructions.
     */

    ctx->pool = r->pool;

    ngx_http_set_ctx(r, ctx, ngx_http_graph_notify_module);

    ctx->glcf = ngx_http_get_module_loc_conf(r, ngx_http_graph_notify_module);
    ctx->body = body;

    /* when the worker accepted the batch: every line of it says so */
    ngx_graph_notify_received(ctx->received);

#if (NGX_THREADS)

    /*
     * Reading a large body, and making the lines of its items, still
     * takes milliseconds (the scan alone about 11 instructions a byte,
     * 45 million for 4 MiB, against 160 for jansson's parse): it goes to
     * the thread pool too.  Small ones, the usual Graph batch, are read
     * here at once, which costs less than handing them over.
     */

    if (gmcf->thread_pool && body.len > NGX_GRAPH_NOTIFY_INLINE_BODY) {
        ctx->threaded = 1;

        if (ngx_graph_notify_batch_pool(r, ctx) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        if (ngx_graph_notify_post(r, ctx, NGX_GRAPH_NOTIFY_STAGE_INTAKE)
            != NGX_OK)
        {
            ngx_http_finalize_request(r, ngx_graph_notify_unavailable(r));
        }

        return;
    }

#endif

    ngx_graph_notify_intake(ctx);

#if (NGX_THREADS)
    if (gmcf->thread_pool && ctx->njobs && ctx->status == 0) {

        /*
         * Rich items: their chunks run in threads, which allocate from the
         * batch's own pool from now on; what the intake took from the
         * request's pool (the slots, the decryption jobs) outlives it, and
         * the event loop does not touch it while a thread runs.
         */

        ctx->threaded = 1;

        if (ngx_graph_notify_batch_pool(r, ctx) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }
#endif

    ngx_graph_notify_next(r, ctx);
}


/*
 * The time of acceptance, formatted once per millisecond of NGINX's
 * cached time rather than per request (event loop only).
 */

static void
ngx_graph_notify_received(u_char *buf)
{
    ngx_time_t  *tp;

    static time_t      sec = -1;
    static ngx_uint_t  msec;
    static u_char      last[sizeof("1970-01-01T00:00:00.000Z")];

    tp = ngx_timeofday();

    if (tp->sec != sec || tp->msec != msec) {
        (void) ngx_graph_notify_timestamp(last);
        sec = tp->sec;
        msec = tp->msec;
    }

    ngx_memcpy(buf, last, sizeof(last));
}


#if (NGX_THREADS)

/* a pool of the batch's own, destroyed with the request's */

static ngx_int_t
ngx_graph_notify_batch_pool(ngx_http_request_t *r,
    ngx_graph_notify_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    ctx->pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, r->connection->log);
    if (ctx->pool == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_graph_notify_batch_cleanup;
    cln->data = ctx;

    return NGX_OK;
}


static void
ngx_graph_notify_batch_cleanup(void *data)
{
    ngx_graph_notify_ctx_t *ctx = data;

    ngx_destroy_pool(ctx->pool);
}

#endif


/*
 * The first stage: the body's bounds and its validation, in one pass
 * (ngx_graph_notify_envelope_scan(): no parse tree is built), and each
 * item's own checks (clientState, tenant, kind); rich items get a
 * decryption job.  Runs on any thread; a failure is recorded in ctx, to
 * be answered later.
 */

static void
ngx_graph_notify_intake(ngx_graph_notify_ctx_t *ctx)
{
    size_t                        i;
    ngx_int_t                     rc;
    ngx_graph_notify_envelope_t   env;

    /*
     * One slot to start with, as Graph's batches mostly have one item: a
     * slot is about 500 bytes, and four took the request's pool past its
     * first block.
     */

    if (ngx_array_init(&ctx->items, ctx->pool, 1,
                       sizeof(ngx_graph_notify_slot_t))
        != NGX_OK)
    {
        ngx_graph_notify_fail(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
        return;
    }

    ngx_memzero(&env, sizeof(ngx_graph_notify_envelope_t));

    env.max_items = ctx->glcf->max_batch;
    env.max_item_size = ctx->glcf->max_item_size;
    env.max_tokens = ctx->glcf->max_batch * NGX_GRAPH_NOTIFY_TOKENS_PER_ITEM;
    env.handler = ngx_graph_notify_envelope_item;
    env.data = ctx;

    switch (ngx_graph_notify_envelope_scan(ctx->body.data, ctx->body.len,
                                           &env))
    {
    case NGX_GRAPH_NOTIFY_ENVELOPE_OK:
        break;

    case NGX_GRAPH_NOTIFY_ENVELOPE_ITEMS:
        ngx_graph_notify_fail(ctx, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                              "batch of more than %ui items "
                              "(graph_notify_max_batch)", env.max_items);
        return;

    case NGX_GRAPH_NOTIFY_ENVELOPE_ITEM_SIZE:
        ngx_graph_notify_fail(ctx, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                              "item of more than %uz bytes "
                              "(graph_notify_max_item_size)",
                              env.max_item_size);
        return;

    case NGX_GRAPH_NOTIFY_ENVELOPE_TOKENS:
        ngx_graph_notify_fail(ctx, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                              "body of more than %ui JSON tokens (%d per "
                              "item of graph_notify_max_batch)",
                              env.max_tokens,
                              NGX_GRAPH_NOTIFY_TOKENS_PER_ITEM);
        return;

    case NGX_GRAPH_NOTIFY_ENVELOPE_NO_VALUE:
        ngx_graph_notify_fail(ctx, NGX_HTTP_BAD_REQUEST,
                              "request body has no \"value\" array or a "
                              "malformed \"validationTokens\"");
        return;

    case NGX_GRAPH_NOTIFY_ENVELOPE_INVALID:
    case NGX_GRAPH_NOTIFY_ENVELOPE_STRICT:
        ngx_graph_notify_fail(ctx, NGX_HTTP_BAD_REQUEST,
                              "request body is not JSON: %s (byte %uz)",
                              env.reason,
                              (size_t) (env.error - ctx->body.data));
        return;

    default: /* NGX_GRAPH_NOTIFY_ENVELOPE_ABORT */
        ngx_graph_notify_fail(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
        return;
    }

    /* the tokens, on one line, go to the journal and the helper once */

    if (env.tokens.type == NGX_GRAPH_NOTIFY_JSON_ARRAY) {
        ctx->tokens.data = ngx_pnalloc(ctx->pool,
                                       env.tokens.end - env.tokens.start);
        if (ctx->tokens.data == NULL) {
            ngx_graph_notify_fail(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
            return;
        }

        ctx->tokens.len = ngx_graph_notify_envelope_compact(ctx->tokens.data,
                                                            &env.tokens)
                          - ctx->tokens.data;

        if (ctx->tokens.len == 2) {
            ngx_str_null(&ctx->tokens);     /* "[]" */
        }
    }

    ctx->n = ctx->items.nelts;
    ctx->slots = ctx->items.elts;

    for (i = 0; i < ctx->n; i++) {
        rc = ngx_graph_notify_item(ctx, &ctx->slots[i]);

        if (rc == NGX_ERROR) {
            ngx_graph_notify_fail(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
            return;
        }

        if (rc == NGX_DECLINED) {
            ctx->slots[i].dropped = 1;
            continue;
        }

        if (ctx->slots[i].rich) {
            ctx->njobs++;
        }
    }
}


/* an element of "value", kept until the scan tells whether the body is */

static ngx_int_t
ngx_graph_notify_envelope_item(void *data,
    ngx_graph_notify_envelope_item_t *item)
{
    ngx_graph_notify_ctx_t *ctx = data;

    ngx_graph_notify_slot_t  *slot;

    slot = ngx_array_push(&ctx->items);
    if (slot == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(slot, sizeof(ngx_graph_notify_slot_t));
    slot->item = *item;

    return NGX_OK;
}


/*
 * Drives a batch on the event loop: chunk after chunk of items, each
 * decrypted and turned into output lines (in a thread when the batch is
 * threaded), then the push and the answer.
 */

static void
ngx_graph_notify_next(ngx_http_request_t *r, ngx_graph_notify_ctx_t *ctx)
{
    ngx_uint_t  to;

    for ( ;; ) {

#if (NGX_THREADS)
        if (ctx->overloaded) {
            ngx_http_finalize_request(r, ngx_graph_notify_unavailable(r));
            return;
        }
#endif

        if (ctx->status) {
            ngx_http_finalize_request(r, ngx_graph_notify_failed(r, ctx));
            return;
        }

        if (ctx->next >= ctx->n) {
            ngx_http_finalize_request(r, ngx_graph_notify_accept(r, ctx));
            return;
        }

        to = ngx_graph_notify_chunk_end(ctx);

#if (NGX_THREADS)

        if (ctx->threaded) {
            ctx->from = ctx->next;
            ctx->to = to;

            if (ngx_graph_notify_post(r, ctx, NGX_GRAPH_NOTIFY_STAGE_CHUNK)
                != NGX_OK)
            {
                ngx_http_finalize_request(r, ngx_graph_notify_unavailable(r));
            }

            return;
        }

#endif

        ngx_graph_notify_chunk(ctx, ctx->next, to);
        ctx->next = to;
    }
}


/* a chunk ends after so many rich items, or so many items in all */

static ngx_uint_t
ngx_graph_notify_chunk_end(ngx_graph_notify_ctx_t *ctx)
{
    ngx_uint_t  to, rich;

    rich = 0;

    for (to = ctx->next; to < ctx->n; to++) {

        if (to - ctx->next == NGX_GRAPH_NOTIFY_CHUNK_ITEMS) {
            break;
        }

        if (!ctx->slots[to].dropped && ctx->slots[to].rich) {
            if (rich == NGX_GRAPH_NOTIFY_CHUNK_RICH) {
                break;
            }

            rich++;
        }
    }

    return to;
}


/*
 * Decrypts the rich items of slots [from, to) and makes the output line
 * of every accepted one.  Runs on any thread.
 */

static void
ngx_graph_notify_chunk(ngx_graph_notify_ctx_t *ctx, ngx_uint_t from,
    ngx_uint_t to)
{
    ngx_uint_t                    i, m;
    ngx_graph_notify_slot_t      *slot;
    ngx_graph_notify_decrypt_t   *jobs[NGX_GRAPH_NOTIFY_CHUNK_RICH], *rich;

    m = 0;

    for (i = from; i < to; i++) {
        if (!ctx->slots[i].dropped && ctx->slots[i].rich) {
            jobs[m++] = ctx->slots[i].rich;
        }
    }

    if (m) {
        ngx_graph_notify_decrypt_run(jobs, m);
    }

    for (i = from; i < to; i++) {
        slot = &ctx->slots[i];
        rich = NULL;

        if (slot->dropped) {
            continue;
        }

        if (slot->rich) {

            if (slot->rich->rc == NGX_ERROR) {
                ngx_graph_notify_fail(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      NULL);
                return;
            }

            if (slot->rich->rc == NGX_DECLINED) {
                slot->dropped = 1;
                slot->reason = slot->rich->reason;
                continue;
            }

            rich = slot->rich;
        }

        if (ngx_graph_notify_line(ctx->pool, &slot->item, slot->kind,
                                  ctx->received, rich, &slot->entry.line)
            != NGX_OK)
        {
            ngx_graph_notify_fail(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
            return;
        }
    }

    if (to < ctx->n) {
        return;
    }

    /* the last chunk: the log keeps what it needs of the first drop */

    for (i = 0; i < ctx->n; i++) {
        if (ctx->slots[i].dropped) {
            ngx_graph_notify_sanitize(
                &ctx->slots[i].item.field[
                    NGX_GRAPH_NOTIFY_FIELD_SUBSCRIPTION_ID],
                ctx->first_subscription, sizeof(ctx->first_subscription));
            break;
        }
    }
}


#if (NGX_THREADS)

/*
 * The RSA step costs about 0.2 ms of CPU per item with a 2048-bit key and
 * 3.5 with a 4096-bit one, and parsing a large body tens of ms: on the event
 * loop, they would hold every connection of the worker.  They run in the
 * thread pool instead, one stage at a time, each bounded (one intake, or
 * one chunk), so that other requests' stages take turns in the pool; the
 * request waits, blocked, meanwhile.
 */

static ngx_int_t
ngx_graph_notify_post(ngx_http_request_t *r, ngx_graph_notify_ctx_t *ctx,
    ngx_graph_notify_stage_e stage)
{
    ngx_uint_t                     i;
    ngx_graph_notify_runs_t       *runs;
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_graph_notify_module);

    runs = ngx_graph_notify_runs(gmcf);
    if (runs == NULL) {
        return NGX_ERROR;
    }

    ctx->request = r;
    ctx->stage = stage;

    if (stage == NGX_GRAPH_NOTIFY_STAGE_INTAKE) {
        /* a body of more than 64 KiB: a task of its own */
        ctx->weight = NGX_GRAPH_NOTIFY_CHUNK_RICH;

    } else {
        ctx->weight = 0;

        for (i = ctx->from; i < ctx->to; i++) {
            if (!ctx->slots[i].dropped && ctx->slots[i].rich) {
                ctx->weight++;
            }
        }
    }

    ngx_queue_insert_tail(&runs->waiting, &ctx->queue);

    r->main->blocked++;
    r->aio = 1;
    r->write_event_handler = ngx_http_request_empty_handler;

    /* after this turn of the event loop, with the pieces it brings */

    if (!runs->dispatch.posted) {
        ngx_post_event(&runs->dispatch, &ngx_posted_events);
    }

    return NGX_OK;
}


/* the worker's tasks, made at its first threaded batch */

static ngx_graph_notify_runs_t *
ngx_graph_notify_runs(ngx_graph_notify_main_conf_t *gmcf)
{
    ngx_uint_t                i, n;
    ngx_thread_task_t        *task;
    ngx_graph_notify_run_t   *run;
    ngx_graph_notify_runs_t  *runs;

    if (gmcf->runs) {
        return gmcf->runs;
    }

    runs = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_graph_notify_runs_t));
    if (runs == NULL) {
        return NULL;
    }

    runs->pool = gmcf->thread_pool;
    runs->pool_name = &gmcf->thread_pool_name;

    ngx_queue_init(&runs->waiting);

    runs->dispatch.handler = ngx_graph_notify_dispatch;
    runs->dispatch.data = runs;
    runs->dispatch.log = ngx_cycle->log;

    /* more would only take turns on the same CPUs */
    n = ngx_max(ngx_ncpu, 1);

    for (i = 0; i < n; i++) {
        task = ngx_thread_task_alloc(ngx_cycle->pool,
                                     sizeof(ngx_graph_notify_run_t));
        if (task == NULL) {
            return NULL;
        }

        run = task->ctx;
        run->task = task;
        run->runs = runs;
        run->next = runs->free;
        runs->free = run;

        task->handler = ngx_graph_notify_thread;
        task->event.handler = ngx_graph_notify_thread_done;
        task->event.data = run;
    }

    gmcf->runs = runs;

    return runs;
}


/*
 * Hands the waiting stages to idle tasks, in order of arrival, each task
 * taking stages while they hold no more rich items than a chunk does
 * (one stage at least).
 */

static void
ngx_graph_notify_dispatch(ngx_event_t *ev)
{
    ngx_graph_notify_runs_t *runs = ev->data;

    u_char                   buf[64];
    ngx_uint_t               i, weight, held;
    ngx_queue_t             *q;
    ngx_graph_notify_ctx_t  *ctx;
    ngx_graph_notify_run_t  *run;

    while (runs->free && !ngx_queue_empty(&runs->waiting)) {

        run = runs->free;
        runs->free = run->next;

        run->n = 0;
        weight = 0;

        while (!ngx_queue_empty(&runs->waiting)
               && run->n < NGX_GRAPH_NOTIFY_RUN_BATCHES)
        {
            q = ngx_queue_head(&runs->waiting);
            ctx = ngx_queue_data(q, ngx_graph_notify_ctx_t, queue);

            if (run->n && weight + ctx->weight > NGX_GRAPH_NOTIFY_CHUNK_RICH) {
                break;
            }

            ngx_queue_remove(q);

            run->ctx[run->n++] = ctx;
            weight += ctx->weight;
        }

        if (ngx_thread_task_post(runs->pool, run->task) == NGX_OK) {
            continue;
        }

        /* the pool's queue is full: NGINX logged it, Graph retries */

        if (ngx_graph_notify_ratelog_allow(
                &ngx_graph_notify_log[NGX_GRAPH_NOTIFY_LOG_OVERLOAD], &held))
        {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "graph_notify: thread pool \"%V\" is full, "
                          "%ui batch(es) refused with 503%s",
                          runs->pool_name, run->n,
                          ngx_graph_notify_held(held, buf, sizeof(buf)));
        }

        run->next = runs->free;
        runs->free = run;

        for (i = 0; i < run->n; i++) {
            run->ctx[i]->overloaded = 1;
            ngx_graph_notify_resume(run->ctx[i]);
        }
    }
}


static void
ngx_graph_notify_thread(void *data, ngx_log_t *log)
{
    ngx_graph_notify_run_t *run = data;

    ngx_uint_t               i;
    ngx_graph_notify_ctx_t  *ctx;

#if (NGX_LINUX)
    int    base, nice;
    pid_t  tid;

    /* once per thread: three system calls per task add up */
    static __thread ngx_uint_t  reniced;

    /*
     * On a busy machine a decrypting thread gives way to the worker's
     * event loop: Linux keeps a priority per thread, and this one is set
     * below the worker's (lowering needs no privilege; it stays so).
     */

    if (!reniced) {
        reniced = 1;

        tid = (pid_t) syscall(SYS_gettid);

        errno = 0;
        base = getpriority(PRIO_PROCESS, ngx_pid);
        nice = getpriority(PRIO_PROCESS, tid);

        if (errno == 0 && nice < base + NGX_GRAPH_NOTIFY_THREAD_NICE) {
            (void) setpriority(PRIO_PROCESS, tid,
                               ngx_min(base + NGX_GRAPH_NOTIFY_THREAD_NICE,
                                       19));
        }
    }
#endif

    for (i = 0; i < run->n; i++) {
        ctx = run->ctx[i];

        if (ctx->stage == NGX_GRAPH_NOTIFY_STAGE_INTAKE) {
            ngx_graph_notify_intake(ctx);

        } else {
            ngx_graph_notify_chunk(ctx, ctx->from, ctx->to);
        }
    }
}


static void
ngx_graph_notify_thread_done(ngx_event_t *ev)
{
    ngx_graph_notify_run_t *run = ev->data;

    ngx_uint_t                i, n;
    ngx_graph_notify_ctx_t   *ctx[NGX_GRAPH_NOTIFY_RUN_BATCHES];
    ngx_graph_notify_runs_t  *runs;

    runs = run->runs;

    n = run->n;
    ngx_memcpy(ctx, run->ctx, n * sizeof(ngx_graph_notify_ctx_t *));

    run->next = runs->free;
    runs->free = run;

    for (i = 0; i < n; i++) {
        ngx_graph_notify_resume(ctx[i]);
    }

    if (!ngx_queue_empty(&runs->waiting) && !runs->dispatch.posted) {
        ngx_post_event(&runs->dispatch, &ngx_posted_events);
    }
}


static void
ngx_graph_notify_resume(ngx_graph_notify_ctx_t *ctx)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    r->main->blocked--;
    r->aio = 0;

    if (ctx->stage == NGX_GRAPH_NOTIFY_STAGE_CHUNK && !ctx->overloaded) {
        ctx->next = ctx->to;
    }

    ngx_graph_notify_next(r, ctx);

    ngx_http_run_posted_requests(c);
}

#endif


/*
 * The one place where a batch's accepted items are pushed onto the queue
 * and the answer is decided: 202 when every accepted item is kept, 503
 * with Retry-After when none could be.
 */

static ngx_int_t
ngx_graph_notify_accept(ngx_http_request_t *r, ngx_graph_notify_ctx_t *ctx)
{
    size_t                         i;
    ngx_int_t                      jrc;
    ngx_uint_t                     k, held;
    u_char                         buf[64];
    ngx_graph_notify_slot_t       *slot;
    ngx_graph_notify_entry_t      *entries;
    ngx_graph_notify_queue_t      *q;
    ngx_graph_notify_drops_t      *drops;
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_graph_notify_module);
    q = gmcf->shm_zone->data;

    entries = ngx_palloc(r->pool, (ctx->n ? ctx->n : 1)
                                  * sizeof(ngx_graph_notify_entry_t));
    if (entries == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    drops = &ctx->drops;
    ngx_memzero(drops, sizeof(ngx_graph_notify_drops_t));
    k = 0;

    for (i = 0; i < ctx->n; i++) {
        slot = &ctx->slots[i];

        if (slot->dropped) {
            if (drops->total++ == 0) {
                drops->first_index = i;
                drops->first_reason = slot->reason;
                drops->first_subscription = ctx->first_subscription;
            }

            drops->dropped[slot->reason]++;
            continue;
        }

        if (slot->rich) {
            /*
             * The status page tells when an old key may go.  Noted here,
             * on the event loop, not by the thread that decrypted.
             */
            ngx_graph_notify_jwt_key_used(slot->rich->key);
        }

        entries[k++] = slot->entry;
    }

    ctx->kept = k;

    /*
     * Journaled and queued, the whole batch, before the 202; or nothing,
     * and a 503 makes Graph deliver the batch again.  The journal is
     * written at the end of the turn, for every batch of the turn.
     */

    jrc = k ? ngx_graph_notify_journal_append(r, entries, k, &ctx->tokens,
                                              ngx_graph_notify_journaled)
            : NGX_OK;

    if (jrc == NGX_AGAIN) {
        r->main->count++;
        return NGX_DONE;
    }

    if (jrc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (jrc == NGX_DECLINED) {
        /* the journal cannot take it: counted and logged by the journal */
        return ngx_graph_notify_unavailable(r);
    }

    if (jrc == NGX_ABORT) {

        /* its tenant holds its share: the other tenants keep getting 202 */

        ngx_graph_notify_stat_inc(q, share_refused);

        if (ngx_graph_notify_ratelog_allow(&ngx_graph_notify_share_log,
                                           &held))
        {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "graph_notify: a tenant holds its share of the "
                          "queue (%ui%%) while others wait, %ui item(s) "
                          "refused with 503%s", q->share, k,
                          ngx_graph_notify_held(held, buf, sizeof(buf)));
        }

        return ngx_graph_notify_unavailable(r);
    }

    if (jrc == NGX_BUSY) {

        /* nothing was queued: a 503 makes Graph deliver the batch again */

        ngx_graph_notify_stat_inc(q, queue_full);

        if (ngx_graph_notify_ratelog_allow(
                &ngx_graph_notify_log[NGX_GRAPH_NOTIFY_LOG_QUEUE_FULL], &held))
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "graph_notify: queue full (%ui items, %uz bytes), "
                          "%ui item(s) refused with 503%s",
                          q->sh->count, q->sh->bytes, k,
                          ngx_graph_notify_held(held, buf, sizeof(buf)));
        }

        return ngx_graph_notify_unavailable(r);
    }

    return ngx_graph_notify_kept(r, ctx);
}


/* the batch's journal write ended: kept (NGX_OK) or not */

static void
ngx_graph_notify_journaled(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_graph_notify_ctx_t  *ctx;

    if (rc != NGX_OK) {
        /* the journal could not take it: counted and logged by the journal */
        ngx_http_finalize_request(r, ngx_graph_notify_unavailable(r));
        return;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_graph_notify_module);

    ngx_http_finalize_request(r, ngx_graph_notify_kept(r, ctx));
}


/* the batch's accepted items are journaled and queued: the answer */

static ngx_int_t
ngx_graph_notify_kept(ngx_http_request_t *r, ngx_graph_notify_ctx_t *ctx)
{
    size_t                         i;
    ngx_int_t                      rc;
    ngx_uint_t                     k;
    ngx_graph_notify_queue_t      *q;
    ngx_graph_notify_drops_t      *drops;
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_graph_notify_module);
    q = gmcf->shm_zone->data;
    drops = &ctx->drops;
    k = ctx->kept;

    if (k) {
        ngx_graph_notify_queue_wake(q, gmcf->wake_fd, r->connection->log);
    }

    ngx_graph_notify_stat_add(q, items_received, ctx->n);
    ngx_graph_notify_stat_add(q, items_accepted, k);

    if (drops->total) {
        for (i = 0; i < NGX_GRAPH_NOTIFY_DROP_N; i++) {
            if (drops->dropped[i]) {
                ngx_graph_notify_stat_add(q, dropped[i], drops->dropped[i]);
            }
        }

        ngx_graph_notify_log_drops(r, drops, ctx->n);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "graph_notify: queued %ui of %uz item(s)", k, ctx->n);

    /* with graph_notify_sync, the 202 once the journal is on disk */

    rc = k ? ngx_graph_notify_journal_sync(r, ngx_graph_notify_synced)
           : NGX_OK;

    if (rc == NGX_AGAIN) {
        r->main->count++;
        return NGX_DONE;
    }

    if (rc == NGX_ERROR) {
        return ngx_graph_notify_unavailable(r);
    }

    return ngx_graph_notify_accepted(r);
}


static void
ngx_graph_notify_synced(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_finalize_request(r, rc == NGX_OK
                                 ? ngx_graph_notify_accepted(r)
                                 : ngx_graph_notify_unavailable(r));
}


static ngx_int_t
ngx_graph_notify_accepted(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    r->headers_out.status = NGX_HTTP_ACCEPTED;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_OK) {
        rc = ngx_http_send_special(r, NGX_HTTP_LAST);
    }

    return rc;
}


/* a batch refused as a whole: counted, logged (rate-limited), answered */

static ngx_int_t
ngx_graph_notify_failed(ngx_http_request_t *r, ngx_graph_notify_ctx_t *ctx)
{
    ngx_graph_notify_queue_t      *q;
    ngx_graph_notify_main_conf_t  *gmcf;

    if (ctx->fmt == NULL) {
        return ctx->status;
    }

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_graph_notify_module);
    q = gmcf->shm_zone->data;

    ngx_graph_notify_stat_inc(q, rejected);

    return ngx_graph_notify_reject_line(r, ctx->status, ctx->fmt, ctx->msg,
                                        ctx->msg_len);
}


/* 503 with Retry-After: nothing of the batch was kept */

static ngx_int_t
ngx_graph_notify_unavailable(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    h->value.data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (h->value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->value.len = ngx_sprintf(h->value.data, "%d",
                               NGX_GRAPH_NOTIFY_RETRY_AFTER)
                   - h->value.data;

    return NGX_HTTP_SERVICE_UNAVAILABLE;
}


static ngx_int_t
ngx_graph_notify_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_str_null(body);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                          : (size_t) (b->last - b->pos);
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = len;
        return NGX_OK;
    }

    /* several buffers, or a body that NGINX kept in a temporary file */

    body->data = ngx_pnalloc(r->pool, len);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    p = body->data;

    for ( /* void */ ; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                          b->file_pos);

        if (n != b->file_last - b->file_pos) {
            ngx_log_error(NGX_LOG_CRIT, r->connection->log, 0,
                          "graph_notify: reading the buffered body from "
                          "\"%V\" failed", &b->file->name);
            return NGX_ERROR;
        }

        p += n;
    }

    body->len = len;

    return NGX_OK;
}


static ngx_int_t
ngx_graph_notify_item(ngx_graph_notify_ctx_t *ctx,
    ngx_graph_notify_slot_t *slot)
{
    ngx_int_t                          rc;
    ngx_str_t                          value, resource, tenant;
    ngx_graph_notify_loc_conf_t       *glcf;
    ngx_graph_notify_envelope_item_t  *item;

    item = &slot->item;
    glcf = ctx->glcf;

    rc = ngx_graph_notify_check_item(ctx, item, &tenant);

    if (rc != NGX_OK) {
        slot->reason = NGX_GRAPH_NOTIFY_DROP_MALFORMED;
        return rc;
    }

    /* strings are compared decoded: "\u0073ecret" is "secret" */

    if (glcf->client_states) {
        if (item->field[NGX_GRAPH_NOTIFY_FIELD_CLIENT_STATE].type
            != NGX_GRAPH_NOTIFY_JSON_STRING)
        {
            slot->reason = NGX_GRAPH_NOTIFY_DROP_CLIENT_STATE;
            return NGX_DECLINED;
        }

        if (ngx_graph_notify_string(ctx->pool,
                &item->field[NGX_GRAPH_NOTIFY_FIELD_CLIENT_STATE], &value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (!ngx_graph_notify_secret_match(&value, glcf->client_states)) {
            slot->reason = NGX_GRAPH_NOTIFY_DROP_CLIENT_STATE;
            return NGX_DECLINED;
        }
    }

    if (glcf->tenants
        && ngx_graph_notify_tenant_allowed(glcf, &tenant) != NGX_OK)
    {
        slot->reason = NGX_GRAPH_NOTIFY_DROP_TENANT;
        return NGX_DECLINED;
    }

    /* what the helper needs to route the item, kept in its header */

    slot->entry.tenant.len = tenant.len;
    slot->entry.tenant.data = ngx_pnalloc(ctx->pool, tenant.len);
    if (slot->entry.tenant.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(slot->entry.tenant.data, tenant.data, tenant.len);

    ngx_str_null(&slot->entry.record);

    if (item->field[NGX_GRAPH_NOTIFY_FIELD_LIFECYCLE_EVENT].type) {
        slot->kind = "lifecycle";
        slot->entry.kind = NGX_GRAPH_NOTIFY_KIND_LIFECYCLE;

    } else if (item->field[NGX_GRAPH_NOTIFY_FIELD_ENCRYPTED_CONTENT].type) {
        slot->kind = "rich";
        slot->entry.kind = NGX_GRAPH_NOTIFY_KIND_RICH;

        return ngx_graph_notify_prepare_rich(ctx, slot);

    } else {
        slot->kind = "basic";
        slot->entry.kind = NGX_GRAPH_NOTIFY_KIND_OTHER;

        if (ngx_graph_notify_string(ctx->pool,
                &item->field[NGX_GRAPH_NOTIFY_FIELD_RESOURCE], &resource)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ngx_graph_notify_record_id(&resource, &value) == NGX_OK) {
            slot->entry.kind = NGX_GRAPH_NOTIFY_KIND_CALL_RECORD;
            slot->entry.record.len = value.len;
            slot->entry.record.data = ngx_pnalloc(ctx->pool, value.len);
            if (slot->entry.record.data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(slot->entry.record.data, value.data, value.len);
        }
    }

    return NGX_OK;
}


/*
 * The fields the helper and the output rely on, with their types; the
 * tenant, decoded, is returned.  NGX_DECLINED: malformed.
 */

static ngx_int_t
ngx_graph_notify_check_item(ngx_graph_notify_ctx_t *ctx,
    ngx_graph_notify_envelope_item_t *item, ngx_str_t *tenant)
{
    ngx_graph_notify_json_type_e    t;
    ngx_graph_notify_json_value_t  *f;

    f = item->field;

    /* a field twice: jansson would keep the last, the scan keeps neither */

    if (item->item.type != NGX_GRAPH_NOTIFY_JSON_OBJECT || item->duplicate) {
        return NGX_DECLINED;
    }

    /* a string that is empty once decoded is empty as sent: no \u0000 */

    if (f[NGX_GRAPH_NOTIFY_FIELD_SUBSCRIPTION_ID].type
        != NGX_GRAPH_NOTIFY_JSON_STRING
        || f[NGX_GRAPH_NOTIFY_FIELD_SUBSCRIPTION_ID].start
           == f[NGX_GRAPH_NOTIFY_FIELD_SUBSCRIPTION_ID].end)
    {
        return NGX_DECLINED;
    }

    /* the tenant routes the item and names a token: a GUID, nothing else */

    if (f[NGX_GRAPH_NOTIFY_FIELD_TENANT_ID].type
        != NGX_GRAPH_NOTIFY_JSON_STRING)
    {
        return NGX_DECLINED;
    }

    if (ngx_graph_notify_string(ctx->pool,
                                &f[NGX_GRAPH_NOTIFY_FIELD_TENANT_ID], tenant)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_graph_notify_is_guid(tenant) != NGX_OK) {
        return NGX_DECLINED;
    }

    t = f[NGX_GRAPH_NOTIFY_FIELD_LIFECYCLE_EVENT].type;

    if (t != NGX_GRAPH_NOTIFY_JSON_ABSENT) {
        return (t == NGX_GRAPH_NOTIFY_JSON_STRING) ? NGX_OK : NGX_DECLINED;
    }

    if (f[NGX_GRAPH_NOTIFY_FIELD_CHANGE_TYPE].type
        != NGX_GRAPH_NOTIFY_JSON_STRING
        || f[NGX_GRAPH_NOTIFY_FIELD_RESOURCE].type
           != NGX_GRAPH_NOTIFY_JSON_STRING)
    {
        return NGX_DECLINED;
    }

    t = f[NGX_GRAPH_NOTIFY_FIELD_RESOURCE_DATA].type;

    if (t != NGX_GRAPH_NOTIFY_JSON_ABSENT && t != NGX_GRAPH_NOTIFY_JSON_OBJECT)
    {
        return NGX_DECLINED;
    }

    t = f[NGX_GRAPH_NOTIFY_FIELD_ENCRYPTED_CONTENT].type;

    if (t != NGX_GRAPH_NOTIFY_JSON_ABSENT && t != NGX_GRAPH_NOTIFY_JSON_OBJECT)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* a string of the body, decoded into the pool if it holds escapes */

static ngx_int_t
ngx_graph_notify_string(ngx_pool_t *pool, ngx_graph_notify_json_value_t *v,
    ngx_str_t *s)
{
    u_char  *buf;

    buf = NULL;

    if (v->escaped) {
        buf = ngx_pnalloc(pool, v->end - v->start);
        if (buf == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_graph_notify_envelope_string(v, buf, s);

    return NGX_OK;
}


static ngx_int_t
ngx_graph_notify_tenant_allowed(ngx_graph_notify_loc_conf_t *glcf,
    ngx_str_t *tenant)
{
    ngx_str_t   *t;
    ngx_uint_t   i;

    t = glcf->tenants->elts;

    for (i = 0; i < glcf->tenants->nelts; i++) {
        if (t[i].len == tenant->len
            && ngx_strncasecmp(t[i].data, tenant->data, tenant->len) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_graph_notify_prepare_rich(ngx_graph_notify_ctx_t *ctx,
    ngx_graph_notify_slot_t *slot)
{
    ngx_int_t                       rc;
    ngx_uint_t                      i;
    ngx_str_t                      *field[5];
    ngx_graph_notify_json_value_t  *v;
    ngx_graph_notify_encrypted_t    e;

    field[0] = &e.data;
    field[1] = &e.data_key;
    field[2] = &e.data_signature;
    field[3] = &e.cert_id;
    field[4] = &e.thumbprint;

    /* the fields of encryptedContent, in the order of field[] */

    v = &slot->item.field[NGX_GRAPH_NOTIFY_FIELD_DATA];

    for (i = 0; i < 5; i++) {

        if (v[i].type == NGX_GRAPH_NOTIFY_JSON_ABSENT && i == 4) {
            ngx_str_null(field[i]);
            break;
        }

        if (v[i].type != NGX_GRAPH_NOTIFY_JSON_STRING) {
            slot->reason = NGX_GRAPH_NOTIFY_DROP_MALFORMED;
            return NGX_DECLINED;
        }

        if (ngx_graph_notify_string(ctx->pool, &v[i], field[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    slot->rich = ngx_palloc(ctx->pool, sizeof(ngx_graph_notify_decrypt_t));
    if (slot->rich == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_graph_notify_decrypt_prepare(ctx->pool, ctx->glcf->keys, &e,
                                          slot->rich, &slot->reason);

    if (rc != NGX_OK) {
        slot->rich = NULL;
    }

    return rc;
}


/*
 * An item's output line, without jansson: its members as the body holds
 * them, in order, minus the module's own keys, with the whitespace
 * between tokens removed (ngx_graph_notify_envelope_line()), then the
 * call event and the decrypted resource of a rich item (both taken when
 * it was decrypted).
 */

static ngx_int_t
ngx_graph_notify_line(ngx_pool_t *pool,
    ngx_graph_notify_envelope_item_t *item, const char *kind,
    u_char *received, ngx_graph_notify_decrypt_t *rich, ngx_str_t *line)
{
    u_char      *p, *d, *end, *event;
    size_t       len, n;
    ngx_str_t    k, r, *plain;

    static const char  rich_key[] = ",\"decryptedResource\":";
    static const char  event_key[] = ",\"callEvent\":\"";

    k.data = (u_char *) kind;
    k.len = ngx_strlen(kind);
    r.data = received;
    r.len = ngx_strlen(received);

    plain = rich ? &rich->plain : NULL;
    event = rich ? rich->event : NULL;
    n = rich ? rich->event_len : 0;

    /* an escaped byte of the event takes at most 6 ("\u001f") */

    len = ngx_graph_notify_envelope_line_size(item, &r, &k)
          + (n ? sizeof(event_key) - 1 + 6 * n + 1 : 0)
          + (plain ? sizeof(rich_key) - 1 + plain->len : 0)
          + 1;

    line->data = ngx_pnalloc(pool, len);
    if (line->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_graph_notify_envelope_line(line->data, item, &r, &k);

    if (n) {
        p = ngx_cpymem(p, event_key, sizeof(event_key) - 1);

        for (d = event; d < event + n; d++) {
            if (*d == '"' || *d == '\\') {
                *p++ = '\\';
                *p++ = *d;

            } else if (*d < 0x20) {
                p = ngx_sprintf(p, "\\u%04xd", (ngx_uint_t) *d);

            } else {
                *p++ = *d;
            }
        }

        *p++ = '"';
    }

    if (plain) {

        /*
         * The decrypted resource goes in byte for byte, as Graph sent it;
         * only line breaks, which valid JSON has outside strings alone,
         * become spaces so that the record stays on one line.
         */

        p = ngx_cpymem(p, rich_key, sizeof(rich_key) - 1);

        end = plain->data + plain->len;

        for (d = plain->data; d < end; d++) {
            *p++ = (*d == LF || *d == CR) ? ' ' : *d;
        }
    }

    *p++ = '}';

    line->len = p - line->data;

    return NGX_OK;
}


static void
ngx_graph_notify_log_drops(ngx_http_request_t *r,
    ngx_graph_notify_drops_t *drops, ngx_uint_t n)
{
    u_char      *p, *last;
    ngx_uint_t   i, held;
    u_char       counts[256], buf[64];

    if (!ngx_graph_notify_ratelog_allow(
            &ngx_graph_notify_log[NGX_GRAPH_NOTIFY_LOG_DROPS], &held))
    {
        return;
    }

    p = counts;
    last = counts + sizeof(counts);

    for (i = 0; i < NGX_GRAPH_NOTIFY_DROP_N; i++) {
        if (drops->dropped[i]) {
            p = ngx_slprintf(p, last, "%s%V=%ui", p == counts ? "" : " ",
                             &ngx_graph_notify_drop_names[i],
                             drops->dropped[i]);
        }
    }


    /* one line per request, however many items it dropped */

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "graph_notify: dropped %ui of %ui item(s) (%*s); "
                  "first: item %ui, subscription %s: %s%s",
                  drops->total, n, p - counts, counts, drops->first_index,
                  drops->first_subscription,
                  ngx_graph_notify_drop_text[drops->first_reason],
                  ngx_graph_notify_held(held, buf, sizeof(buf)));
}


static void
ngx_graph_notify_sanitize(ngx_graph_notify_json_value_t *value, u_char *buf,
    size_t size)
{
    size_t      i;
    ngx_str_t   s;
    u_char      decoded[6 * 80];

    /* ids come from the network: log them only if they look like ids */

    if (value->type != NGX_GRAPH_NOTIFY_JSON_STRING
        || value->start == value->end
        || (size_t) (value->end - value->start) > sizeof(decoded))
    {
        ngx_cpystrn(buf, (u_char *) "(none)", size);
        return;
    }

    ngx_graph_notify_envelope_string(value, decoded, &s);

    if (s.len >= size) {
        ngx_cpystrn(buf, (u_char *) "(none)", size);
        return;
    }

    for (i = 0; i < s.len; i++) {
        if (!isalnum(s.data[i]) && s.data[i] != '-' && s.data[i] != '_') {
            ngx_cpystrn(buf, (u_char *) "(invalid)", size);
            return;
        }
    }

    ngx_cpystrn(buf, s.data, s.len + 1);
}


/* records why a batch is refused; safe on any thread, nothing is logged */

static void
ngx_graph_notify_fail(ngx_graph_notify_ctx_t *ctx, ngx_int_t status,
    const char *fmt, ...)
{
    va_list  args;

    ctx->status = status;
    ctx->fmt = fmt;

    if (fmt) {
        va_start(args, fmt);
        ctx->msg_len = ngx_vslprintf(ctx->msg, ctx->msg + sizeof(ctx->msg),
                                     fmt, args)
                       - ctx->msg;
        va_end(args);
    }
}


static ngx_int_t
ngx_graph_notify_reject(ngx_http_request_t *r, ngx_int_t status,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;
    u_char    msg[NGX_MAX_ERROR_STR];

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);
    va_end(args);

    return ngx_graph_notify_reject_line(r, status, fmt, msg, p - msg);
}


static ngx_int_t
ngx_graph_notify_reject_line(ngx_http_request_t *r, ngx_int_t status,
    const char *fmt, u_char *msg, size_t len)
{
    ngx_uint_t                       i, held;
    ngx_graph_notify_reject_kind_t  *kind;
    u_char                           buf[64];

    /* the format names the kind; the last slot is shared if they run out */

    kind = ngx_graph_notify_reject_kinds;

    for (i = 0; i < NGX_GRAPH_NOTIFY_REJECT_KINDS - 1; i++) {
        if (kind[i].fmt == fmt || kind[i].fmt == NULL) {
            break;
        }
    }

    kind[i].fmt = fmt;

    if (ngx_graph_notify_ratelog_allow(&kind[i].log, &held)) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "graph_notify: %*s, answered %i%s", len, msg, status,
                      ngx_graph_notify_held(held, buf, sizeof(buf)));
    }

    return status;
}


static char *
ngx_graph_notify_held(ngx_uint_t held, u_char *buf, size_t size)
{
    if (held == 0) {
        return "";
    }

    *ngx_slprintf(buf, buf + size - 1, "; %ui more suppressed", held) = '\0';

    return (char *) buf;
}
