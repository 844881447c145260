
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"
#include "ngx_graph_notify_journal.h"
#include "ngx_graph_notify_jwt.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#endif


/*
 * Graph signs each rich batch with one JWT per (app, tenant) of its items
 * ("validationTokens").  The helper checks them before any item of the
 * batch is written: RS256 with a key of the identity platform's key set,
 * chosen by "kid"; lifetime; audience (our app); the change-notification
 * publisher (azp in v2 tokens, appid in v1); the issuer of the item's
 * tenant.  A batch that fails is dropped whole, as Graph advises.
 *
 * The key set comes from the OpenID metadata under graph_notify_login_url
 * and is kept in the helper's directory, so that a new helper validates
 * before its first fetch.  While no key set can be had, rich items wait
 * in the queue, held by the helper with their leases renewed.
 */


#define NGX_GRAPH_NOTIFY_JWT_PUBLISHER_ID                                     \
    "0bf30f3b-4a52-48df-9a82-234910c4a086"
#define NGX_GRAPH_NOTIFY_JWT_METADATA                                         \
    "/common/v2.0/.well-known/openid-configuration"
#define NGX_GRAPH_NOTIFY_JWT_ISS_V2       "https://login.microsoftonline.com/"
#define NGX_GRAPH_NOTIFY_JWT_ISS_V1       "https://sts.windows.net/"
#define NGX_GRAPH_NOTIFY_JWT_FILE         "jwks.json"

/* clock skew allowed on exp and nbf, seconds */
#define NGX_GRAPH_NOTIFY_JWT_SKEW         300
/* a key set is used this long after its fetch, and refreshed after half */
#define NGX_GRAPH_NOTIFY_JWT_TTL          86400
#define NGX_GRAPH_NOTIFY_JWT_REFRESH      43200
/* an unknown kid refetches the key set at most this often, seconds */
#define NGX_GRAPH_NOTIFY_JWT_REFETCH      60
#define NGX_GRAPH_NOTIFY_JWT_BACKOFF_MIN  1000
#define NGX_GRAPH_NOTIFY_JWT_BACKOFF_MAX  30000

#define NGX_GRAPH_NOTIFY_JWT_HELD_MAX     4096
#define NGX_GRAPH_NOTIFY_JWT_TOKENS_MAX   64
#define NGX_GRAPH_NOTIFY_JWT_TOKEN_MAX    16384
#define NGX_GRAPH_NOTIFY_JWT_KEYS_MAX     64
#define NGX_GRAPH_NOTIFY_JWT_KID_MAX      128
#define NGX_GRAPH_NOTIFY_JWT_MISSES       16
#define NGX_GRAPH_NOTIFY_JWT_BODY_MAX     (1024 * 1024)
#define NGX_GRAPH_NOTIFY_JWT_BATCH        64


typedef struct {
    ngx_str_t                      kid;
    EVP_PKEY                      *pkey;
} ngx_graph_notify_jwk_t;


typedef struct {
    ngx_pool_t                    *pool;
    ngx_array_t                    keys;
    time_t                         fetched;
} ngx_graph_notify_jwks_t;


typedef struct {
    ngx_graph_notify_item_t       *shm;
    uint64_t                       seq;
    ngx_uint_t                     lane;
} ngx_graph_notify_jwt_held_t;


/* a kid not in the key set: refetched for once, then refused */
typedef struct {
    u_char                         kid[NGX_GRAPH_NOTIFY_JWT_KID_MAX];
    size_t                         len;
    time_t                         seen;
} ngx_graph_notify_jwt_miss_t;


typedef struct {
    ngx_graph_notify_main_conf_t  *gmcf;
    ngx_graph_notify_queue_t      *queue;
    ngx_graph_notify_stats_t      *stats;
    ngx_log_t                     *log;

    ngx_str_t                      file;
    ngx_str_t                      tmp_file;
    ngx_graph_notify_jwks_t       *jwks;

    ngx_pool_t                    *fetch_pool;
    ngx_uint_t                     fetching;
    ngx_uint_t                     refetch;
    time_t                         last_fetch;
    time_t                         last_refetch;
    time_t                         due;
    ngx_uint_t                     failures;

    ngx_event_t                    timer;
    ngx_connection_t               dummy;

    ngx_graph_notify_jwt_held_t   *held;
    ngx_uint_t                     nheld;

    ngx_graph_notify_jwt_miss_t    misses[NGX_GRAPH_NOTIFY_JWT_MISSES];
    ngx_uint_t                     next_miss;
} ngx_graph_notify_jwt_t;


/* what the filter knows of one item */
typedef struct {
    ngx_str_t                      tokens;
    ngx_uint_t                     rich;
    ngx_uint_t                     group;
    ngx_int_t                      verdict;
} ngx_graph_notify_jwt_item_t;


static void ngx_graph_notify_jwt_cleanup(void *data);
static void ngx_graph_notify_jwt_load(ngx_graph_notify_jwt_t *ctx);
static ngx_graph_notify_jwks_t *ngx_graph_notify_jwt_parse_jwks(
    ngx_graph_notify_jwt_t *ctx, ngx_str_t *body, u_char *error,
    size_t size);
static EVP_PKEY *ngx_graph_notify_jwt_rsa_key(ngx_pool_t *pool,
    const char *n64, const char *e64);
static void ngx_graph_notify_jwt_free_jwks(void *data);
static void ngx_graph_notify_jwt_schedule(ngx_graph_notify_jwt_t *ctx,
    time_t when);
static void ngx_graph_notify_jwt_timer_handler(ngx_event_t *ev);
static void ngx_graph_notify_jwt_fetch(ngx_graph_notify_jwt_t *ctx);
static ngx_int_t ngx_graph_notify_jwt_get(ngx_graph_notify_jwt_t *ctx,
    ngx_str_t *url, ngx_graph_notify_http_done_pt handler);
static void ngx_graph_notify_jwt_metadata_done(ngx_graph_notify_http_t *req);
static void ngx_graph_notify_jwt_keys_done(ngx_graph_notify_http_t *req);
static void ngx_graph_notify_jwt_fetch_failed(ngx_graph_notify_jwt_t *ctx,
    const char *fmt, ...);
static void ngx_graph_notify_jwt_save(ngx_graph_notify_jwt_t *ctx,
    ngx_str_t *body);
static void ngx_graph_notify_jwt_release(ngx_graph_notify_jwt_t *ctx);
static ngx_uint_t ngx_graph_notify_jwt_usable(ngx_graph_notify_jwt_t *ctx);
static ngx_int_t ngx_graph_notify_jwt_group(ngx_graph_notify_jwt_t *ctx,
    ngx_str_t *tokens, time_t received, ngx_graph_notify_job_t *jobs,
    ngx_graph_notify_jwt_item_t *items, ngx_uint_t n, ngx_uint_t group,
    ngx_graph_notify_jwt_reason_e *reason);
static ngx_int_t ngx_graph_notify_jwt_verify(ngx_graph_notify_jwt_t *ctx,
    ngx_pool_t *pool, json_t *token, time_t at, ngx_str_t *tid,
    ngx_str_t *kid, ngx_graph_notify_jwt_reason_e *reason);
