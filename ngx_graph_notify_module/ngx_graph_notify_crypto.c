
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"

#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>


/* AES-256 key, also the HMAC-SHA256 key (Graph's rich notifications) */
#define NGX_GRAPH_NOTIFY_DATA_KEY_LEN  32
#define NGX_GRAPH_NOTIFY_SIGNATURE_LEN 32


static int ngx_graph_notify_no_password(char *buf, int size, int rwflag,
    void *u);
static void ngx_graph_notify_key_cleanup(void *data);
static ngx_int_t ngx_graph_notify_key_certificate(ngx_conf_t *cf, X509 *x509,
    ngx_str_t *b64);
static ngx_int_t ngx_graph_notify_base64(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);
static ngx_int_t ngx_graph_notify_unwrap_key(EVP_PKEY *pkey, ngx_str_t *in,
    u_char *key, size_t *len);
static ngx_int_t ngx_graph_notify_aes_decrypt(ngx_pool_t *pool, u_char *key,
    ngx_str_t *in, ngx_str_t *out);


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


ngx_int_t
ngx_graph_notify_decrypt(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_graph_notify_encrypted_t *enc, ngx_str_t *plain,
    ngx_graph_notify_drop_e *reason)
{
    u_char                   mac[EVP_MAX_MD_SIZE];
    u_char                   data_key[512];
    size_t                   data_key_len;
    ngx_int_t                rc;
    ngx_str_t                data, wrapped, signature;
    ngx_uint_t               i;
    unsigned int             mac_len;
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

    if (ngx_graph_notify_base64(pool, &enc->data, &data) != NGX_OK
        || ngx_graph_notify_base64(pool, &enc->data_key, &wrapped) != NGX_OK
        || ngx_graph_notify_base64(pool, &enc->data_signature, &signature)
           != NGX_OK)
    {
        *reason = NGX_GRAPH_NOTIFY_DROP_BASE64;
        return NGX_DECLINED;
    }

    data_key_len = sizeof(data_key);

    if (ngx_graph_notify_unwrap_key(key->pkey, &wrapped, data_key,
                                    &data_key_len)
        != NGX_OK)
    {
        *reason = NGX_GRAPH_NOTIFY_DROP_DATA_KEY;
        return NGX_DECLINED;
    }

    if (data_key_len != NGX_GRAPH_NOTIFY_DATA_KEY_LEN) {
        OPENSSL_cleanse(data_key, data_key_len);
        *reason = NGX_GRAPH_NOTIFY_DROP_KEY_LENGTH;
        return NGX_DECLINED;
    }

    /* integrity first, over the raw ciphertext; nothing is decrypted else */

    if (HMAC(EVP_sha256(), data_key, NGX_GRAPH_NOTIFY_DATA_KEY_LEN,
             data.data, data.len, mac, &mac_len)
        == NULL
        || mac_len != NGX_GRAPH_NOTIFY_SIGNATURE_LEN
        || signature.len != NGX_GRAPH_NOTIFY_SIGNATURE_LEN
        || CRYPTO_memcmp(mac, signature.data, mac_len) != 0)
    {
        OPENSSL_cleanse(data_key, sizeof(data_key));
        ERR_clear_error();
        *reason = NGX_GRAPH_NOTIFY_DROP_SIGNATURE;
        return NGX_DECLINED;
    }

    rc = ngx_graph_notify_aes_decrypt(pool, data_key, &data, plain);

    OPENSSL_cleanse(data_key, sizeof(data_key));

    if (rc != NGX_OK) {
        *reason = NGX_GRAPH_NOTIFY_DROP_DECRYPT;
        return rc;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_graph_notify_base64(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst)
{
    if (src->len == 0) {
        return NGX_ERROR;
    }

    dst->data = ngx_pnalloc(pool, ngx_base64_decoded_length(src->len));
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    return ngx_decode_base64(dst, src);
}


static ngx_int_t
ngx_graph_notify_unwrap_key(EVP_PKEY *pkey, ngx_str_t *in, u_char *key,
    size_t *len)
{
    ngx_int_t      rc;
    EVP_PKEY_CTX  *ctx;

    /* RSA-OAEP with SHA-1 and MGF1-SHA-1, no label */

    ctx = EVP_PKEY_CTX_new(pkey, NULL);
    if (ctx == NULL) {
        ERR_clear_error();
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (EVP_PKEY_decrypt_init(ctx) == 1
        && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1
        && EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha1()) == 1
        && EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha1()) == 1
        && (size_t) EVP_PKEY_get_size(pkey) <= *len
        && EVP_PKEY_decrypt(ctx, key, len, in->data, in->len) == 1)
    {
        rc = NGX_OK;
    }

    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();

    return rc;
}


static ngx_int_t
ngx_graph_notify_aes_decrypt(ngx_pool_t *pool, u_char *key, ngx_str_t *in,
    ngx_str_t *out)
{
    int              n, last;
    ngx_int_t        rc;
    EVP_CIPHER_CTX  *ctx;

    /* AES-256-CBC, IV = the first 16 bytes of the key, PKCS#7 padding */

    if (in->len == 0 || in->len % 16 || in->len > NGX_MAX_INT32_VALUE) {
        return NGX_DECLINED;
    }

    out->data = ngx_pnalloc(pool, in->len + 16);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        ERR_clear_error();
        return NGX_ERROR;
    }

    rc = NGX_DECLINED;

    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, key) == 1
        && EVP_DecryptUpdate(ctx, out->data, &n, in->data, (int) in->len)
           == 1
        && EVP_DecryptFinal_ex(ctx, out->data + n, &last) == 1)
    {
        out->len = n + last;
        rc = NGX_OK;
    }

    EVP_CIPHER_CTX_free(ctx);
    ERR_clear_error();

    return rc;
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
