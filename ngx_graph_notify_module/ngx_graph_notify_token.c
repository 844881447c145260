
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>


/*
 * App-only tokens of the Microsoft identity platform (the OAuth2 client
 * credentials grant), cached per tenant.
 */


#define NGX_GRAPH_NOTIFY_LOGIN_URL        "https://login.microsoftonline.com"
#define NGX_GRAPH_NOTIFY_SCOPE                                                \
    "https://graph.microsoft.com/.default"
#define NGX_GRAPH_NOTIFY_ASSERTION_TYPE                                       \
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

/* a token is handed out while it has this much left, seconds */
#define NGX_GRAPH_NOTIFY_TOKEN_MARGIN     60
/* and is renewed in the background from this much before its expiry */
#define NGX_GRAPH_NOTIFY_TOKEN_REFRESH    300

#define NGX_GRAPH_NOTIFY_ASSERTION_LIFE   600
#define NGX_GRAPH_NOTIFY_BACKOFF_MIN      2000
#define NGX_GRAPH_NOTIFY_BACKOFF_MAX      300000

#define NGX_GRAPH_NOTIFY_TENANT_LEN       255
#define NGX_GRAPH_NOTIFY_ACCESS_TOKEN_MAX 16384
#define NGX_GRAPH_NOTIFY_TOKEN_LIFE_MAX   (30 * 86400)
#define NGX_GRAPH_NOTIFY_TOKEN_RESPONSE   (64 * 1024)


typedef struct {
    ngx_str_node_t                    sn;
    ngx_queue_t                       queue;

    u_char                           *bearer;      /* "Bearer <token>" */
    size_t                            bearer_len;
    time_t                            expires;
    time_t                            usable_until;
    time_t                            refresh_at;

    ngx_graph_notify_http_t          *req;
    ngx_uint_t                        failures;

    /* runs while the back-off after a failure lasts */
    ngx_event_t                       backoff;

    unsigned                          waiting:1;
} ngx_graph_notify_token_t;


typedef struct {
    ngx_graph_notify_main_conf_t     *gmcf;
    ngx_graph_notify_queue_t         *queue;
    ngx_graph_notify_stats_t         *stats;
    ngx_log_t                        *log;
    ngx_pool_t                       *pool;
    ngx_pid_t                         pid;

    ngx_graph_notify_token_ready_pt   ready;
    void                             *data;

    ngx_rbtree_t                      rbtree;
    ngx_rbtree_node_t                 sentinel;
    ngx_queue_t                       tokens;
    ngx_uint_t                        count;

    ngx_str_t                         login;
    ngx_str_t                         scope;

    /* timers need a connection with fd -1 as data for debug logging */
    ngx_connection_t                  dummy;
} ngx_graph_notify_token_ctx_t;


static ngx_int_t ngx_graph_notify_token_thumbprint(ngx_pool_t *pool,
    X509 *x509, const EVP_MD *md, ngx_str_t *dst);
static void ngx_graph_notify_token_scope(ngx_graph_notify_token_ctx_t *ctx,
    ngx_str_t *graph_url);
static void ngx_graph_notify_token_cleanup(void *data);
static ngx_graph_notify_token_t *ngx_graph_notify_token_lookup(
    ngx_str_t *tenant, ngx_uint_t create);
static void ngx_graph_notify_token_drop(ngx_graph_notify_token_t *t);
static ngx_int_t ngx_graph_notify_token_fetch(
    ngx_graph_notify_token_ctx_t *ctx, ngx_graph_notify_token_t *t);
static void ngx_graph_notify_token_done(ngx_graph_notify_http_t *req);
static ngx_int_t ngx_graph_notify_token_parse(
    ngx_graph_notify_token_t *t, ngx_graph_notify_http_t *req,
    time_t *lifetime, u_char *error, size_t size);
static void ngx_graph_notify_token_error(json_t *json,
    ngx_graph_notify_http_t *req, u_char *error, size_t size);
static void ngx_graph_notify_token_failed(ngx_graph_notify_token_ctx_t *ctx,
    ngx_graph_notify_token_t *t, ngx_graph_notify_http_t *req,
    u_char *error);
static void ngx_graph_notify_token_backoff_handler(ngx_event_t *ev);
static ngx_int_t ngx_graph_notify_token_assertion(ngx_pool_t *pool,
    ngx_graph_notify_app_t *app, ngx_str_t *aud, ngx_str_t *jwt);
static ngx_int_t ngx_graph_notify_token_sign(ngx_graph_notify_app_t *app,
    ngx_str_t *in, u_char *sig, size_t *len);
static ngx_int_t ngx_graph_notify_token_b64_json(ngx_pool_t *pool,
    json_t *json, ngx_str_t *dst);
static size_t ngx_graph_notify_token_escape(u_char *dst, u_char *src,
    size_t len);


static ngx_graph_notify_token_ctx_t  *ngx_graph_notify_token_ctx;