static json_t *ngx_graph_notify_jwt_part(ngx_pool_t *pool, u_char *start,
    u_char *end);
static ngx_int_t ngx_graph_notify_jwt_audience_ok(
    ngx_graph_notify_jwt_t *ctx, json_t *aud);
static ngx_int_t ngx_graph_notify_jwt_str_eq(json_t *v, const char *s,
    size_t len);
static ngx_int_t ngx_graph_notify_jwt_unknown_kid(
    ngx_graph_notify_jwt_t *ctx, ngx_str_t *kid);
static void ngx_graph_notify_jwt_hold(ngx_graph_notify_jwt_t *ctx,
    ngx_graph_notify_job_t *job);
static void ngx_graph_notify_jwt_drop(ngx_graph_notify_jwt_t *ctx,
    ngx_graph_notify_job_t *jobs, ngx_graph_notify_jwt_item_t *items,
    ngx_uint_t n, ngx_uint_t group, ngx_graph_notify_jwt_reason_e reason);
static void ngx_graph_notify_jwt_set_error(ngx_graph_notify_jwt_t *ctx,
    u_char *msg, size_t len);


ngx_str_t  ngx_graph_notify_jwt_reason_names[] = {
    ngx_string("signature"),
    ngx_string("expired"),
    ngx_string("audience"),
    ngx_string("publisher"),
    ngx_string("issuer"),
    ngx_string("unknown_kid"),
    ngx_string("malformed"),
    ngx_string("missing")
};


static char  *ngx_graph_notify_jwt_reason_text[] = {
    "signature does not verify (RS256)",
    "expired or not yet valid",
    "audience is not our app",
    "not issued to Graph's change-notification publisher",
    "issuer is not the item's tenant",
    "signed with a key the identity platform does not list",
    "malformed token",
    "no token for the item's tenant"
};


static ngx_graph_notify_jwt_t  *ngx_graph_notify_jwt;


/* configuration */

char *
ngx_graph_notify_jwt_tokens(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    ngx_str_t  *value;

    if (gmcf->jwt_check != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "on") == 0) {
        gmcf->jwt_check = 1;

    } else if (ngx_strcmp(value[1].data, "off") == 0) {
        gmcf->jwt_check = 0;

        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "validation tokens of rich notifications are not "
                           "checked: anyone who knows the URL and the client "
                           "state can have forged items written; for tests "
                           "only");

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\", expected \"on\" or \"off\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_graph_notify_jwt_audience(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    ngx_str_t   *value, *aud;
    ngx_uint_t   i, k;

    if (gmcf->jwt_audiences) {
        return "is duplicate";
    }

    value = cf->args->elts;

    gmcf->jwt_audiences = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                           sizeof(ngx_str_t));
    if (gmcf->jwt_audiences == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        /* a GUID: 8-4-4-4-12 hex digits */

        for (k = 0; k < value[i].len; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23) {
                if (value[i].data[k] != '-') {
                    break;
                }

            } else if (!isxdigit(value[i].data[k])) {
                break;
            }
        }

        if (value[i].len != 36 || k != 36) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid application (client) id \"%V\", "
                               "expected a GUID", &value[i]);
            return NGX_CONF_ERROR;
        }

        aud = ngx_array_push(gmcf->jwt_audiences);
        if (aud == NULL) {
            return NGX_CONF_ERROR;
        }

        *aud = value[i];
    }

    return NGX_CONF_OK;
}


void
ngx_graph_notify_jwt_init_conf(ngx_conf_t *cf,
    ngx_graph_notify_main_conf_t *gmcf)
{
    ngx_str_t  *aud;

    ngx_conf_init_value(gmcf->jwt_check, 1);

    /* our app id is the audience unless others are given */

    if (gmcf->jwt_audiences == NULL && gmcf->app.app_id.len) {
        gmcf->jwt_audiences = ngx_array_create(cf->pool, 1,
                                               sizeof(ngx_str_t));
        if (gmcf->jwt_audiences == NULL) {
            return;
        }

        aud = ngx_array_push(gmcf->jwt_audiences);
        if (aud == NULL) {
            gmcf->jwt_audiences = NULL;
            return;
        }

        *aud = gmcf->app.app_id;
    }
}


char *
ngx_graph_notify_jwt_check_conf(ngx_conf_t *cf,
    ngx_graph_notify_main_conf_t *gmcf)
{
    /* a location that accepts rich notifications */

    gmcf->rich = 1;

    if (gmcf->jwt_check && gmcf->jwt_audiences == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "rich notifications need graph_notify_app_id or "
                           "graph_notify_validation_audience, to check their "
                           "validation tokens");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the helper */

ngx_int_t
ngx_graph_notify_jwt_init(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf)
{
    u_char                  *p;
    size_t                   len;
    ngx_pool_cleanup_t      *cln;
    ngx_graph_notify_jwt_t  *ctx;

    if (!gmcf->jwt_check || !gmcf->rich) {
        return NGX_OK;
    }

    ctx = ngx_pcalloc(cycle->pool, sizeof(ngx_graph_notify_jwt_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->held = ngx_alloc(NGX_GRAPH_NOTIFY_JWT_HELD_MAX
                          * sizeof(ngx_graph_notify_jwt_held_t), cycle->log);
    if (ctx->held == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        ngx_free(ctx->held);
        return NGX_ERROR;
    }

    cln->handler = ngx_graph_notify_jwt_cleanup;
    cln->data = ctx;

    ctx->gmcf = gmcf;
    ctx->queue = gmcf->shm_zone->data;
    ctx->stats = &ctx->queue->sh->stats;
    ctx->log = cycle->log;

    ctx->dummy.fd = (ngx_socket_t) -1;

    ctx->timer.handler = ngx_graph_notify_jwt_timer_handler;
    ctx->timer.data = &ctx->dummy;
    ctx->timer.log = ctx->log;
    ctx->timer.cancelable = 1;

    len = gmcf->path->name.len + sizeof("/" NGX_GRAPH_NOTIFY_JWT_FILE ".tmp");

    p = ngx_pnalloc(cycle->pool, 2 * len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->file.data = p;
    ctx->file.len = ngx_sprintf(p, "%V/" NGX_GRAPH_NOTIFY_JWT_FILE "%Z",
                                &gmcf->path->name) - p - 1;

    p += len;
    ctx->tmp_file.data = p;
    ctx->tmp_file.len = ngx_sprintf(p, "%V/" NGX_GRAPH_NOTIFY_JWT_FILE
                                    ".tmp%Z", &gmcf->path->name) - p - 1;

    ngx_graph_notify_jwt = ctx;

    ctx->stats->jwt_enabled = 1;
    ctx->stats->jwt_waiting = 0;

    if (ngx_graph_notify_http_init(cycle, gmcf) != NGX_OK) {
        ngx_graph_notify_jwt_set_error(ctx, (u_char *) "no HTTP client",
                                       sizeof("no HTTP client") - 1);
    }

    ngx_graph_notify_jwt_load(ctx);

    if (ctx->jwks
        && ngx_time() - ctx->jwks->fetched < NGX_GRAPH_NOTIFY_JWT_REFRESH)
    {
        ngx_graph_notify_jwt_schedule(ctx, ctx->jwks->fetched
                                           + NGX_GRAPH_NOTIFY_JWT_REFRESH);

    } else {
        ngx_graph_notify_jwt_schedule(ctx, ngx_time());
    }

    return NGX_OK;
}


static void
ngx_graph_notify_jwt_cleanup(void *data)
{
    ngx_graph_notify_jwt_t  *ctx = data;

    /* held items stay in flight: the next helper takes them back */

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (ctx->fetch_pool) {
        ngx_destroy_pool(ctx->fetch_pool);
        ctx->fetch_pool = NULL;
    }

    if (ctx->jwks) {
        ngx_destroy_pool(ctx->jwks->pool);
        ctx->jwks = NULL;
    }

    ngx_free(ctx->held);

    if (ngx_graph_notify_jwt == ctx) {
        ngx_graph_notify_jwt = NULL;
    }
}


static void
ngx_graph_notify_jwt_load(ngx_graph_notify_jwt_t *ctx)
{
    u_char                   *buf;
    ssize_t                   n;
    ngx_str_t                 body;
    ngx_file_t                file;
    ngx_file_info_t           fi;
    ngx_graph_notify_jwks_t  *jwks;
    u_char                    error[120];

    /* a small file read once at start, as the index is */

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = ctx->file;
    file.log = ctx->log;

    file.fd = ngx_open_file(ctx->file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN,
                            0);
    if (file.fd == NGX_INVALID_FILE) {
        return;
    }

    buf = NULL;

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) <= 0
        || ngx_file_size(&fi) > NGX_GRAPH_NOTIFY_JWT_BODY_MAX)
    {
        goto done;
    }

    if (ngx_time() - ngx_file_mtime(&fi) >= NGX_GRAPH_NOTIFY_JWT_TTL) {
        ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                      "graph_notify: the kept key set \"%V\" is older than "
                      "24 hours, not used", &ctx->file);
        goto done;
    }

    buf = ngx_alloc(ngx_file_size(&fi), ctx->log);
    if (buf == NULL) {
        goto done;
    }

    n = ngx_read_file(&file, buf, ngx_file_size(&fi), 0);

    if (n != ngx_file_size(&fi)) {
        goto done;
    }

    body.data = buf;
    body.len = n;

    jwks = ngx_graph_notify_jwt_parse_jwks(ctx, &body, error, sizeof(error));

    if (jwks == NULL) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "graph_notify: the kept key set \"%V\" is not used: %s",
                      &ctx->file, error);
        goto done;
    }

    jwks->fetched = ngx_file_mtime(&fi);
    ctx->jwks = jwks;

    ctx->stats->jwt_keys = jwks->keys.nelts;
    ctx->stats->jwt_fetched_at = jwks->fetched;

    ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                  "graph_notify: %ui signing key(s) of the identity platform "
                  "from \"%V\"", jwks->keys.nelts, &ctx->file);

