
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"
#include "ngx_graph_notify_bounds.h"
#include "ngx_graph_notify_crypto.h"
#include "ngx_graph_notify_envelope.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>


/* AES-256 key, also the HMAC-SHA256 key (Graph's rich notifications) */
#define NGX_GRAPH_NOTIFY_DATA_KEY_LEN  32
#define NGX_GRAPH_NOTIFY_SIGNATURE_LEN 32

/* keys one run of decryption jobs holds contexts of at a time */
#define NGX_GRAPH_NOTIFY_CTX_CACHE     4


/*
 * The OpenSSL contexts one decryption needs, set up once and kept for the
 * next decryption with the same key: setting them up (RSA-OAEP, and the
 * algorithms' look-up by name) costs more than the AES and HMAC steps of
 * a small item.  A context is used by one thread at a time.
 *
 * Each context has a copy of the key of its own: OpenSSL takes a write
 * lock of the key's for every private-key operation (its blinding), and
 * threads sharing one key wait on it, asleep, while the holder is
 * descheduled.
 */

typedef struct ngx_graph_notify_dctx_s  ngx_graph_notify_dctx_t;

struct ngx_graph_notify_dctx_s {
    EVP_PKEY                   *pkey;          /* the key's own copy */
    EVP_PKEY_CTX               *rsa;           /* OAEP, SHA-1, MGF1-SHA-1 */
    EVP_MAC_CTX                *hmac;          /* HMAC-SHA256 */
    EVP_CIPHER_CTX             *aes;
    ngx_graph_notify_dctx_t    *next;
};


/* a key's idle contexts, shared by the threads; freed with the key */

struct ngx_graph_notify_dcache_s {
    EVP_PKEY                   *pkey;
    EVP_MAC                    *hmac;
    EVP_CIPHER                 *aes;
    ngx_atomic_t                lock;
    ngx_graph_notify_dctx_t    *free;
};


static int ngx_graph_notify_no_password(char *buf, int size, int rwflag,
    void *u);
static void ngx_graph_notify_key_cleanup(void *data);
static ngx_int_t ngx_graph_notify_key_certificate(ngx_conf_t *cf, X509 *x509,
    ngx_str_t *b64);
static ngx_int_t ngx_graph_notify_dcache_create(ngx_conf_t *cf,
    ngx_graph_notify_key_t *key);
static void ngx_graph_notify_dcache_cleanup(void *data);
static ngx_graph_notify_dctx_t *ngx_graph_notify_dctx_get(
    ngx_graph_notify_dcache_t *cache);
static void ngx_graph_notify_dctx_put(ngx_graph_notify_dcache_t *cache,
    ngx_graph_notify_dctx_t *dc);
static void ngx_graph_notify_dctx_free(ngx_graph_notify_dctx_t *dc);
static ngx_int_t ngx_graph_notify_decrypt_one(ngx_graph_notify_decrypt_t *d,
    ngx_graph_notify_dctx_t *dc);
static ngx_int_t ngx_graph_notify_base64(ngx_str_t *src, u_char **buf,
    ngx_str_t *dst);
static ngx_int_t ngx_graph_notify_aes_decrypt(ngx_graph_notify_dctx_t *dc,
    EVP_CIPHER *aes, u_char *key, ngx_str_t *in, ngx_str_t *out);
static ngx_int_t ngx_graph_notify_resource(ngx_graph_notify_decrypt_t *d);
static void ngx_graph_notify_call_event(ngx_graph_notify_decrypt_t *d,
    json_t *resource);


const char *
ngx_graph_notify_ssl_reason(void)
{
    const char     *reason;
    unsigned long   e;

    e = ERR_peek_last_error();
    reason = e ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();

    return reason ? reason : "unknown error";
}


/*
 * A PEM certificate and its unencrypted PEM RSA private key (2048 bits or
 * more), checked to match; the key is freed with the configuration.  For
 * the decryption keys and the app's sign-in certificate alike.
 */