char *
ngx_graph_notify_app_certificate(ngx_conf_t *cf, ngx_graph_notify_app_t *app,
    ngx_str_t *cert_file, ngx_str_t *key_file)
{
    X509  *x509;

    if (ngx_graph_notify_key_pair(cf, cert_file, key_file, "app", &x509,
                                  &app->key)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* the identity platform refuses it, but that may be the point */

    if (X509_cmp_current_time(X509_get0_notAfter(x509)) < 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "app certificate \"%V\" has expired", cert_file);
    }

    /* the assertion names the certificate by the hash of its DER form */

    if (ngx_graph_notify_token_thumbprint(cf->pool, x509, EVP_sha1(),
                                          &app->x5t)
        != NGX_OK
        || ngx_graph_notify_token_thumbprint(cf->pool, x509, EVP_sha256(),
                                             &app->x5t_s256)
           != NGX_OK)
    {
        X509_free(x509);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot hash app certificate \"%V\": %s",
                           cert_file, ngx_graph_notify_ssl_reason());
        return NGX_CONF_ERROR;
    }

    X509_free(x509);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_graph_notify_token_thumbprint(ngx_pool_t *pool, X509 *x509,
    const EVP_MD *md, ngx_str_t *dst)
{
    u_char        buf[EVP_MAX_MD_SIZE];
    ngx_str_t     src;
    unsigned int  len;

    if (X509_digest(x509, md, buf, &len) != 1) {
        return NGX_ERROR;
    }

    src.data = buf;
    src.len = len;

    dst->data = ngx_pnalloc(pool, ngx_base64_encoded_length(len));
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    /* base64url without padding */
    ngx_encode_base64url(dst, &src);

    return NGX_OK;
}


ngx_int_t
ngx_graph_notify_token_init(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf,
    ngx_graph_notify_token_ready_pt ready, void *data)
{
    u_char                        *p;
    ngx_str_t                     *login;
    ngx_pool_cleanup_t            *cln;
    ngx_graph_notify_token_ctx_t  *ctx;

    ctx = ngx_graph_notify_token_ctx;

    if (ctx && ctx->pid == ngx_pid) {
        ctx->ready = ready;
        ctx->data = data;
        return NGX_OK;
    }

    if (gmcf->app.app_id.len == 0
        || (gmcf->app.secret.len == 0 && gmcf->app.key == NULL)
        || gmcf->shm_zone == NULL || ready == NULL)
    {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "graph_notify: no app credential for the token client");
        return NGX_ERROR;
    }

    ctx = ngx_pcalloc(cycle->pool, sizeof(ngx_graph_notify_token_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->gmcf = gmcf;
    ctx->queue = gmcf->shm_zone->data;
    ctx->stats = &ctx->queue->sh->stats;
    ctx->log = cycle->log;
    ctx->pool = cycle->pool;
    ctx->pid = ngx_pid;
    ctx->ready = ready;
    ctx->data = data;

    ngx_rbtree_init(&ctx->rbtree, &ctx->sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ctx->tokens);

    ctx->dummy.fd = (ngx_socket_t) -1;

    login = &ctx->login;

    if (gmcf->login_url.len) {
        *login = gmcf->login_url;

    } else {
        ngx_str_set(login, NGX_GRAPH_NOTIFY_LOGIN_URL);
    }

    while (login->len && login->data[login->len - 1] == '/') {
        login->len--;
    }

    ngx_graph_notify_token_scope(ctx, &gmcf->graph_url);

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_graph_notify_token_cleanup;
    cln->data = ctx;

    ngx_graph_notify_token_ctx = ctx;

    p = (u_char *) (gmcf->app.key == NULL ? "a client secret"
                    : gmcf->app.alg == NGX_GRAPH_NOTIFY_ASSERTION_RS256
                    ? "a certificate (RS256)" : "a certificate (PS256)");

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "graph_notify: app-only tokens for app %V from %V "
                  "with %s, scope %V", &gmcf->app.app_id, login, p,
                  &ctx->scope);

    return NGX_OK;
}