done:

    if (buf) {
        ngx_free(buf);
    }

    (void) ngx_close_file(file.fd);
}


static ngx_graph_notify_jwks_t *
ngx_graph_notify_jwt_parse_jwks(ngx_graph_notify_jwt_t *ctx, ngx_str_t *body,
    u_char *error, size_t size)
{
    size_t                    i;
    json_t                   *root, *keys, *k, *kid, *kty, *use, *n, *e;
    ngx_pool_t               *pool;
    ngx_pool_cleanup_t       *cln;
    ngx_graph_notify_jwk_t   *jwk;
    ngx_graph_notify_jwks_t  *jwks;

    root = json_loadb((char *) body->data, body->len, 0, NULL);
    keys = json_object_get(root, "keys");

    if (!json_is_array(keys)) {
        json_decref(root);
        ngx_cpystrn(error, (u_char *) "not a key set (no \"keys\" array)",
                    size);
        return NULL;
    }

    pool = ngx_create_pool(4096, ctx->log);
    if (pool == NULL) {
        json_decref(root);
        ngx_cpystrn(error, (u_char *) "no memory", size);
        return NULL;
    }

    jwks = ngx_pcalloc(pool, sizeof(ngx_graph_notify_jwks_t));
    if (jwks == NULL
        || ngx_array_init(&jwks->keys, pool, 8,
                          sizeof(ngx_graph_notify_jwk_t))
           != NGX_OK)
    {
        goto nomem;
    }

    jwks->pool = pool;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        goto nomem;
    }

    cln->handler = ngx_graph_notify_jwt_free_jwks;
    cln->data = jwks;

    json_array_foreach(keys, i, k) {

        if (jwks->keys.nelts == NGX_GRAPH_NOTIFY_JWT_KEYS_MAX) {
            break;
        }

        kty = json_object_get(k, "kty");
        use = json_object_get(k, "use");
        kid = json_object_get(k, "kid");
        n = json_object_get(k, "n");
        e = json_object_get(k, "e");

        /* RSA signing keys only; others are of no use for RS256 */

        if (!ngx_graph_notify_jwt_str_eq(kty, "RSA", 3)
            || (use && !ngx_graph_notify_jwt_str_eq(use, "sig", 3))
            || !json_is_string(kid) || json_string_length(kid) == 0
            || json_string_length(kid) > NGX_GRAPH_NOTIFY_JWT_KID_MAX
            || !json_is_string(n) || !json_is_string(e))
        {
            continue;
        }

        jwk = ngx_array_push(&jwks->keys);
        if (jwk == NULL) {
            goto nomem;
        }

        jwk->pkey = ngx_graph_notify_jwt_rsa_key(pool, json_string_value(n),
                                                 json_string_value(e));
        if (jwk->pkey == NULL) {
            jwks->keys.nelts--;
            continue;
        }

        jwk->kid.len = json_string_length(kid);
        jwk->kid.data = ngx_pnalloc(pool, jwk->kid.len);
        if (jwk->kid.data == NULL) {
            goto nomem;
        }

        ngx_memcpy(jwk->kid.data, json_string_value(kid), jwk->kid.len);
    }

    json_decref(root);

    if (jwks->keys.nelts == 0) {
        ngx_destroy_pool(pool);
        ngx_cpystrn(error, (u_char *) "no RSA signing key of 2048 bits or "
                    "more in the key set", size);
        return NULL;
    }

    return jwks;

nomem:

    json_decref(root);
    ngx_destroy_pool(pool);
    ngx_cpystrn(error, (u_char *) "no memory", size);

    return NULL;
}


