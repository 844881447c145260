
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"


typedef struct {
    ngx_uint_t                  dropped[NGX_GRAPH_NOTIFY_DROP_N];
    ngx_uint_t                  total;
    ngx_uint_t                  first_index;
    ngx_graph_notify_drop_e     first_reason;
    json_t                     *first_item;
} ngx_graph_notify_drops_t;


static ngx_int_t ngx_graph_notify_handshake(ngx_http_request_t *r,
    ngx_str_t *token);
static void ngx_graph_notify_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_graph_notify_process(ngx_http_request_t *r);
static ngx_int_t ngx_graph_notify_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_graph_notify_item(ngx_http_request_t *r,
    ngx_graph_notify_loc_conf_t *glcf, json_t *item,
    ngx_graph_notify_entry_t *entry, ngx_graph_notify_drop_e *reason);
static ngx_int_t ngx_graph_notify_check_item(json_t *item);
static ngx_int_t ngx_graph_notify_tenant_allowed(
    ngx_graph_notify_loc_conf_t *glcf, json_t *tenant);
static ngx_int_t ngx_graph_notify_decrypt_item(ngx_http_request_t *r,
    ngx_graph_notify_loc_conf_t *glcf, json_t *enc, ngx_str_t *plain,
    ngx_graph_notify_drop_e *reason);
static ngx_int_t ngx_graph_notify_line(ngx_http_request_t *r, json_t *item,
    const char *kind, ngx_str_t *plain, ngx_str_t *line);
static void ngx_graph_notify_log_drops(ngx_http_request_t *r,
    ngx_graph_notify_drops_t *drops, ngx_uint_t n);
static ngx_int_t ngx_graph_notify_reject(ngx_http_request_t *r,
    ngx_int_t status, const char *fmt, ...);
static void ngx_graph_notify_sanitize(json_t *value, u_char *buf,
    size_t size);


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
    ngx_string("not_json")
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
    "decrypted content is not JSON"
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

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "graph_notify: method %V not allowed, Graph uses POST",
                      &r->method_name);

        return NGX_HTTP_NOT_ALLOWED;
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
    ngx_http_finalize_request(r, ngx_graph_notify_process(r));
}