static void
ngx_graph_notify_token_scope(ngx_graph_notify_token_ctx_t *ctx,
    ngx_str_t *graph_url)
{
    u_char      *p, *host, *last, *port;
    size_t       len;
    ngx_str_t   *scope;
    ngx_uint_t   i;

    static ngx_str_t  clouds[] = {
        ngx_string(".microsoft.com"),
        ngx_string(".microsoft.us"),
        ngx_string(".chinacloudapi.cn"),
        ngx_null_string
    };

    /*
     * The scope is the resource of the Graph cloud in use, "https://"
     * and its host, as graph.microsoft.us for US Government.  Any other
     * host (a simulator, a test server) gets the global Graph's scope.
     */

    scope = &ctx->scope;
    ngx_str_set(scope, NGX_GRAPH_NOTIFY_SCOPE);

    if (graph_url->len <= sizeof("https://") - 1
        || ngx_strncasecmp(graph_url->data, (u_char *) "https://",
                           sizeof("https://") - 1)
           != 0)
    {
        return;
    }

    host = graph_url->data + sizeof("https://") - 1;
    last = graph_url->data + graph_url->len;

    for (p = host; p < last; p++) {
        if (*p == '/' || *p == '?' || *p == '#') {
            break;
        }
    }

    last = p;

    port = ngx_strlchr(host, last, ':');
    if (port) {
        last = port;
    }

    len = last - host;

    for (i = 0; clouds[i].len; i++) {
        if (len > clouds[i].len
            && ngx_strncasecmp(last - clouds[i].len, clouds[i].data,
                               clouds[i].len)
               == 0)
        {
            break;
        }
    }

    if (clouds[i].len == 0) {
        return;
    }

    p = ngx_pnalloc(ctx->pool, sizeof("https:///.default") - 1 + len);
    if (p == NULL) {
        return;
    }

    scope->data = p;
    p = ngx_cpymem(p, "https://", sizeof("https://") - 1);
    p = ngx_cpymem(p, host, len);
    p = ngx_cpymem(p, "/.default", sizeof("/.default") - 1);
    scope->len = p - scope->data;

    ngx_strlow(scope->data, scope->data, scope->len);
}


static void
ngx_graph_notify_token_cleanup(void *data)
{
    ngx_graph_notify_token_ctx_t  *ctx = data;

    ngx_queue_t               *q;
    ngx_graph_notify_token_t  *t;

    /* the single process exits: no fetch and no token outlive the cycle */

    while (!ngx_queue_empty(&ctx->tokens)) {
        q = ngx_queue_head(&ctx->tokens);
        t = ngx_queue_data(q, ngx_graph_notify_token_t, queue);

        if (t->req) {
            ngx_destroy_pool(t->req->pool);
            t->req = NULL;
        }

        if (t->backoff.timer_set) {
            ngx_del_timer(&t->backoff);
        }

        ngx_graph_notify_token_drop(t);

        ngx_queue_remove(q);
        ngx_free(t);
    }

    if (ngx_graph_notify_token_ctx == ctx) {
        ngx_graph_notify_token_ctx = NULL;
    }
}


ngx_int_t
ngx_graph_notify_token_get(ngx_str_t *tenant, ngx_str_t *bearer)
{
    time_t                         now;
    ngx_graph_notify_token_t      *t;
    ngx_graph_notify_token_ctx_t  *ctx;

    ctx = ngx_graph_notify_token_ctx;

    if (ctx == NULL) {
        return NGX_ERROR;
    }

    t = ngx_graph_notify_token_lookup(tenant, 1);
    if (t == NULL) {
        return NGX_ERROR;
    }

    now = ngx_time();

    if (t->bearer && now <= t->usable_until) {

        if (now >= t->refresh_at && t->req == NULL
            && !t->backoff.timer_set)
        {
            /* in the background: the current token is still good */
            (void) ngx_graph_notify_token_fetch(ctx, t);
        }

        bearer->data = t->bearer;
        bearer->len = t->bearer_len;

        return NGX_OK;
    }

    if (t->bearer) {
        ngx_graph_notify_token_drop(t);
    }

    if (t->req) {
        t->waiting = 1;
        return NGX_AGAIN;
    }

    if (t->backoff.timer_set) {
        t->waiting = 1;
        return NGX_BUSY;
    }

    if (ngx_graph_notify_token_fetch(ctx, t) != NGX_OK) {
        return NGX_ERROR;
    }

    t->waiting = 1;

    return NGX_AGAIN;
}


void
ngx_graph_notify_token_invalidate(ngx_str_t *tenant, ngx_str_t *bearer)
{
    size_t                     prefix;
    ngx_graph_notify_token_t  *t;

    if (ngx_graph_notify_token_ctx == NULL) {
        return;
    }

    t = ngx_graph_notify_token_lookup(tenant, 0);

    if (t == NULL || t->bearer == NULL) {
        return;
    }

    /*
     * Only the token that Graph refused: a token fetched meanwhile stays,
     * and a second 401 for the same old token changes nothing.
     */

    prefix = sizeof("Bearer ") - 1;

    if ((bearer->len == t->bearer_len
         && ngx_memcmp(bearer->data, t->bearer, t->bearer_len) == 0)
        || (bearer->len == t->bearer_len - prefix
            && ngx_memcmp(bearer->data, t->bearer + prefix, bearer->len)
               == 0))
    {
        ngx_log_error(NGX_LOG_NOTICE, ngx_graph_notify_token_ctx->log, 0,
                      "graph_notify: Graph refused the token for tenant "
                      "\"%V\", a new one will be fetched", &t->sn.str);

        ngx_graph_notify_token_drop(t);
    }
}