static EVP_PKEY *
ngx_graph_notify_jwt_rsa_key(ngx_pool_t *pool, const char *n64,
    const char *e64)
{
    BIGNUM     *bn, *be;
    EVP_PKEY   *pkey;
    ngx_str_t   src, n, e;

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    OSSL_PARAM      *params;
    EVP_PKEY_CTX    *pctx;
    OSSL_PARAM_BLD  *bld;
#else
    RSA             *rsa;
#endif

    src.data = (u_char *) n64;
    src.len = ngx_strlen(n64);

    n.data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len) + 1);
    if (n.data == NULL || ngx_decode_base64url(&n, &src) != NGX_OK) {
        return NULL;
    }

    src.data = (u_char *) e64;
    src.len = ngx_strlen(e64);

    e.data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len) + 1);
    if (e.data == NULL || ngx_decode_base64url(&e, &src) != NGX_OK) {
        return NULL;
    }

    /* 2048 to 8192 bits, a small odd exponent */

    if (n.len < 256 || n.len > 1024 || e.len == 0 || e.len > 8) {
        return NULL;
    }

    bn = BN_bin2bn(n.data, n.len, NULL);
    be = BN_bin2bn(e.data, e.len, NULL);
    pkey = NULL;

    if (bn == NULL || be == NULL || BN_num_bits(bn) < 2048
        || !BN_is_odd(be))
    {
        goto done;
    }

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)

    params = NULL;
    pctx = NULL;

    bld = OSSL_PARAM_BLD_new();

    if (bld != NULL
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn)
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be)
        && (params = OSSL_PARAM_BLD_to_param(bld)) != NULL
        && (pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) != NULL
        && EVP_PKEY_fromdata_init(pctx) == 1)
    {
        if (EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params)
            != 1)
        {
            pkey = NULL;
        }
    }

    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);

#else

    rsa = RSA_new();

    if (rsa != NULL && RSA_set0_key(rsa, bn, be, NULL) == 1) {
        bn = NULL;
        be = NULL;

        pkey = EVP_PKEY_new();

        if (pkey != NULL && EVP_PKEY_assign_RSA(pkey, rsa) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;

        } else if (pkey != NULL) {
            rsa = NULL;
        }
    }

    RSA_free(rsa);

#endif

done:

    BN_free(bn);
    BN_free(be);

    ERR_clear_error();

    return pkey;
}


static void
ngx_graph_notify_jwt_free_jwks(void *data)
{
    ngx_graph_notify_jwks_t  *jwks = data;

    ngx_uint_t               i;
    ngx_graph_notify_jwk_t  *jwk;

    jwk = jwks->keys.elts;

    for (i = 0; i < jwks->keys.nelts; i++) {
        EVP_PKEY_free(jwk[i].pkey);
    }

    jwks->keys.nelts = 0;
}


static void
ngx_graph_notify_jwt_schedule(ngx_graph_notify_jwt_t *ctx, time_t when)
{
    time_t  now;

    /* the earliest wish wins; a fetch in flight reschedules when done */

    if (ctx->fetching) {
        return;
    }

    if (ctx->timer.timer_set && ctx->due <= when) {
        return;
    }

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    now = ngx_time();
    ctx->due = when;

    ngx_add_timer(&ctx->timer,
                  when > now ? (ngx_msec_t) (when - now) * 1000 : 0);
}


static void
ngx_graph_notify_jwt_timer_handler(ngx_event_t *ev)
{
    ngx_graph_notify_jwt_t  *ctx;

    ctx = ngx_graph_notify_jwt;

    if (ctx == NULL || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_graph_notify_jwt_fetch(ctx);
}


static void
ngx_graph_notify_jwt_fetch(ngx_graph_notify_jwt_t *ctx)
{
    u_char     *p;
    ngx_str_t   url;

    if (ctx->fetching) {
        return;
    }

    ctx->fetch_pool = ngx_create_pool(4096, ctx->log);
    if (ctx->fetch_pool == NULL) {
        ngx_graph_notify_jwt_fetch_failed(ctx, "no memory");
        return;
    }

    url.len = ctx->gmcf->login_url.len + sizeof(NGX_GRAPH_NOTIFY_JWT_METADATA)
              - 1;
    url.data = ngx_pnalloc(ctx->fetch_pool, url.len);
    if (url.data == NULL) {
        ngx_graph_notify_jwt_fetch_failed(ctx, "no memory");
        return;
    }

    p = ngx_cpymem(url.data, ctx->gmcf->login_url.data,
                   ctx->gmcf->login_url.len);
    ngx_memcpy(p, NGX_GRAPH_NOTIFY_JWT_METADATA,
               sizeof(NGX_GRAPH_NOTIFY_JWT_METADATA) - 1);

    ctx->fetching = 1;
    ctx->last_fetch = ngx_time();

    if (ctx->refetch) {
        ctx->refetch = 0;
        ctx->last_refetch = ctx->last_fetch;
    }

    ngx_graph_notify_stat_inc(ctx->queue, jwt_fetches);

    if (ngx_graph_notify_jwt_get(ctx, &url,
                                 ngx_graph_notify_jwt_metadata_done)
        != NGX_OK)
    {
        ngx_graph_notify_jwt_fetch_failed(ctx, "the HTTP client failed");
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->log, 0,
                   "graph_notify: fetching the key set from %V", &url);
}



static ngx_int_t
ngx_graph_notify_jwt_get(ngx_graph_notify_jwt_t *ctx, ngx_str_t *url,
    ngx_graph_notify_http_done_pt handler)
{
    ngx_str_t                 name, value;
    ngx_graph_notify_http_t  *req;

    req = ngx_graph_notify_http_create(ctx->fetch_pool, ctx->log, "GET", url);
    if (req == NULL) {
        return NGX_ERROR;
    }

    req->handler = handler;
    req->data = ctx;
    req->max_body = NGX_GRAPH_NOTIFY_JWT_BODY_MAX;

    ngx_str_set(&name, "Accept");
    ngx_str_set(&value, "application/json");

    if (ngx_graph_notify_http_header(req, &name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_graph_notify_http_start(req);
}


static void
ngx_graph_notify_jwt_metadata_done(ngx_graph_notify_http_t *req)
{
    ngx_graph_notify_jwt_t *ctx = req->data;

    json_t     *root, *uri;
    ngx_str_t   url, *login;

    if (req->result != CURLE_OK) {
        ngx_graph_notify_jwt_fetch_failed(ctx, "OpenID metadata: %s",
                                          req->error);
        return;
    }

    if (req->status != 200) {
        ngx_graph_notify_jwt_fetch_failed(ctx, "OpenID metadata: HTTP %l",
                                          req->status);
        return;
    }

    root = json_loadb((char *) req->body.data, req->body.len, 0, NULL);
    uri = json_object_get(root, "jwks_uri");

    if (!json_is_string(uri)) {
        json_decref(root);
        ngx_graph_notify_jwt_fetch_failed(ctx, "OpenID metadata without "
                                          "\"jwks_uri\"");
        return;
    }

    /*
     * The keys must come from the identity platform itself: a jwks_uri
     * elsewhere is refused, whatever the metadata says.
     */

    login = &ctx->gmcf->login_url;

    url.len = json_string_length(uri);
    url.data = ngx_pnalloc(ctx->fetch_pool, url.len + 1);

    if (url.data == NULL) {
        json_decref(root);
        ngx_graph_notify_jwt_fetch_failed(ctx, "no memory");
        return;
    }

    ngx_memcpy(url.data, json_string_value(uri), url.len);
    url.data[url.len] = '\0';

    json_decref(root);

    if (url.len <= login->len + 1
        || ngx_strncasecmp(url.data, login->data, login->len) != 0
        || url.data[login->len] != '/')
    {
        ngx_graph_notify_jwt_fetch_failed(ctx, "\"jwks_uri\" is not under "
                                          "graph_notify_login_url");
        return;
    }

    if (ngx_graph_notify_jwt_get(ctx, &url, ngx_graph_notify_jwt_keys_done)
        != NGX_OK)
    {
        ngx_graph_notify_jwt_fetch_failed(ctx, "the HTTP client failed");
    }
}


static void
ngx_graph_notify_jwt_keys_done(ngx_graph_notify_http_t *req)
{
    ngx_graph_notify_jwt_t *ctx = req->data;

    ngx_graph_notify_jwks_t  *jwks;
    u_char                    error[120];

    if (req->result != CURLE_OK) {
        ngx_graph_notify_jwt_fetch_failed(ctx, "key set: %s", req->error);
        return;
    }

    if (req->status != 200) {
        ngx_graph_notify_jwt_fetch_failed(ctx, "key set: HTTP %l",
                                          req->status);
        return;
    }

    jwks = ngx_graph_notify_jwt_parse_jwks(ctx, &req->body, error,
                                           sizeof(error));
    if (jwks == NULL) {
        ngx_graph_notify_jwt_fetch_failed(ctx, "key set: %s", error);
        return;
    }

    jwks->fetched = ngx_time();

    ngx_graph_notify_jwt_save(ctx, &req->body);

    if (ctx->jwks) {
        ngx_destroy_pool(ctx->jwks->pool);
    }

    ctx->jwks = jwks;

    ctx->stats->jwt_keys = jwks->keys.nelts;
    ctx->stats->jwt_fetched_at = jwks->fetched;

    ngx_graph_notify_jwt_set_error(ctx, NULL, 0);

    if (ctx->failures) {
        ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                      "graph_notify: the key set of the identity platform "
                      "can be had again");
    }

    ngx_log_error(NGX_LOG_INFO, ctx->log, 0,
                  "graph_notify: fetched %ui signing key(s) of the identity "
                  "platform", jwks->keys.nelts);

    ctx->failures = 0;
    ctx->fetching = 0;

    /* the request lives in this pool: destroyed last */

    ngx_destroy_pool(ctx->fetch_pool);
    ctx->fetch_pool = NULL;

    ngx_graph_notify_jwt_schedule(ctx, jwks->fetched
                                       + NGX_GRAPH_NOTIFY_JWT_REFRESH);

    ngx_graph_notify_jwt_release(ctx);
}


static void
ngx_graph_notify_jwt_fetch_failed(ngx_graph_notify_jwt_t *ctx,
    const char *fmt, ...)
{
    u_char      *p;
    va_list      args;
    ngx_msec_t   delay;
    u_char       msg[120];

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);
    va_end(args);

    ngx_graph_notify_stat_inc(ctx->queue, jwt_fetch_failures);
    ngx_graph_notify_jwt_set_error(ctx, msg, p - msg);

    /* once per failing spell, and once a minute while it lasts */

    if (ctx->failures == 0 || ctx->failures % 16 == 0) {
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "graph_notify: cannot fetch the key set of the "
                      "identity platform: %*s%s", p - msg, msg,
                      ngx_graph_notify_jwt_usable(ctx)
                          ? "" : ", rich items wait");
    }

    ctx->failures++;
    ctx->fetching = 0;

    if (ctx->fetch_pool) {
        ngx_destroy_pool(ctx->fetch_pool);
        ctx->fetch_pool = NULL;
    }

    delay = NGX_GRAPH_NOTIFY_JWT_BACKOFF_MIN
            << ngx_min(ctx->failures - 1, 5);
    delay = ngx_min(delay, NGX_GRAPH_NOTIFY_JWT_BACKOFF_MAX);

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    ctx->due = ngx_time() + delay / 1000;
    ngx_add_timer(&ctx->timer, delay);

    /* held items decide again: some may need no key, or a kept one */
    ngx_graph_notify_jwt_release(ctx);
}