char *
ngx_graph_notify_key_pair(ngx_conf_t *cf, ngx_str_t *cert_file,
    ngx_str_t *key_file, const char *what, X509 **x509, EVP_PKEY **pkey)
{
    BIO                 *bio;
    ngx_str_t            cert_name, key_name;
    ngx_pool_cleanup_t  *cln;

    cert_name = *cert_file;
    key_name = *key_file;

    if (ngx_conf_full_name(cf->cycle, &cert_name, 1) != NGX_OK
        || ngx_conf_full_name(cf->cycle, &key_name, 1) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    bio = BIO_new_file((char *) cert_name.data, "r");
    if (bio == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot open %s certificate \"%V\": %s", what,
                           &cert_name, ngx_graph_notify_ssl_reason());
        return NGX_CONF_ERROR;
    }

    *x509 = PEM_read_bio_X509(bio, NULL, ngx_graph_notify_no_password, NULL);
    BIO_free(bio);

    if (*x509 == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot read PEM %s certificate \"%V\": %s", what,
                           &cert_name, ngx_graph_notify_ssl_reason());
        return NGX_CONF_ERROR;
    }

    bio = BIO_new_file((char *) key_name.data, "r");
    if (bio == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot open %s private key \"%V\": %s", what,
                           &key_name, ngx_graph_notify_ssl_reason());
        goto failed;
    }

    *pkey = PEM_read_bio_PrivateKey(bio, NULL, ngx_graph_notify_no_password,
                                    NULL);
    BIO_free(bio);

    if (*pkey == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot read PEM %s private key \"%V\" (it must "
                           "not be encrypted): %s", what, &key_name,
                           ngx_graph_notify_ssl_reason());
        goto failed;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        EVP_PKEY_free(*pkey);
        goto failed;
    }

    cln->handler = ngx_graph_notify_key_cleanup;
    cln->data = *pkey;

    if (EVP_PKEY_get_base_id(*pkey) != EVP_PKEY_RSA) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s private key \"%V\" is not an RSA key", what,
                           &key_name);
        goto failed;
    }

    if (EVP_PKEY_get_bits(*pkey) < 2048) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s private key \"%V\" has %d bits, Graph needs "
                           "2048 to 4096", what, &key_name,
                           EVP_PKEY_get_bits(*pkey));
        goto failed;
    }

    if (X509_check_private_key(*x509, *pkey) != 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s private key \"%V\" does not match certificate "
                           "\"%V\"", what, &key_name, &cert_name);
        ERR_clear_error();
        goto failed;
    }

    return NGX_CONF_OK;

failed:

    X509_free(*x509);
    *x509 = NULL;

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_graph_notify_key_certificate(ngx_conf_t *cf, X509 *x509, ngx_str_t *b64)
{
    int         len;
    u_char     *p;
    ngx_str_t   der;

    len = i2d_X509(x509, NULL);
    if (len <= 0) {
        return NGX_ERROR;
    }

    der.data = ngx_pnalloc(cf->temp_pool, len);
    if (der.data == NULL) {
        return NGX_ERROR;
    }

    p = der.data;
    der.len = i2d_X509(x509, &p);

    b64->data = ngx_pnalloc(cf->pool, ngx_base64_encoded_length(der.len));
    if (b64->data == NULL) {
        return NGX_ERROR;
    }

    ngx_encode_base64(b64, &der);

    return NGX_OK;
}


char *
ngx_graph_notify_key_load(ngx_conf_t *cf, ngx_graph_notify_key_t *key,
    ngx_str_t *cert_file, ngx_str_t *key_file)
{
    u_char         md[EVP_MAX_MD_SIZE];
    X509          *x509;
    ngx_uint_t     i;
    unsigned int   md_len;

    if (ngx_graph_notify_key_pair(cf, cert_file, key_file, "decryption",
                                  &x509, &key->pkey)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* Graph names the certificate by the hex SHA-1 of its DER form */

    if (X509_digest(x509, EVP_sha1(), md, &md_len) != 1 || md_len != 20) {
        X509_free(x509);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot hash certificate \"%V\": %s", cert_file,
                           ngx_graph_notify_ssl_reason());
        return NGX_CONF_ERROR;
    }

    /* sent to Graph with subscriptions that ask for rich notifications */

    if (ngx_graph_notify_key_certificate(cf, x509, &key->certificate)
        != NGX_OK)
    {
        X509_free(x509);
        return NGX_CONF_ERROR;
    }

    X509_free(x509);

    if (ngx_graph_notify_dcache_create(cf, key) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_hex_dump(key->thumbprint, md, 20);

    for (i = 0; i < sizeof(key->thumbprint); i++) {
        key->thumbprint[i] = ngx_toupper(key->thumbprint[i]);
    }

    return NGX_CONF_OK;
}


static int
ngx_graph_notify_no_password(char *buf, int size, int rwflag, void *u)
{
    /* never prompt on a terminal for a passphrase */
    return 0;
}


static void
ngx_graph_notify_key_cleanup(void *data)
{
    EVP_PKEY_free(data);
}


static ngx_int_t
ngx_graph_notify_dcache_create(ngx_conf_t *cf, ngx_graph_notify_key_t *key)
{
    ngx_pool_cleanup_t         *cln;
    ngx_graph_notify_dcache_t  *cache;

    cache = ngx_pcalloc(cf->pool, sizeof(ngx_graph_notify_dcache_t));
    if (cache == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_graph_notify_dcache_cleanup;
    cln->data = cache;

    /* fetched once: each use by name would look the algorithm up again */

    cache->pkey = key->pkey;
    cache->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    cache->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);

    if (cache->hmac == NULL || cache->aes == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "OpenSSL has no HMAC or AES-256-CBC: %s",
                           ngx_graph_notify_ssl_reason());
        return NGX_ERROR;
    }

    key->cache = cache;

    return NGX_OK;
}