void
ngx_graph_notify_token_forget(ngx_str_t *tenant)
{
    ngx_graph_notify_token_t      *t;
    ngx_graph_notify_token_ctx_t  *ctx;

    /* a tenant without work for a while: its entry and token go */

    ctx = ngx_graph_notify_token_ctx;

    if (ctx == NULL) {
        return;
    }

    t = ngx_graph_notify_token_lookup(tenant, 0);

    if (t == NULL || t->req) {
        return;
    }

    if (t->backoff.timer_set) {
        ngx_del_timer(&t->backoff);
    }

    ngx_graph_notify_token_drop(t);

    ngx_rbtree_delete(&ctx->rbtree, &t->sn.node);
    ngx_queue_remove(&t->queue);
    ctx->count--;
    ngx_free(t);
}


static ngx_graph_notify_token_t *
ngx_graph_notify_token_lookup(ngx_str_t *tenant, ngx_uint_t create)
{
    u_char                         key[NGX_GRAPH_NOTIFY_TENANT_LEN];
    uint32_t                       hash;
    ngx_str_t                      name;
    ngx_uint_t                     i;
    ngx_str_node_t                *sn;
    ngx_graph_notify_token_t      *t;
    ngx_graph_notify_token_ctx_t  *ctx;

    ctx = ngx_graph_notify_token_ctx;

    /*
     * A tenant id or domain goes into the token URL's path: letters,
     * digits, "-", "." and "_" only, starting with a letter or a digit.
     */

    if (tenant->len == 0 || tenant->len > NGX_GRAPH_NOTIFY_TENANT_LEN) {
        goto invalid;
    }

    for (i = 0; i < tenant->len; i++) {
        key[i] = ngx_tolower(tenant->data[i]);

        if ((key[i] >= 'a' && key[i] <= 'z')
            || (key[i] >= '0' && key[i] <= '9'))
        {
            continue;
        }

        if (i && (key[i] == '-' || key[i] == '.' || key[i] == '_')) {
            continue;
        }

        goto invalid;
    }

    name.data = key;
    name.len = tenant->len;

    hash = ngx_crc32_short(key, name.len);

    sn = ngx_str_rbtree_lookup(&ctx->rbtree, &name, hash);

    if (sn) {
        return (ngx_graph_notify_token_t *) sn;
    }

    if (!create) {
        return NULL;
    }

    /* the Graph client keeps to graph_notify_max_tenants before this */

    if (ctx->count >= ctx->gmcf->max_tenants) {
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "graph_notify: tokens of more than %ui tenants",
                      ctx->gmcf->max_tenants);
        return NULL;
    }

    t = ngx_alloc(sizeof(ngx_graph_notify_token_t) + name.len, ctx->log);
    if (t == NULL) {
        return NULL;
    }

    ngx_memzero(t, sizeof(ngx_graph_notify_token_t));

    t->sn.str.data = (u_char *) t + sizeof(ngx_graph_notify_token_t);
    t->sn.str.len = name.len;
    ngx_memcpy(t->sn.str.data, key, name.len);

    t->sn.node.key = hash;

    t->backoff.handler = ngx_graph_notify_token_backoff_handler;
    t->backoff.data = &ctx->dummy;
    t->backoff.log = ctx->log;
    t->backoff.cancelable = 1;

    ngx_rbtree_insert(&ctx->rbtree, &t->sn.node);
    ngx_queue_insert_tail(&ctx->tokens, &t->queue);
    ctx->count++;

    return t;

invalid:

    /* not echoed: it may hold anything */

    ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                  "graph_notify: invalid tenant id (%uz bytes) for a token",
                  tenant->len);

    return NULL;
}


static void
ngx_graph_notify_token_drop(ngx_graph_notify_token_t *t)
{
    if (t->bearer) {
        ngx_explicit_memzero(t->bearer, t->bearer_len);
        ngx_free(t->bearer);
        t->bearer = NULL;
        t->bearer_len = 0;
    }

    t->expires = 0;
    t->usable_until = 0;
    t->refresh_at = 0;
}