static void
ngx_graph_notify_jwt_save(ngx_graph_notify_jwt_t *ctx, ngx_str_t *body)
{
    ngx_fd_t  fd;

    /* public keys: kept for a restart, written whole and renamed */

    fd = ngx_open_file(ctx->tmp_file.data, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, ngx_errno,
                      "graph_notify: " ngx_open_file_n " \"%V\" failed",
                      &ctx->tmp_file);
        return;
    }

    if (ngx_write_fd(fd, body->data, body->len) != (ssize_t) body->len) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, ngx_errno,
                      "graph_notify: writing \"%V\" failed", &ctx->tmp_file);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(ctx->tmp_file.data);
        return;
    }

    (void) ngx_close_file(fd);

    if (ngx_rename_file(ctx->tmp_file.data, ctx->file.data)
        == NGX_FILE_ERROR)
    {
        ngx_log_error(NGX_LOG_WARN, ctx->log, ngx_errno,
                      "graph_notify: " ngx_rename_file_n " \"%V\" to \"%V\" "
                      "failed", &ctx->tmp_file, &ctx->file);
        (void) ngx_delete_file(ctx->tmp_file.data);
    }
}


static void
ngx_graph_notify_jwt_release(ngx_graph_notify_jwt_t *ctx)
{
    ngx_graph_notify_job_t  job;

    if (ctx->nheld == 0) {
        return;
    }

    /* back to the head of the queue, in their order */

    while (ctx->nheld) {
        ctx->nheld--;

        ngx_memzero(&job, sizeof(ngx_graph_notify_job_t));

        job.shm = ctx->held[ctx->nheld].shm;
        job.seq = ctx->held[ctx->nheld].seq;
        job.lane = ctx->held[ctx->nheld].lane;

        ngx_graph_notify_queue_release(ctx->queue, &job);
    }

    ctx->stats->jwt_waiting = 0;

    ngx_graph_notify_helper_kick();
}


static ngx_uint_t
ngx_graph_notify_jwt_usable(ngx_graph_notify_jwt_t *ctx)
{
    return ctx->jwks != NULL
           && ngx_time() - ctx->jwks->fetched < NGX_GRAPH_NOTIFY_JWT_TTL;
}


ngx_uint_t
ngx_graph_notify_jwt_busy(void)
{
    ngx_graph_notify_jwt_t  *ctx;

    /* a full round may be held: the rest waits in the queue */

    ctx = ngx_graph_notify_jwt;

    return ctx != NULL
           && ctx->nheld + NGX_GRAPH_NOTIFY_JWT_BATCH
              > NGX_GRAPH_NOTIFY_JWT_HELD_MAX;
}