static void
ngx_graph_notify_dcache_cleanup(void *data)
{
    ngx_graph_notify_dcache_t *cache = data;

    ngx_graph_notify_dctx_t  *dc, *next;

    for (dc = cache->free; dc; dc = next) {
        next = dc->next;
        ngx_graph_notify_dctx_free(dc);
    }

    EVP_MAC_free(cache->hmac);
    EVP_CIPHER_free(cache->aes);
}


/* an idle context of the key, or a new one; NULL if OpenSSL fails */

static ngx_graph_notify_dctx_t *
ngx_graph_notify_dctx_get(ngx_graph_notify_dcache_t *cache)
{
    OSSL_PARAM                params[2];
    ngx_graph_notify_dctx_t  *dc;

    ngx_spinlock(&cache->lock, 1, 2048);

    dc = cache->free;

    if (dc) {
        cache->free = dc->next;
    }

    /* the list is written before it is unlocked, by the compiler too */
    ngx_memory_barrier();
    ngx_unlock(&cache->lock);

    if (dc) {
        return dc;
    }

    dc = OPENSSL_zalloc(sizeof(ngx_graph_notify_dctx_t));
    if (dc == NULL) {
        return NULL;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();

    dc->pkey = EVP_PKEY_dup(cache->pkey);
    dc->rsa = dc->pkey ? EVP_PKEY_CTX_new(dc->pkey, NULL) : NULL;
    dc->hmac = EVP_MAC_CTX_new(cache->hmac);
    dc->aes = EVP_CIPHER_CTX_new();

    /* RSA-OAEP with SHA-1 and MGF1-SHA-1, no label */

    if (dc->rsa && dc->hmac && dc->aes
        && EVP_PKEY_decrypt_init(dc->rsa) == 1
        && EVP_PKEY_CTX_set_rsa_padding(dc->rsa, RSA_PKCS1_OAEP_PADDING) == 1
        && EVP_PKEY_CTX_set_rsa_oaep_md(dc->rsa, EVP_sha1()) == 1
        && EVP_PKEY_CTX_set_rsa_mgf1_md(dc->rsa, EVP_sha1()) == 1
        && EVP_MAC_CTX_set_params(dc->hmac, params) == 1)
    {
        return dc;
    }

    ngx_graph_notify_dctx_free(dc);
    ERR_clear_error();

    return NULL;
}


static void
ngx_graph_notify_dctx_put(ngx_graph_notify_dcache_t *cache,
    ngx_graph_notify_dctx_t *dc)
{
    ngx_spinlock(&cache->lock, 1, 2048);

    dc->next = cache->free;
    cache->free = dc;

    ngx_memory_barrier();
    ngx_unlock(&cache->lock);
}


static void
ngx_graph_notify_dctx_free(ngx_graph_notify_dctx_t *dc)
{
    EVP_PKEY_CTX_free(dc->rsa);
    EVP_PKEY_free(dc->pkey);
    EVP_MAC_CTX_free(dc->hmac);
    EVP_CIPHER_CTX_free(dc->aes);
    OPENSSL_free(dc);
}


/*
 * On the event loop: the key named by the item, the thumbprint, and one
 * buffer for everything the decryption writes, so that running the job
 * needs no pool.
 */

ngx_int_t
ngx_graph_notify_decrypt_prepare(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_graph_notify_encrypted_t *enc, ngx_graph_notify_decrypt_t *d,
    ngx_graph_notify_drop_e *reason)
{
    size_t                   size;
    ngx_uint_t               i;
    ngx_graph_notify_key_t  *key;

    key = NULL;

    if (keys) {
        key = keys->elts;

        for (i = 0; i < keys->nelts; i++) {
            if (key[i].id.len == enc->cert_id.len
                && ngx_strncmp(key[i].id.data, enc->cert_id.data,
                               enc->cert_id.len)
                   == 0)
            {
                break;
            }
        }

        key = (i < keys->nelts) ? &key[i] : NULL;
    }

    if (key == NULL) {
        *reason = NGX_GRAPH_NOTIFY_DROP_UNKNOWN_KEY;
        return NGX_DECLINED;
    }

    /* the thumbprint is optional; when sent, it must name our certificate */

    if (enc->thumbprint.len
        && (enc->thumbprint.len != sizeof(key->thumbprint)
            || ngx_strncasecmp(enc->thumbprint.data, key->thumbprint,
                               sizeof(key->thumbprint))
               != 0))
    {
        *reason = NGX_GRAPH_NOTIFY_DROP_THUMBPRINT;
        return NGX_DECLINED;
    }

    d->key = key;
    d->data = enc->data;
    d->data_key = enc->data_key;
    d->data_signature = enc->data_signature;

    /* the decoded data, key and signature, then the plaintext */

    size = 2 * ngx_base64_decoded_length(enc->data.len)
           + ngx_base64_decoded_length(enc->data_key.len)
           + ngx_base64_decoded_length(enc->data_signature.len) + 16;

    d->buf = ngx_pnalloc(pool, size);
    if (d->buf == NULL) {
        return NGX_ERROR;
    }

    ngx_str_null(&d->plain);
    d->rc = NGX_ERROR;

    return NGX_OK;
}


/*
 * Runs jobs one after the other, on any thread, with the contexts of
 * each job's key (taken from the key's idle ones, given back at the end).
 */

void
ngx_graph_notify_decrypt_run(ngx_graph_notify_decrypt_t **jobs,
    ngx_uint_t n)
{
    ngx_uint_t                  i, k, nctx;
    ngx_graph_notify_dctx_t    *dc;
    ngx_graph_notify_dcache_t  *cache;

    struct {
        ngx_graph_notify_dcache_t  *cache;
        ngx_graph_notify_dctx_t    *dc;
    } held[NGX_GRAPH_NOTIFY_CTX_CACHE];

    nctx = 0;

    for (i = 0; i < n; i++) {
        cache = jobs[i]->key->cache;
        dc = NULL;

        for (k = 0; k < nctx; k++) {
            if (held[k].cache == cache) {
                dc = held[k].dc;
                break;
            }
        }

        if (dc == NULL) {
            dc = ngx_graph_notify_dctx_get(cache);

            if (dc == NULL) {
                /* no memory, or OpenSSL failed: the batch gets 500 */
                jobs[i]->rc = NGX_ERROR;
                continue;
            }

            if (nctx == NGX_GRAPH_NOTIFY_CTX_CACHE) {
                nctx--;
                ngx_graph_notify_dctx_put(held[nctx].cache, held[nctx].dc);
            }

            held[nctx].cache = cache;
            held[nctx].dc = dc;
            nctx++;
        }

        jobs[i]->rc = ngx_graph_notify_decrypt_one(jobs[i], dc);
    }

    for (k = 0; k < nctx; k++) {
        ngx_graph_notify_dctx_put(held[k].cache, held[k].dc);
    }

    ERR_clear_error();
}


static ngx_int_t
ngx_graph_notify_decrypt_one(ngx_graph_notify_decrypt_t *d,
    ngx_graph_notify_dctx_t *dc)
{
    u_char     mac[EVP_MAX_MD_SIZE];
    u_char     data_key[512];
    u_char    *p;
    size_t     data_key_len, mac_len;
    ngx_int_t  rc;
    ngx_str_t  data, wrapped, signature;

    p = d->buf;

    if (ngx_graph_notify_base64(&d->data, &p, &data) != NGX_OK
        || ngx_graph_notify_base64(&d->data_key, &p, &wrapped) != NGX_OK
        || ngx_graph_notify_base64(&d->data_signature, &p, &signature)
           != NGX_OK)
    {
        d->reason = NGX_GRAPH_NOTIFY_DROP_BASE64;
        return NGX_DECLINED;
    }

    data_key_len = sizeof(data_key);

    if ((size_t) EVP_PKEY_get_size(d->key->pkey) > data_key_len
        || EVP_PKEY_decrypt(dc->rsa, data_key, &data_key_len, wrapped.data,
                            wrapped.len)
           != 1)
    {
        ERR_clear_error();
        d->reason = NGX_GRAPH_NOTIFY_DROP_DATA_KEY;
        return NGX_DECLINED;
    }

    if (data_key_len != NGX_GRAPH_NOTIFY_DATA_KEY_LEN) {
        OPENSSL_cleanse(data_key, data_key_len);
        d->reason = NGX_GRAPH_NOTIFY_DROP_KEY_LENGTH;
        return NGX_DECLINED;
    }

    /* integrity first, over the raw ciphertext; nothing is decrypted else */

    if (EVP_MAC_init(dc->hmac, data_key, NGX_GRAPH_NOTIFY_DATA_KEY_LEN, NULL)
        != 1
        || EVP_MAC_update(dc->hmac, data.data, data.len) != 1
        || EVP_MAC_final(dc->hmac, mac, &mac_len, sizeof(mac)) != 1)
    {
        OPENSSL_cleanse(data_key, sizeof(data_key));
        ERR_clear_error();
        return NGX_ERROR;
    }

    if (mac_len != NGX_GRAPH_NOTIFY_SIGNATURE_LEN
        || signature.len != NGX_GRAPH_NOTIFY_SIGNATURE_LEN
        || CRYPTO_memcmp(mac, signature.data, mac_len) != 0)
    {
        OPENSSL_cleanse(data_key, sizeof(data_key));
        d->reason = NGX_GRAPH_NOTIFY_DROP_SIGNATURE;
        return NGX_DECLINED;
    }

    d->plain.data = p;

    rc = ngx_graph_notify_aes_decrypt(dc, d->key->cache->aes, data_key,
                                      &data, &d->plain);

    OPENSSL_cleanse(data_key, sizeof(data_key));

    if (rc != NGX_OK) {
        d->reason = NGX_GRAPH_NOTIFY_DROP_DECRYPT;
        return rc;
    }

    /*
     * The resource is written into the output as is: it must be a JSON
     * object, and no deeper than common readers of the output accept
     * (checked first, so that the parser never sees a deeper one).
     */

    if (ngx_graph_notify_depth_ok(d->plain.data, d->plain.len,
                                  NGX_GRAPH_NOTIFY_MAX_DEPTH)
        != NGX_OK)
    {
        d->reason = NGX_GRAPH_NOTIFY_DROP_DEPTH;
        return NGX_DECLINED;
    }

    if (ngx_graph_notify_resource(d) != NGX_OK) {
        d->reason = NGX_GRAPH_NOTIFY_DROP_NOT_JSON;
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * NGX_OK if jansson accepts the resource as a JSON object.  The envelope
 * scanner tells without building a tree (it accepts only what jansson
 * accepts, and says where it is stricter); jansson parses the resource
 * where the scanner is stricter, and that of a call conversation, whose
 * event type the line takes.
 */

static ngx_int_t
ngx_graph_notify_resource(ngx_graph_notify_decrypt_t *d)
{
    u_char                       *p, *end;
    json_t                       *parsed;
    ngx_uint_t                    call;
    ngx_graph_notify_envelope_t   env;

    d->event_len = 0;

    p = d->plain.data;
    end = d->plain.data + d->plain.len;

    call = (ngx_strlcasestrn(p, end, (u_char *) "CallConversation",
                             sizeof("CallConversation") - 2)
            != NULL);

    if (!call) {

        /* no bounds, no handler: a validating pass, nothing kept */
        ngx_memzero(&env, sizeof(ngx_graph_notify_envelope_t));

        switch (ngx_graph_notify_envelope_scan(p, end - p, &env)) {

        case NGX_GRAPH_NOTIFY_ENVELOPE_OK:
        case NGX_GRAPH_NOTIFY_ENVELOPE_NO_VALUE:

            /* JSON that jansson accepts: an object, or an array */

            while (p < end
                   && (*p == ' ' || *p == '\t' || *p == CR || *p == LF))
            {
                p++;
            }

            return (p < end && *p == '{') ? NGX_OK : NGX_DECLINED;

        case NGX_GRAPH_NOTIFY_ENVELOPE_INVALID:
            return NGX_DECLINED;

        default: /* NGX_GRAPH_NOTIFY_ENVELOPE_STRICT: jansson decides */
            break;
        }
    }

    parsed = json_loadb((char *) d->plain.data, d->plain.len,
                        JSON_DECODE_ANY, NULL);

    if (!json_is_object(parsed)) {
        json_decref(parsed);
        return NGX_DECLINED;
    }

    if (call) {
        ngx_graph_notify_call_event(d, parsed);
    }

    json_decref(parsed);

    return NGX_OK;
}


static ngx_int_t
ngx_graph_notify_base64(ngx_str_t *src, u_char **buf, ngx_str_t *dst)
{
    size_t     len;
    ngx_str_t  s;

    /*
     * Graph sends standard base64 with its padding.  ngx_decode_base64()
     * stops at the first "=" and ignores whatever follows it, so the
     * padding is checked here: at most two "=", at the end only.
     */

    len = src->len;

    if (len == 0 || len % 4) {
        return NGX_ERROR;
    }

    if (src->data[len - 1] == '=') {
        len--;

        if (src->data[len - 1] == '=') {
            len--;
        }
    }

    if (ngx_strlchr(src->data, src->data + len, '=') != NULL) {
        return NGX_ERROR;
    }

    s.data = src->data;
    s.len = len;

    dst->data = *buf;

    if (ngx_decode_base64(dst, &s) != NGX_OK) {
        return NGX_ERROR;
    }

    *buf += dst->len;

    return NGX_OK;
}


static ngx_int_t
ngx_graph_notify_aes_decrypt(ngx_graph_notify_dctx_t *dc, EVP_CIPHER *aes,
    u_char *key, ngx_str_t *in, ngx_str_t *out)
{
    int        n, last;
    ngx_int_t  rc;

    /* AES-256-CBC, IV = the first 16 bytes of the key, PKCS#7 padding */

    if (in->len == 0 || in->len % 16 || in->len > NGX_MAX_INT32_VALUE) {
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    if (EVP_DecryptInit_ex2(dc->aes, aes, key, key, NULL) == 1
        && EVP_DecryptUpdate(dc->aes, out->data, &n, in->data, (int) in->len)
           == 1
        && EVP_DecryptFinal_ex(dc->aes, out->data + n, &last) == 1)
    {
        out->len = n + last;
        rc = NGX_OK;
    }

    ERR_clear_error();

    return rc;
}


/*
 * Call conversations: the event type Graph writes as, e.g.,
 * "{Microsoft.Communication.CallConversationStarted}" also goes on the
 * line as "callEvent":"CallConversationStarted", for readers to filter on.
 */

static void
ngx_graph_notify_call_event(ngx_graph_notify_decrypt_t *d, json_t *resource)
{
    size_t       len;
    const char  *v, *p, *last, *dot;

    v = json_string_value(json_object_get(resource, "eventType"));

    if (v == NULL) {
        return;
    }

    p = v;
    last = v + ngx_strlen(v);

    while (p < last && (*p == '{' || *p == ' ')) {
        p++;
    }

    while (last > p && (last[-1] == '}' || last[-1] == ' ')) {
        last--;
    }

    for (dot = last; dot > p && dot[-1] != '.'; dot--) { /* void */ }

    len = last - dot;

    if (len < sizeof(d->event)) {
        ngx_memcpy(d->event, dot, len);
        d->event_len = len;
    }
}


ngx_uint_t
ngx_graph_notify_secret_match(ngx_str_t *value, ngx_array_t *secrets)
{
    ngx_str_t   *s;
    ngx_uint_t   i, match;

    /*
     * Every configured value is compared, each in constant time, so the
     * time taken does not tell which one matched or how much of it.
     */

    s = secrets->elts;
    match = 0;

    for (i = 0; i < secrets->nelts; i++) {
        if (s[i].len == value->len) {
            match |= (CRYPTO_memcmp(s[i].data, value->data, value->len) == 0);

        } else {
            (void) CRYPTO_memcmp(s[i].data, s[i].data, s[i].len);
        }
    }

    return match;
}