static ngx_int_t
ngx_graph_notify_token_fetch(ngx_graph_notify_token_ctx_t *ctx,
    ngx_graph_notify_token_t *t)
{
    u_char                   *p;
    size_t                    len;
    ngx_int_t                 rc;
    ngx_str_t                 url, form, jwt, name, value;
    ngx_pool_t               *pool;
    ngx_graph_notify_app_t   *app;
    ngx_graph_notify_http_t  *req;

    app = &ctx->gmcf->app;

    pool = ngx_create_pool(4096, ctx->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    url.len = ctx->login.len + 1 + t->sn.str.len
              + sizeof("/oauth2/v2.0/token") - 1;

    url.data = ngx_pnalloc(pool, url.len);
    if (url.data == NULL) {
        goto failed;
    }

    (void) ngx_sprintf(url.data, "%V/%V/oauth2/v2.0/token",
                       &ctx->login, &t->sn.str);

    req = ngx_graph_notify_http_create(pool, ctx->log, "POST", &url);
    if (req == NULL) {
        goto failed;
    }

    ngx_str_null(&jwt);

    if (app->key) {
        /* the assertion's audience is exactly the token URL */

        if (ngx_graph_notify_token_assertion(pool, app, &url, &jwt)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, ctx->log, 0,
                          "graph_notify: cannot sign a client assertion: %s",
                          ngx_graph_notify_ssl_reason());
            goto failed;
        }
    }

    len = sizeof("client_id=&scope=&grant_type=client_credentials") - 1
          + 3 * app->app_id.len + 3 * ctx->scope.len;

    if (app->key) {
        len += sizeof("&client_assertion_type=&client_assertion=") - 1
               + 3 * (sizeof(NGX_GRAPH_NOTIFY_ASSERTION_TYPE) - 1)
               + 3 * jwt.len;

    } else {
        len += sizeof("&client_secret=") - 1 + 3 * app->secret.len;
    }

    form.data = ngx_pnalloc(pool, len);
    if (form.data == NULL) {
        goto failed;
    }

    /* every value percent-encoded: secrets hold "+", "/", "=" and "~" */

    p = ngx_cpymem(form.data, "client_id=", sizeof("client_id=") - 1);
    p += ngx_graph_notify_token_escape(p, app->app_id.data, app->app_id.len);
    p = ngx_cpymem(p, "&scope=", sizeof("&scope=") - 1);
    p += ngx_graph_notify_token_escape(p, ctx->scope.data, ctx->scope.len);
    p = ngx_cpymem(p, "&grant_type=client_credentials",
                   sizeof("&grant_type=client_credentials") - 1);

    if (app->key) {
        p = ngx_cpymem(p, "&client_assertion_type=",
                       sizeof("&client_assertion_type=") - 1);
        p += ngx_graph_notify_token_escape(p,
                                 (u_char *) NGX_GRAPH_NOTIFY_ASSERTION_TYPE,
                                 sizeof(NGX_GRAPH_NOTIFY_ASSERTION_TYPE) - 1);
        p = ngx_cpymem(p, "&client_assertion=",
                       sizeof("&client_assertion=") - 1);
        p += ngx_graph_notify_token_escape(p, jwt.data, jwt.len);

    } else {
        p = ngx_cpymem(p, "&client_secret=", sizeof("&client_secret=") - 1);
        p += ngx_graph_notify_token_escape(p, app->secret.data,
                                           app->secret.len);
    }

    form.len = p - form.data;

    rc = ngx_graph_notify_http_body(req, &form,
                                    "application/x-www-form-urlencoded");

    /* the request keeps its own copy, wiped when its pool goes */

    ngx_explicit_memzero(form.data, len);

    if (jwt.len) {
        ngx_explicit_memzero(jwt.data, jwt.len);
    }

    if (rc != NGX_OK) {
        goto failed;
    }

    ngx_str_set(&name, "Accept");
    ngx_str_set(&value, "application/json");

    if (ngx_graph_notify_http_header(req, &name, &value) != NGX_OK) {
        goto failed;
    }

    req->handler = ngx_graph_notify_token_done;
    req->data = t;
    req->max_body = NGX_GRAPH_NOTIFY_TOKEN_RESPONSE;

    if (ngx_graph_notify_http_start(req) != NGX_OK) {
        goto failed;
    }

    t->req = req;

    ngx_graph_notify_stat_inc(ctx->queue, token_requests);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->log, 0,
                   "graph_notify: token request for tenant \"%V\"",
                   &t->sn.str);

    return NGX_OK;

failed:

    ngx_destroy_pool(pool);

    return NGX_ERROR;
}


static void
ngx_graph_notify_token_done(ngx_graph_notify_http_t *req)
{
    u_char                         error[160];
    time_t                         lifetime;
    ngx_int_t                      rc;
    ngx_graph_notify_token_t      *t;
    ngx_graph_notify_token_ctx_t  *ctx;

    ctx = ngx_graph_notify_token_ctx;
    t = req->data;

    t->req = NULL;

    rc = ngx_graph_notify_token_parse(t, req, &lifetime, error,
                                      sizeof(error));

    if (rc == NGX_OK) {
        t->failures = 0;

        if (t->backoff.timer_set) {
            ngx_del_timer(&t->backoff);
        }

        ctx->stats->token_failing = 0;
        ctx->stats->token_ok_at = ngx_time();
        ctx->stats->token_expires_at = t->expires;

        ngx_log_error(NGX_LOG_INFO, ctx->log, 0,
                      "graph_notify: token for tenant \"%V\", valid for %T s",
                      &t->sn.str, lifetime);

    } else {
        ngx_graph_notify_token_failed(ctx, t, req, error);
    }

    /* the answer holds the token */

    ngx_explicit_memzero(req->body.data, req->body.len);
    ngx_destroy_pool(req->pool);

    if (t->waiting) {
        t->waiting = 0;
        ctx->ready(ctx->data);
    }
}