void
ngx_graph_notify_jwt_filter(ngx_graph_notify_job_t *jobs, ngx_uint_t *n,
    ngx_pool_t *pool)
{
    ngx_int_t                       rc;
    ngx_uint_t                      i, j, k, groups;
    ngx_graph_notify_jwt_t         *ctx;
    ngx_graph_notify_jwt_reason_e   reason;
    ngx_graph_notify_jwt_item_t     items[NGX_GRAPH_NOTIFY_JWT_BATCH];

    ctx = ngx_graph_notify_jwt;

    if (ctx == NULL || *n == 0) {
        return;
    }

    if (*n > NGX_GRAPH_NOTIFY_JWT_BATCH) {
        /* never: the helper takes fewer at once; refuse to guess */
        for (i = NGX_GRAPH_NOTIFY_JWT_BATCH; i < *n; i++) {
            ngx_graph_notify_queue_release(ctx->queue, &jobs[i]);
        }

        *n = NGX_GRAPH_NOTIFY_JWT_BATCH;
    }

    ngx_memzero(items, *n * sizeof(ngx_graph_notify_jwt_item_t));

    /*
     * Items of one POST share its validationTokens: they are judged
     * together.  The item's tokens pointer, read without the lock, only
     * tells whether there are tokens to copy (under it).
     */

    groups = 0;

    for (i = 0; i < *n; i++) {
        items[i].rich = (jobs[i].kind == NGX_GRAPH_NOTIFY_KIND_RICH);
        items[i].group = NGX_GRAPH_NOTIFY_JWT_BATCH;

        if (jobs[i].shm->tokens == NULL && !items[i].rich) {
            continue;
        }

        rc = ngx_graph_notify_queue_tokens(ctx->queue, &jobs[i], pool,
                                           &items[i].tokens);

        if (rc == NGX_DECLINED) {
            /* no longer ours: its lease ran out and another helper has it */
            items[i].verdict = NGX_ABORT;
            continue;
        }

        if (rc != NGX_OK) {
            items[i].verdict = NGX_AGAIN;
            continue;
        }

        if (items[i].tokens.len == 0) {
            /* rich without tokens: alone, and refused */
            items[i].group = groups++;
            continue;
        }

        for (j = 0; j < i; j++) {
            if (items[j].group != NGX_GRAPH_NOTIFY_JWT_BATCH
                && items[j].tokens.len == items[i].tokens.len
                && ngx_memcmp(items[j].tokens.data, items[i].tokens.data,
                              items[i].tokens.len)
                   == 0)
            {
                items[i].group = items[j].group;
                break;
            }
        }

        if (j == i) {
            items[i].group = groups++;
        }
    }

    for (k = 0; k < groups; k++) {

        for (i = 0; i < *n; i++) {
            if (items[i].group == k) {
                break;
            }
        }

        reason = NGX_GRAPH_NOTIFY_JWT_MISSING;

        if (items[i].tokens.len == 0) {
            rc = NGX_DECLINED;

        } else {
            rc = ngx_graph_notify_jwt_group(ctx, &items[i].tokens,
                                            jobs[i].received, jobs, items,
                                            *n, k, &reason);
        }

        if (rc == NGX_OK) {
            ngx_graph_notify_stat_inc(ctx->queue, jwt_batches);
            ngx_graph_notify_stat_inc(ctx->queue, jwt_valid);
            continue;
        }

        for (i = 0; i < *n; i++) {
            if (items[i].group == k) {
                items[i].verdict = rc;
            }
        }

        if (rc == NGX_DECLINED) {
            ngx_graph_notify_stat_inc(ctx->queue, jwt_batches);
            ngx_graph_notify_jwt_drop(ctx, jobs, items, *n, k, reason);
        }
    }

    /* keep the rest, in their order */

    j = 0;

    for (i = 0; i < *n; i++) {

        if (items[i].verdict == NGX_AGAIN) {
            ngx_graph_notify_jwt_hold(ctx, &jobs[i]);
            continue;
        }

        if (items[i].verdict == NGX_DECLINED
            || items[i].verdict == NGX_ABORT)
        {
            continue;
        }

        if (j != i) {
            jobs[j] = jobs[i];
        }

        j++;
    }

    *n = j;

    ctx->stats->jwt_waiting = ctx->nheld;
}


static ngx_int_t
ngx_graph_notify_jwt_group(ngx_graph_notify_jwt_t *ctx, ngx_str_t *tokens,
    time_t received, ngx_graph_notify_job_t *jobs,
    ngx_graph_notify_jwt_item_t *items, ngx_uint_t n, ngx_uint_t group,
    ngx_graph_notify_jwt_reason_e *reason)
{
    size_t                          i, ntids;
    json_t                         *array, *token;
    time_t                          at;
    ngx_int_t                       rc, wait;
    ngx_str_t                       kid, tids[NGX_GRAPH_NOTIFY_JWT_TOKENS_MAX];
    ngx_uint_t                      k;
    ngx_pool_t                     *pool;
    ngx_graph_notify_jwt_reason_e   r;

    if (!ngx_graph_notify_jwt_usable(ctx)) {

        /* a fetch is running or due (after a back-off): it releases us */

        if (!ctx->fetching && !ctx->timer.timer_set) {
            ngx_graph_notify_jwt_schedule(ctx, ngx_time());
        }

        if (ctx->stats->jwt_error[0] == '\0') {
            ngx_graph_notify_jwt_set_error(ctx, (u_char *) "no key set yet",
                                           sizeof("no key set yet") - 1);
        }

        return NGX_AGAIN;
    }

    array = json_loadb((char *) tokens->data, tokens->len, 0, NULL);

    if (!json_is_array(array) || json_array_size(array) == 0
        || json_array_size(array) > NGX_GRAPH_NOTIFY_JWT_TOKENS_MAX)
    {
        json_decref(array);
        *reason = NGX_GRAPH_NOTIFY_JWT_MALFORMED;
        return NGX_DECLINED;
    }

    /* lifetimes as of when the batch came, however long it waited since */

    at = received ? received : ngx_time();

    pool = ngx_create_pool(4096, ctx->log);
    if (pool == NULL) {
        json_decref(array);
        return NGX_AGAIN;
    }

    rc = NGX_OK;
    wait = 0;
    ntids = 0;

    json_array_foreach(array, i, token) {

        r = NGX_GRAPH_NOTIFY_JWT_N;

        rc = ngx_graph_notify_jwt_verify(ctx, pool, token, at, &tids[ntids],
                                         &kid, &r);

        if (rc == NGX_OK) {
            ntids++;
            continue;
        }

        if (rc == NGX_AGAIN) {
            wait = 1;
            continue;
        }

        if (rc == NGX_ERROR) {
            wait = 1;
            continue;
        }

        *reason = r;
        break;
    }

    json_decref(array);

    if (rc == NGX_DECLINED) {
        ngx_destroy_pool(pool);
        return NGX_DECLINED;
    }

    if (wait) {
        ngx_destroy_pool(pool);
        return NGX_AGAIN;
    }

    /* one token for each tenant of the batch's rich items */

    for (k = 0; k < n; k++) {
        if (items[k].group != group || !items[k].rich) {
            continue;
        }

        for (i = 0; i < ntids; i++) {
            if (tids[i].len == jobs[k].tenant.len
                && ngx_strncasecmp(tids[i].data, jobs[k].tenant.data,
                                   tids[i].len)
                   == 0)
            {
                break;
            }
        }

        if (i == ntids) {
            ngx_destroy_pool(pool);
            *reason = NGX_GRAPH_NOTIFY_JWT_MISSING;
            return NGX_DECLINED;
        }
    }

    ngx_destroy_pool(pool);

    return NGX_OK;
}