static ngx_int_t
ngx_graph_notify_process(ngx_http_request_t *r)
{
    size_t                         n, i;
    json_t                        *root, *value, *tokens;
    ngx_int_t                      rc;
    ngx_str_t                      body, tokens_json;
    json_error_t                   err;
    ngx_uint_t                     k;
    ngx_table_elt_t               *h;
    ngx_graph_notify_drop_e        reason;
    ngx_graph_notify_entry_t      *entries;
    ngx_graph_notify_queue_t      *q;
    ngx_graph_notify_drops_t       drops;
    ngx_graph_notify_loc_conf_t   *glcf;
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_graph_notify_module);
    glcf = ngx_http_get_module_loc_conf(r, ngx_http_graph_notify_module);
    q = gmcf->shm_zone->data;

    if (ngx_graph_notify_read_body(r, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (body.len == 0) {
        ngx_graph_notify_stat_inc(q, rejected);
        return ngx_graph_notify_reject(r, NGX_HTTP_BAD_REQUEST,
                                       "empty request body");
    }

    /* jansson bounds the nesting depth it accepts (2048 levels) */

    root = json_loadb((char *) body.data, body.len, 0, &err);

    if (root == NULL) {
        ngx_graph_notify_stat_inc(q, rejected);
        return ngx_graph_notify_reject(r, NGX_HTTP_BAD_REQUEST,
                                       "request body is not JSON: %s "
                                       "(line %d, column %d)",
                                       err.text, err.line, err.column);
    }

    value = json_object_get(root, "value");
    tokens = json_object_get(root, "validationTokens");

    if (!json_is_array(value)
        || (tokens != NULL && !json_is_array(tokens)))
    {
        json_decref(root);
        ngx_graph_notify_stat_inc(q, rejected);
        return ngx_graph_notify_reject(r, NGX_HTTP_BAD_REQUEST,
                                       "request body has no \"value\" "
                                       "array or a malformed "
                                       "\"validationTokens\"");
    }

    ngx_str_null(&tokens_json);

    if (tokens != NULL && json_array_size(tokens) > 0) {
        tokens_json.data = (u_char *) json_dumps(tokens, JSON_COMPACT);
        if (tokens_json.data == NULL) {
            json_decref(root);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        tokens_json.len = ngx_strlen(tokens_json.data);
    }

    n = json_array_size(value);

    entries = ngx_palloc(r->pool,
                         (n ? n : 1) * sizeof(ngx_graph_notify_entry_t));
    if (entries == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_memzero(&drops, sizeof(ngx_graph_notify_drops_t));
    k = 0;

    for (i = 0; i < n; i++) {
        rc = ngx_graph_notify_item(r, glcf, json_array_get(value, i),
                                   &entries[k], &reason);

        if (rc == NGX_OK) {
            k++;
            continue;
        }

        if (rc == NGX_ERROR) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        if (drops.total++ == 0) {
            drops.first_index = i;
            drops.first_reason = reason;
            drops.first_item = json_array_get(value, i);
        }

        drops.dropped[reason]++;
    }

    if (k && ngx_graph_notify_queue_push(q, entries, k, &tokens_json)
             != NGX_OK)
    {

        /* nothing was queued: a 503 makes Graph deliver the batch again */

        ngx_graph_notify_stat_inc(q, queue_full);

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "graph_notify: queue full (%ui items, %uz bytes), "
                      "%ui item(s) refused with 503",
                      q->sh->count, q->sh->bytes, k);

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        h->value.data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (h->value.data == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        h->value.len = ngx_sprintf(h->value.data, "%d",
                                   NGX_GRAPH_NOTIFY_RETRY_AFTER)
                       - h->value.data;

        rc = NGX_HTTP_SERVICE_UNAVAILABLE;
        goto done;
    }

    if (k) {
        ngx_graph_notify_queue_wake(q, gmcf->wake_fd, r->connection->log);
    }

    ngx_graph_notify_stat_add(q, items_received, n);
    ngx_graph_notify_stat_add(q, items_accepted, k);

    if (drops.total) {
        for (i = 0; i < NGX_GRAPH_NOTIFY_DROP_N; i++) {
            if (drops.dropped[i]) {
                ngx_graph_notify_stat_add(q, dropped[i], drops.dropped[i]);
            }
        }

        ngx_graph_notify_log_drops(r, &drops, n);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "graph_notify: queued %ui of %uz item(s)", k, n);

    r->headers_out.status = NGX_HTTP_ACCEPTED;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_OK) {
        rc = ngx_http_send_special(r, NGX_HTTP_LAST);
    }

done:

    if (tokens_json.data) {
        free(tokens_json.data);
    }

    json_decref(root);

    return rc;
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
ngx_graph_notify_item(ngx_http_request_t *r,
    ngx_graph_notify_loc_conf_t *glcf, json_t *item,
    ngx_graph_notify_entry_t *entry, ngx_graph_notify_drop_e *reason)
{
    json_t       *cs, *enc, *v;
    ngx_int_t     rc;
    ngx_str_t     value, plain, *pplain, resource;
    const char   *kind;

    if (ngx_graph_notify_check_item(item) != NGX_OK) {
        *reason = NGX_GRAPH_NOTIFY_DROP_MALFORMED;
        return NGX_DECLINED;
    }

    if (glcf->client_states) {
        cs = json_object_get(item, "clientState");

        if (!json_is_string(cs)) {
            *reason = NGX_GRAPH_NOTIFY_DROP_CLIENT_STATE;
            return NGX_DECLINED;
        }

        value.data = (u_char *) json_string_value(cs);
        value.len = json_string_length(cs);

        if (!ngx_graph_notify_secret_match(&value, glcf->client_states)) {
            *reason = NGX_GRAPH_NOTIFY_DROP_CLIENT_STATE;
            return NGX_DECLINED;
        }
    }

    if (glcf->tenants
        && ngx_graph_notify_tenant_allowed(glcf,
                                           json_object_get(item, "tenantId"))
           != NGX_OK)
    {
        *reason = NGX_GRAPH_NOTIFY_DROP_TENANT;
        return NGX_DECLINED;
    }

    pplain = NULL;
    enc = json_object_get(item, "encryptedContent");

    /* what the helper needs to route the item, kept in its header */

    v = json_object_get(item, "tenantId");
    entry->tenant.data = (u_char *) json_string_value(v);
    entry->tenant.len = json_string_length(v);
    ngx_str_null(&entry->record);

    if (json_object_get(item, "lifecycleEvent")) {
        kind = "lifecycle";
        entry->kind = NGX_GRAPH_NOTIFY_KIND_LIFECYCLE;

    } else if (enc) {
        kind = "rich";
        entry->kind = NGX_GRAPH_NOTIFY_KIND_RICH;

        rc = ngx_graph_notify_decrypt_item(r, glcf, enc, &plain, reason);
        if (rc != NGX_OK) {
            return rc;
        }

        pplain = &plain;

    } else {
        kind = "basic";
        entry->kind = NGX_GRAPH_NOTIFY_KIND_OTHER;

        v = json_object_get(item, "resource");
        resource.data = (u_char *) json_string_value(v);
        resource.len = json_string_length(v);

        if (entry->tenant.len
            && ngx_graph_notify_record_id(&resource, &entry->record)
               == NGX_OK)
        {
            entry->kind = NGX_GRAPH_NOTIFY_KIND_CALL_RECORD;
        }
    }

    return ngx_graph_notify_line(r, item, kind, pplain, &entry->line);
}


static ngx_int_t
ngx_graph_notify_check_item(json_t *item)
{
    json_t  *v;

    /* the fields the helper and the output rely on, with their types */

    if (!json_is_object(item)) {
        return NGX_DECLINED;
    }

    v = json_object_get(item, "subscriptionId");
    if (!json_is_string(v) || json_string_length(v) == 0) {
        return NGX_DECLINED;
    }

    v = json_object_get(item, "tenantId");
    if (!json_is_string(v)) {
        return NGX_DECLINED;
    }

    v = json_object_get(item, "lifecycleEvent");

    if (v != NULL) {
        return json_is_string(v) ? NGX_OK : NGX_DECLINED;
    }

    if (!json_is_string(json_object_get(item, "changeType"))
        || !json_is_string(json_object_get(item, "resource")))
    {
        return NGX_DECLINED;
    }

    v = json_object_get(item, "resourceData");
    if (v != NULL && !json_is_object(v)) {
        return NGX_DECLINED;
    }

    v = json_object_get(item, "encryptedContent");
    if (v != NULL && !json_is_object(v)) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_graph_notify_tenant_allowed(ngx_graph_notify_loc_conf_t *glcf,
    json_t *tenant)
{
    size_t       len;
    ngx_str_t   *t;
    ngx_uint_t   i;
    const char  *id;

    id = json_string_value(tenant);
    len = json_string_length(tenant);

    t = glcf->tenants->elts;

    for (i = 0; i < glcf->tenants->nelts; i++) {
        if (t[i].len == len
            && ngx_strncasecmp(t[i].data, (u_char *) id, len) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_graph_notify_decrypt_item(ngx_http_request_t *r,
    ngx_graph_notify_loc_conf_t *glcf, json_t *enc, ngx_str_t *plain,
    ngx_graph_notify_drop_e *reason)
{
    json_t                        *v, *parsed;
    ngx_int_t                      rc;
    ngx_uint_t                     i;
    ngx_str_t                     *field[5];
    ngx_graph_notify_encrypted_t   e;

    static const char  *names[] = {
        "data", "dataKey", "dataSignature", "encryptionCertificateId",
        "encryptionCertificateThumbprint"
    };

    field[0] = &e.data;
    field[1] = &e.data_key;
    field[2] = &e.data_signature;
    field[3] = &e.cert_id;
    field[4] = &e.thumbprint;

    for (i = 0; i < 5; i++) {
        v = json_object_get(enc, names[i]);

        if (v == NULL && i == 4) {
            ngx_str_null(field[i]);
            break;
        }

        if (!json_is_string(v)) {
            *reason = NGX_GRAPH_NOTIFY_DROP_MALFORMED;
            return NGX_DECLINED;
        }

        field[i]->data = (u_char *) json_string_value(v);
        field[i]->len = json_string_length(v);
    }

    rc = ngx_graph_notify_decrypt(r->pool, glcf->keys, &e, plain, reason);

    if (rc != NGX_OK) {
        return rc;
    }

    /* the resource must be JSON: it is written into the output as is */

    parsed = json_loadb((char *) plain->data, plain->len, JSON_DECODE_ANY,
                        NULL);

    if (!json_is_object(parsed)) {
        json_decref(parsed);
        *reason = NGX_GRAPH_NOTIFY_DROP_NOT_JSON;
        return NGX_DECLINED;
    }

    json_decref(parsed);

    return NGX_OK;
}


static ngx_int_t
ngx_graph_notify_line(ngx_http_request_t *r, json_t *item, const char *kind,
    ngx_str_t *plain, ngx_str_t *line)
{
    u_char      *p, *d, *end;
    char        *dump;
    size_t       len;
    json_t      *out, *v;
    const char  *key;
    u_char       ts[sizeof("1970-01-01T00:00:00.000Z")];

    static const char  rich_key[] = ",\"decryptedResource\":";

    (void) ngx_graph_notify_timestamp(ts);

    out = json_object();
    if (out == NULL) {
        return NGX_ERROR;
    }

    if (json_object_set_new(out, "receivedAt", json_string((char *) ts))
        != 0
        || json_object_set_new(out, "kind", json_string(kind)) != 0)
    {
        json_decref(out);
        return NGX_ERROR;
    }

    /* the secret and the ciphertext never reach the output */

    json_object_foreach(item, key, v) {
        if (ngx_strcmp(key, "clientState") == 0
            || ngx_strcmp(key, "encryptedContent") == 0
            || ngx_strcmp(key, "receivedAt") == 0
            || ngx_strcmp(key, "kind") == 0)
        {
            continue;
        }

        if (json_object_set(out, key, v) != 0) {
            json_decref(out);
            return NGX_ERROR;
        }
    }

    dump = json_dumps(out, JSON_COMPACT);
    json_decref(out);

    if (dump == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(dump);

    if (plain) {
        len += sizeof(rich_key) - 1 + plain->len;
    }

    line->data = ngx_pnalloc(r->pool, len);
    if (line->data == NULL) {
        free(dump);
        return NGX_ERROR;
    }

    if (plain == NULL) {
        line->len = ngx_cpymem(line->data, dump, len) - line->data;
        free(dump);
        return NGX_OK;
    }

    /*
     * The decrypted resource goes in byte for byte, as Graph sent it; only
     * line breaks, which valid JSON has outside strings alone, become
     * spaces so that the record stays on one line.
     */

    p = ngx_cpymem(line->data, dump, ngx_strlen(dump) - 1);
    p = ngx_cpymem(p, rich_key, sizeof(rich_key) - 1);

    free(dump);

    end = plain->data + plain->len;

    for (d = plain->data; d < end; d++) {
        *p++ = (*d == LF || *d == CR) ? ' ' : *d;
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
    ngx_uint_t   i;
    u_char       counts[256], sub[80];

    p = counts;
    last = counts + sizeof(counts);

    for (i = 0; i < NGX_GRAPH_NOTIFY_DROP_N; i++) {
        if (drops->dropped[i]) {
            p = ngx_slprintf(p, last, "%s%V=%ui", p == counts ? "" : " ",
                             &ngx_graph_notify_drop_names[i],
                             drops->dropped[i]);
        }
    }

    ngx_graph_notify_sanitize(json_object_get(drops->first_item,
                                              "subscriptionId"),
                              sub, sizeof(sub));

    /* one line per request, however many items it dropped */

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "graph_notify: dropped %ui of %ui item(s) (%*s); "
                  "first: item %ui, subscription %s: %s",
                  drops->total, n, p - counts, counts, drops->first_index,
                  sub, ngx_graph_notify_drop_text[drops->first_reason]);
}


static void
ngx_graph_notify_sanitize(json_t *value, u_char *buf, size_t size)
{
    size_t       i, len;
    const char  *s;

    /* ids come from the network: log them only if they look like ids */

    s = json_string_value(value);
    len = json_string_length(value);

    if (s == NULL || len == 0 || len >= size) {
        ngx_cpystrn(buf, (u_char *) "(none)", size);
        return;
    }

    for (i = 0; i < len; i++) {
        if (!isalnum((u_char) s[i]) && s[i] != '-' && s[i] != '_') {
            ngx_cpystrn(buf, (u_char *) "(invalid)", size);
            return;
        }
    }

    ngx_cpystrn(buf, (u_char *) s, len + 1);
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

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "graph_notify: %*s, answered %i", p - msg, msg, status);

    return status;
}