static ngx_int_t
ngx_graph_notify_token_parse(ngx_graph_notify_token_t *t,
    ngx_graph_notify_http_t *req, time_t *lifetime, u_char *error,
    size_t size)
{
    u_char      *p;
    size_t       len;
    json_t      *json, *value;
    time_t       life, now;
    ngx_int_t    n;
    ngx_uint_t   i;
    const char  *s, *token;

    if (req->result != CURLE_OK) {
        ngx_graph_notify_token_error(NULL, req, error, size);
        return NGX_ERROR;
    }

    json = json_loadb((char *) req->body.data, req->body.len, 0, NULL);

    if (req->status == 200 && !json_is_object(json)) {
        (void) ngx_cpystrn(error, (u_char *) "HTTP 200, invalid token "
                           "response", size);

        if (json) {
            json_decref(json);
        }

        return NGX_ERROR;
    }

    if (req->status != 200) {
        ngx_graph_notify_token_error(json, req, error, size);

        if (json) {
            json_decref(json);
        }

        return NGX_ERROR;
    }

    token = NULL;
    len = 0;
    life = 0;

    value = json_object_get(json, "access_token");

    if (json_is_string(value)) {
        token = json_string_value(value);
        len = json_string_length(value);

        for (i = 0; i < len; i++) {
            if (token[i] < '!' || token[i] > '~') {
                break;
            }
        }

        if (len == 0 || i < len || len > NGX_GRAPH_NOTIFY_ACCESS_TOKEN_MAX) {
            token = NULL;
        }
    }

    value = json_object_get(json, "token_type");

    if (value
        && (!json_is_string(value)
            || ngx_strcasecmp((u_char *) json_string_value(value),
                              (u_char *) "Bearer")
               != 0))
    {
        token = NULL;
    }

    /* a number, or a numeric string as older endpoints send */

    value = json_object_get(json, "expires_in");

    if (json_is_integer(value)) {
        life = (time_t) ngx_min(json_integer_value(value),
                                NGX_GRAPH_NOTIFY_TOKEN_LIFE_MAX + 1);

    } else if (json_is_real(value)) {
        life = (time_t) ngx_min(json_real_value(value),
                                NGX_GRAPH_NOTIFY_TOKEN_LIFE_MAX + 1);

    } else if (json_is_string(value)) {
        s = json_string_value(value);
        n = ngx_atoi((u_char *) s, ngx_strlen(s));
        life = (n == NGX_ERROR)
               ? 0 : (time_t) ngx_min(n, NGX_GRAPH_NOTIFY_TOKEN_LIFE_MAX + 1);
    }

    if (token == NULL || life <= 0 || life > NGX_GRAPH_NOTIFY_TOKEN_LIFE_MAX) {
        (void) ngx_snprintf(error, size, "HTTP %l, invalid token response%Z",
                            req->status);

        if (token) {
            ngx_explicit_memzero((void *) token, len);
        }

        json_decref(json);
        return NGX_ERROR;
    }

    p = ngx_alloc(sizeof("Bearer ") - 1 + len, ngx_cycle->log);

    if (p == NULL) {
        ngx_explicit_memzero((void *) token, len);
        json_decref(json);
        (void) ngx_cpystrn(error, (u_char *) "out of memory", size);
        return NGX_ERROR;
    }

    ngx_graph_notify_token_drop(t);

    t->bearer = p;
    t->bearer_len = sizeof("Bearer ") - 1 + len;

    p = ngx_cpymem(p, "Bearer ", sizeof("Bearer ") - 1);
    ngx_memcpy(p, token, len);

    /* the only other copy of the token that is ours to wipe */
    ngx_explicit_memzero((void *) token, len);
    json_decref(json);

    /*
     * Handed out while 60 s are left, renewed from 5 min before the end;
     * shorter lifetimes (tests) get proportional margins, never a token
     * that is stale on arrival.
     */

    now = ngx_time();

    t->expires = now + life;
    t->usable_until = t->expires - ((life >= 4 * NGX_GRAPH_NOTIFY_TOKEN_MARGIN)
                                    ? NGX_GRAPH_NOTIFY_TOKEN_MARGIN
                                    : life / 4);
    t->refresh_at = t->expires - ((life >= 2 * NGX_GRAPH_NOTIFY_TOKEN_REFRESH)
                                  ? NGX_GRAPH_NOTIFY_TOKEN_REFRESH
                                  : life / 2);

    *lifetime = life;

    return NGX_OK;
}