static ngx_int_t
ngx_graph_notify_jwt_verify(ngx_graph_notify_jwt_t *ctx, ngx_pool_t *pool,
    json_t *token, time_t at, ngx_str_t *tid, ngx_str_t *kid,
    ngx_graph_notify_jwt_reason_e *reason)
{
    int                      ok;
    u_char                  *s, *end, *dot1, *dot2, *p;
    size_t                   len;
    json_t                  *header, *claims, *v, *azp, *iss;
    ngx_int_t                rc;
    ngx_str_t                src, sig;
    ngx_uint_t               i;
    EVP_MD_CTX              *md;
    ngx_graph_notify_jwk_t  *jwk;
    u_char                   expect[128];

    header = NULL;
    claims = NULL;

    *reason = NGX_GRAPH_NOTIFY_JWT_MALFORMED;

    if (!json_is_string(token)
        || json_string_length(token) > NGX_GRAPH_NOTIFY_JWT_TOKEN_MAX)
    {
        return NGX_DECLINED;
    }

    s = (u_char *) json_string_value(token);
    end = s + json_string_length(token);

    dot1 = ngx_strlchr(s, end, '.');
    dot2 = dot1 ? ngx_strlchr(dot1 + 1, end, '.') : NULL;

    if (dot1 == NULL || dot2 == NULL || dot1 == s || dot2 == dot1 + 1
        || dot2 + 1 == end || ngx_strlchr(dot2 + 1, end, '.') != NULL)
    {
        return NGX_DECLINED;
    }

    header = ngx_graph_notify_jwt_part(pool, s, dot1);
    claims = ngx_graph_notify_jwt_part(pool, dot1 + 1, dot2);

    if (!json_is_object(header) || !json_is_object(claims)) {
        rc = NGX_DECLINED;
        goto done;
    }

    v = json_object_get(header, "kid");

    if (!json_is_string(v) || json_string_length(v) == 0
        || json_string_length(v) > NGX_GRAPH_NOTIFY_JWT_KID_MAX)
    {
        rc = NGX_DECLINED;
        goto done;
    }

    kid->len = json_string_length(v);
    kid->data = ngx_pnalloc(pool, kid->len);
    if (kid->data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(kid->data, json_string_value(v), kid->len);

    /* Graph signs with RS256 only: anything else ("none", HS256) fails */

    if (!ngx_graph_notify_jwt_str_eq(json_object_get(header, "alg"),
                                     "RS256", 5))
    {
        *reason = NGX_GRAPH_NOTIFY_JWT_SIGNATURE;
        rc = NGX_DECLINED;
        goto done;
    }

    jwk = ctx->jwks->keys.elts;

    for (i = 0; i < ctx->jwks->keys.nelts; i++) {
        if (jwk[i].kid.len == kid->len
            && ngx_memcmp(jwk[i].kid.data, kid->data, kid->len) == 0)
        {
            break;
        }
    }

    if (i == ctx->jwks->keys.nelts) {
        rc = ngx_graph_notify_jwt_unknown_kid(ctx, kid);
        *reason = NGX_GRAPH_NOTIFY_JWT_UNKNOWN_KID;
        goto done;
    }

    src.data = dot2 + 1;
    src.len = end - src.data;

    sig.data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len) + 1);
    if (sig.data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    if (ngx_decode_base64url(&sig, &src) != NGX_OK) {
        rc = NGX_DECLINED;
        goto done;
    }

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, jwk[i].pkey) == 1
         && EVP_DigestVerify(md, sig.data, sig.len, s, dot2 - s) == 1;

    EVP_MD_CTX_free(md);
    ERR_clear_error();

    if (!ok) {
        *reason = NGX_GRAPH_NOTIFY_JWT_SIGNATURE;
        rc = NGX_DECLINED;
        goto done;
    }

    /* signed by the identity platform: now what it says */

    rc = NGX_DECLINED;

    v = json_object_get(claims, "exp");

    if (!json_is_number(v)) {
        goto done;
    }

    if (at > (time_t) json_number_value(v) + NGX_GRAPH_NOTIFY_JWT_SKEW) {
        *reason = NGX_GRAPH_NOTIFY_JWT_EXPIRED;
        goto done;
    }

    v = json_object_get(claims, "nbf");

    if (v != NULL && !json_is_number(v)) {
        goto done;
    }

    if (v && (time_t) json_number_value(v) > at + NGX_GRAPH_NOTIFY_JWT_SKEW) {
        *reason = NGX_GRAPH_NOTIFY_JWT_EXPIRED;
        goto done;
    }

    if (ngx_graph_notify_jwt_audience_ok(ctx, json_object_get(claims, "aud"))
        != NGX_OK)
    {
        *reason = NGX_GRAPH_NOTIFY_JWT_AUDIENCE;
        goto done;
    }

    /* v2 tokens name the publisher in azp, v1 tokens in appid */

    azp = json_object_get(claims, "azp");

    if (azp == NULL) {
        azp = json_object_get(claims, "appid");
    }

    if (!ngx_graph_notify_jwt_str_eq(azp, NGX_GRAPH_NOTIFY_JWT_PUBLISHER_ID,
                                     sizeof(NGX_GRAPH_NOTIFY_JWT_PUBLISHER_ID)
                                     - 1))
    {
        *reason = NGX_GRAPH_NOTIFY_JWT_PUBLISHER;
        goto done;
    }

    *reason = NGX_GRAPH_NOTIFY_JWT_ISSUER;

    v = json_object_get(claims, "tid");
    iss = json_object_get(claims, "iss");

    if (!json_is_string(v) || json_string_length(v) == 0
        || json_string_length(v) > 64 || !json_is_string(iss))
    {
        goto done;
    }

    len = json_string_length(v);

    p = ngx_snprintf(expect, sizeof(expect), NGX_GRAPH_NOTIFY_JWT_ISS_V2
                     "%*s/v2.0", len, json_string_value(v));

    if (!ngx_graph_notify_jwt_str_eq(iss, (char *) expect, p - expect)) {

        p = ngx_snprintf(expect, sizeof(expect), NGX_GRAPH_NOTIFY_JWT_ISS_V1
                         "%*s/", len, json_string_value(v));

        if (!ngx_graph_notify_jwt_str_eq(iss, (char *) expect, p - expect)) {
            goto done;
        }
    }

    tid->len = len;
    tid->data = ngx_pnalloc(pool, len);
    if (tid->data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(tid->data, json_string_value(v), len);

    rc = NGX_OK;

done:

    json_decref(header);
    json_decref(claims);

    return rc;
}


static json_t *
ngx_graph_notify_jwt_part(ngx_pool_t *pool, u_char *start, u_char *end)
{
    ngx_str_t  src, dst;

    src.data = start;
    src.len = end - start;

    dst.data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len) + 1);
    if (dst.data == NULL || ngx_decode_base64url(&dst, &src) != NGX_OK) {
        return NULL;
    }

    return json_loadb((char *) dst.data, dst.len, 0, NULL);
}


static ngx_int_t
ngx_graph_notify_jwt_audience_ok(ngx_graph_notify_jwt_t *ctx, json_t *aud)
{
    size_t       k;
    json_t      *v;
    ngx_str_t   *a;
    ngx_uint_t   i;

    a = ctx->gmcf->jwt_audiences->elts;

    if (json_is_array(aud)) {
        json_array_foreach(aud, k, v) {
            if (ngx_graph_notify_jwt_audience_ok(ctx, v) == NGX_OK) {
                return NGX_OK;
            }
        }

        return NGX_DECLINED;
    }

    if (!json_is_string(aud)) {
        return NGX_DECLINED;
    }

    for (i = 0; i < ctx->gmcf->jwt_audiences->nelts; i++) {
        if (json_string_length(aud) == a[i].len
            && ngx_strncasecmp((u_char *) json_string_value(aud), a[i].data,
                               a[i].len)
               == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_graph_notify_jwt_str_eq(json_t *v, const char *s, size_t len)
{
    return json_is_string(v) && json_string_length(v) == len
           && ngx_memcmp(json_string_value(v), s, len) == 0;
}


static ngx_int_t
ngx_graph_notify_jwt_unknown_kid(ngx_graph_notify_jwt_t *ctx, ngx_str_t *kid)
{
    time_t                        now;
    ngx_uint_t                    i;
    ngx_graph_notify_jwt_miss_t  *m;

    /*
     * The identity platform may have published a new key since our fetch:
     * the set is fetched again (for unknown kids at most once a minute)
     * while the batch waits; a kid still unknown after that is refused.
     */

    if (ctx->fetching) {
        return NGX_AGAIN;
    }

    now = ngx_time();

    for (i = 0; i < NGX_GRAPH_NOTIFY_JWT_MISSES; i++) {
        m = &ctx->misses[i];

        if (m->len == kid->len && ngx_memcmp(m->kid, kid->data, kid->len) == 0)
        {
            if (ctx->jwks->fetched >= m->seen) {
                return NGX_DECLINED;
            }

            goto fetch;
        }
    }

    m = &ctx->misses[ctx->next_miss++ % NGX_GRAPH_NOTIFY_JWT_MISSES];

    ngx_memcpy(m->kid, kid->data, kid->len);
    m->len = kid->len;
    m->seen = now;

    /* a fetch in this very second could not have seen it yet */

    if (ctx->jwks->fetched >= now) {
        m->seen = now + 1;
    }

fetch:

    /* an unknown kid costs a fetch at most once a minute */

    ctx->refetch = 1;

    ngx_graph_notify_jwt_schedule(ctx,
                                  ngx_max(ngx_max(now, m->seen),
                                          ctx->last_refetch
                                          + NGX_GRAPH_NOTIFY_JWT_REFETCH));

    return NGX_AGAIN;
}


static void
ngx_graph_notify_jwt_hold(ngx_graph_notify_jwt_t *ctx,
    ngx_graph_notify_job_t *job)
{
    if (ctx->nheld == NGX_GRAPH_NOTIFY_JWT_HELD_MAX) {
        /* never, see busy(): back to the queue for a later round */
        ngx_graph_notify_queue_release(ctx->queue, job);
        return;
    }

    /* in flight and ours: the helper renews its lease with the others */

    ctx->held[ctx->nheld].shm = job->shm;
    ctx->held[ctx->nheld].seq = job->seq;
    ctx->held[ctx->nheld].lane = job->lane;
    ctx->nheld++;
}


static void
ngx_graph_notify_jwt_drop(ngx_graph_notify_jwt_t *ctx,
    ngx_graph_notify_job_t *jobs, ngx_graph_notify_jwt_item_t *items,
    ngx_uint_t n, ngx_uint_t group, ngx_graph_notify_jwt_reason_e reason)
{
    size_t       len;
    json_t      *first;
    ngx_uint_t   i, count, ok;
    const char  *sub, *s;

    count = 0;
    first = NULL;

    for (i = 0; i < n; i++) {
        if (items[i].group != group) {
            continue;
        }

        if (first == NULL) {
            first = json_loadb((char *) jobs[i].line.data, jobs[i].line.len,
                               0, NULL);
        }

        ngx_graph_notify_queue_done(ctx->queue, &jobs[i]);
        count++;
    }

    /* dropped for good: the journal need not replay them */
    ngx_graph_notify_journal_flush();

    ngx_graph_notify_stat_add(ctx->queue, jwt_dropped[reason], count);

    /* ids come from the network: logged only if they look like ids */

    sub = json_string_value(json_object_get(first, "subscriptionId"));
    len = sub ? ngx_strlen(sub) : 0;
    ok = (len > 0 && len <= 64);

    for (s = sub; ok && *s; s++) {
        if (!isalnum((u_char) *s) && *s != '-' && *s != '_') {
            ok = 0;
        }
    }

    ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                  "graph_notify: dropped %ui item(s) of a batch of "
                  "subscription %s: validation tokens refused (%V): %s",
                  count, ok ? sub : "(invalid)",
                  &ngx_graph_notify_jwt_reason_names[reason],
                  ngx_graph_notify_jwt_reason_text[reason]);

    json_decref(first);
}


static void
ngx_graph_notify_jwt_set_error(ngx_graph_notify_jwt_t *ctx, u_char *msg,
    size_t len)
{
    u_char  *dst;

    /* a status page field: single bytes, safe characters only */

    dst = ctx->stats->jwt_error;
    len = ngx_min(len, sizeof(ctx->stats->jwt_error) - 1);

    dst[len] = '\0';

    while (len--) {
        dst[len] = (isalnum(msg[len]) || ngx_strchr(" _-.:()/", msg[len]))
                   ? msg[len] : '?';
    }
}


/* key rotation */

ngx_uint_t
ngx_graph_notify_jwt_key_changed(ngx_str_t *configured, json_t *at_graph)
{
    /*
     * A rich subscription whose encryptionCertificateId at Graph is not
     * its rich= key id any more: the key was rotated in nginx.conf.  The
     * old key stays configured for the notifications still in flight.
     */

    if (configured->len == 0) {
        return 0;
    }

    return !ngx_graph_notify_jwt_str_eq(at_graph, (char *) configured->data,
                                        configured->len);
}


/* the workers: when a key last decrypted an item, for rotation */

void
ngx_graph_notify_jwt_key_used(ngx_graph_notify_key_t *key)
{
    ngx_uint_t                     i;
    ngx_graph_notify_stats_t      *st;
    ngx_graph_notify_queue_t      *q;
    ngx_graph_notify_main_conf_t  *gmcf;

    if (key->last_used) {
        *key->last_used = ngx_time();
        return;
    }

    gmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_graph_notify_module);
    if (gmcf == NULL || gmcf->shm_zone == NULL) {
        return;
    }

    q = gmcf->shm_zone->data;
    st = &q->sh->stats;

    if (key->id.len > NGX_GRAPH_NOTIFY_KEY_ID_MAX) {
        return;
    }

    /* slots are claimed once, without a lock; state 2 is readable */

    for (i = 0; i < NGX_GRAPH_NOTIFY_KEYS_USED; i++) {
        if (st->keys_used[i].state == 2
            && st->keys_used[i].len == key->id.len
            && ngx_memcmp(st->keys_used[i].id, key->id.data, key->id.len)
               == 0)
        {
            key->last_used = &st->keys_used[i].last;
            *key->last_used = ngx_time();
            return;
        }
    }

    for (i = 0; i < NGX_GRAPH_NOTIFY_KEYS_USED; i++) {
        if (ngx_atomic_cmp_set(&st->keys_used[i].state, 0, 1)) {
            ngx_memcpy(st->keys_used[i].id, key->id.data, key->id.len);
            st->keys_used[i].len = key->id.len;
            st->keys_used[i].last = ngx_time();
            ngx_memory_barrier();
            st->keys_used[i].state = 2;

            key->last_used = &st->keys_used[i].last;
            return;
        }
    }
}