static void
ngx_graph_notify_token_error(json_t *json, ngx_graph_notify_http_t *req,
    u_char *error, size_t size)
{
    u_char      *p, *last;
    json_t      *value;
    const char  *s;

    /*
     * Only the identity platform's error code and the AADSTS number are
     * kept: descriptions may echo what was sent.
     */

    p = error;
    last = error + size - 1;

    value = json_object_get(json, "error");

    if (json_is_string(value)) {
        for (s = json_string_value(value); *s && p < last - 32; s++) {
            if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')
                || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'
                || *s == '.')
            {
                *p++ = *s;
            }
        }

        /* "AADSTS7000215: Invalid client secret provided. ..." */

        value = json_object_get(json, "error_description");

        if (p > error && json_is_string(value)) {
            s = json_string_value(value);

            if (ngx_strncmp(s, "AADSTS", 6) == 0
                && s[6] >= '0' && s[6] <= '9')
            {
                p = ngx_cpymem(p, " AADSTS", 7);

                for (s += 6; *s >= '0' && *s <= '9' && p < last; s++) {
                    *p++ = *s;
                }
            }
        }
    }

    if (p > error) {
        *p = '\0';
        return;
    }

    if (req->result != CURLE_OK) {
        /* curl's messages name hosts and ports, never queries */

        for (s = req->error; *s && p < last; s++) {
            *p++ = (*s >= ' ' && *s <= '~') ? *s : '?';
        }

        *p = '\0';
        return;
    }

    (void) ngx_snprintf(error, size, "HTTP %l%Z", req->status);
}


static void
ngx_graph_notify_token_failed(ngx_graph_notify_token_ctx_t *ctx,
    ngx_graph_notify_token_t *t, ngx_graph_notify_http_t *req,
    u_char *error)
{
    ngx_msec_t                 delay, retry;
    ngx_graph_notify_queue_t  *q;

    q = ctx->queue;

    ngx_graph_notify_stat_inc(q, token_failures);
    ctx->stats->token_failing = 1;

    ngx_shmtx_lock(&q->shpool->mutex);
    (void) ngx_cpystrn(ctx->stats->token_error, error,
                       sizeof(ctx->stats->token_error));
    ngx_shmtx_unlock(&q->shpool->mutex);

    /*
     * Exponential back-off with a jitter of 25% either way, so that
     * tenants failing together do not retry together; longer if the
     * server asks for it (429, 503), but never beyond the maximum.
     */

    t->failures++;

    delay = (ngx_msec_t) NGX_GRAPH_NOTIFY_BACKOFF_MIN
            << ngx_min(t->failures - 1, 8);

    if (delay > NGX_GRAPH_NOTIFY_BACKOFF_MAX) {
        delay = NGX_GRAPH_NOTIFY_BACKOFF_MAX;
    }

    delay = delay - delay / 4 + (ngx_msec_t) ngx_random() % (delay / 2 + 1);

    if (req->retry_after > 0) {
        retry = (req->retry_after < NGX_GRAPH_NOTIFY_BACKOFF_MAX / 1000)
                ? (ngx_msec_t) req->retry_after * 1000
                : NGX_GRAPH_NOTIFY_BACKOFF_MAX;

        if (retry > delay) {
            delay = retry;
        }
    }

    if (delay > NGX_GRAPH_NOTIFY_BACKOFF_MAX) {
        delay = NGX_GRAPH_NOTIFY_BACKOFF_MAX;
    }

    if (t->backoff.timer_set) {
        ngx_del_timer(&t->backoff);
    }

    ngx_add_timer(&t->backoff, delay);

    /* failures 1, 2, 4, 8, ... of a tenant: a few lines, not one each */

    if ((t->failures & (t->failures - 1)) == 0) {
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "graph_notify: token request for tenant \"%V\" "
                      "failed: %s, next attempt in %M ms (failure %ui)",
                      &t->sn.str, error, delay, t->failures);
    }
}


static void
ngx_graph_notify_token_backoff_handler(ngx_event_t *ev)
{
    ngx_graph_notify_token_t      *t;
    ngx_graph_notify_token_ctx_t  *ctx;

    ctx = ngx_graph_notify_token_ctx;

    /* ev->data is the dummy connection: the token is found by offset */

    t = (ngx_graph_notify_token_t *)
            ((u_char *) ev - offsetof(ngx_graph_notify_token_t, backoff));

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "graph_notify: token back-off for tenant \"%V\" ended",
                   &t->sn.str);

    if (ctx && t->waiting) {
        t->waiting = 0;
        ctx->ready(ctx->data);
    }
}


static ngx_int_t
ngx_graph_notify_token_assertion(ngx_pool_t *pool,
    ngx_graph_notify_app_t *app, ngx_str_t *aud, ngx_str_t *jwt)
{
    u_char      *p, *sig;
    u_char       rnd[16], jti[36];
    size_t       sig_len;
    json_t      *header, *claims;
    ngx_int_t    rc;
    ngx_str_t    h, c, in, s;
    json_int_t   now;
    const char  *alg, *name;
    ngx_str_t   *x5t;

    /* jti: a random (version 4) UUID */

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    rnd[6] = (rnd[6] & 0x0f) | 0x40;
    rnd[8] = (rnd[8] & 0x3f) | 0x80;

    p = ngx_hex_dump(jti, rnd, 4);
    *p++ = '-';
    p = ngx_hex_dump(p, rnd + 4, 2);
    *p++ = '-';
    p = ngx_hex_dump(p, rnd + 6, 2);
    *p++ = '-';
    p = ngx_hex_dump(p, rnd + 8, 2);
    *p++ = '-';
    (void) ngx_hex_dump(p, rnd + 10, 6);

    if (app->alg == NGX_GRAPH_NOTIFY_ASSERTION_RS256) {
        alg = "RS256";
        name = "x5t";
        x5t = &app->x5t;

    } else {
        alg = "PS256";
        name = "x5t#S256";
        x5t = &app->x5t_s256;
    }

    now = (json_int_t) ngx_time();

    header = json_pack("{s:s, s:s, s:s%}", "alg", alg, "typ", "JWT",
                       name, (char *) x5t->data, x5t->len);

    claims = json_pack("{s:s%, s:s%, s:s%, s:s%, s:I, s:I, s:I}",
                       "aud", (char *) aud->data, aud->len,
                       "iss", (char *) app->app_id.data, app->app_id.len,
                       "sub", (char *) app->app_id.data, app->app_id.len,
                       "jti", (char *) jti, sizeof(jti),
                       "nbf", now, "iat", now,
                       "exp", now + NGX_GRAPH_NOTIFY_ASSERTION_LIFE);

    rc = NGX_ERROR;

    if (header == NULL || claims == NULL
        || ngx_graph_notify_token_b64_json(pool, header, &h) != NGX_OK
        || ngx_graph_notify_token_b64_json(pool, claims, &c) != NGX_OK)
    {
        goto done;
    }

    /* header "." claims "." signature, each base64url without padding */

    sig_len = EVP_PKEY_size(app->key);

    in.len = h.len + 1 + c.len;
    jwt->data = ngx_pnalloc(pool, in.len + 1
                                  + ngx_base64_encoded_length(sig_len));
    sig = ngx_pnalloc(pool, sig_len);

    if (jwt->data == NULL || sig == NULL) {
        goto done;
    }

    p = ngx_cpymem(jwt->data, h.data, h.len);
    *p++ = '.';
    p = ngx_cpymem(p, c.data, c.len);

    in.data = jwt->data;

    if (ngx_graph_notify_token_sign(app, &in, sig, &sig_len) != NGX_OK) {
        goto done;
    }

    *p++ = '.';

    s.data = sig;
    s.len = sig_len;

    in.data = p;
    ngx_encode_base64url(&in, &s);

    jwt->len = p + in.len - jwt->data;

    rc = NGX_OK;

done:

    if (header) {
        json_decref(header);
    }

    if (claims) {
        json_decref(claims);
    }

    return rc;
}


static ngx_int_t
ngx_graph_notify_token_sign(ngx_graph_notify_app_t *app, ngx_str_t *in,
    u_char *sig, size_t *len)
{
    ngx_int_t      rc;
    EVP_MD_CTX    *md;
    EVP_PKEY_CTX  *pctx;

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;
    pctx = NULL;

    if (EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, app->key) != 1) {
        goto done;
    }

    if (app->alg == NGX_GRAPH_NOTIFY_ASSERTION_RS256) {
        /* RS256: PKCS#1 v1.5 */

        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0) {
            goto done;
        }

    } else {
        /* PS256 (RFC 7518): PSS, MGF1 with SHA-256, 32-byte salt */

        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0
            || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0
            || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST)
               <= 0)
        {
            goto done;
        }
    }

    if (EVP_DigestSign(md, sig, len, in->data, in->len) != 1) {
        goto done;
    }

    rc = NGX_OK;

done:

    EVP_MD_CTX_free(md);

    return rc;
}


static ngx_int_t
ngx_graph_notify_token_b64_json(ngx_pool_t *pool, json_t *json,
    ngx_str_t *dst)
{
    char       *text;
    ngx_str_t   src;

    text = json_dumps(json, JSON_COMPACT);
    if (text == NULL) {
        return NGX_ERROR;
    }

    src.data = (u_char *) text;
    src.len = ngx_strlen(text);

    dst->data = ngx_pnalloc(pool, ngx_base64_encoded_length(src.len));

    if (dst->data) {
        ngx_encode_base64url(dst, &src);
    }

    free(text);

    return dst->data ? NGX_OK : NGX_ERROR;
}


static size_t
ngx_graph_notify_token_escape(u_char *dst, u_char *src, size_t len)
{
    u_char  *p, c;
    size_t   i;

    static u_char  hex[] = "0123456789ABCDEF";

    /* all but letters, digits, "-", "." and "_" */

    p = dst;

    for (i = 0; i < len; i++) {
        c = src[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_')
        {
            *p++ = c;
            continue;
        }

        *p++ = '%';
        *p++ = hex[c >> 4];
        *p++ = hex[c & 0xf];
    }

    return p - dst;
}
