
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


/*
 * A differential fuzz target (libFuzzer): the worker's notification intake
 * against jansson.
 *
 * The oracle, below, is what the worker decided with jansson alone: the
 * bounds (413), json_loadb(body, len, 0) (400), the "value" and
 * "validationTokens" arrays (400), then per item the checks, the
 * clientState and tenant, the kind, the tenant and call-record id kept,
 * the encrypted fields of a rich item, and the output line as a jansson
 * object.  Every input is run through it and through the module's own
 * code, and any difference that the module's headers do not document
 * aborts, which libFuzzer reports as a finding.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>
#include <math.h>

#include "ngx_graph_notify_bounds.h"
#include "ngx_graph_notify_envelope.h"


#define FUZZ_RECEIVED  "2026-12-01T00:00:00.000Z"

/* the longest call-record id the worker keeps (NGX_GRAPH_NOTIFY_RECORD_ID_MAX) */
#define FUZZ_RECORD_ID_MAX  128


/* the bounds of a body: graph_notify_max_batch, _max_item_size, tokens */
typedef struct {
    ngx_uint_t                  max_items;
    size_t                      max_item_size;
    ngx_uint_t                  max_tokens;
} fuzz_bounds_t;


typedef enum {
    FUZZ_SCAN_OK = 0,
    FUZZ_SCAN_ITEMS,
    FUZZ_SCAN_ITEM_SIZE,
    FUZZ_SCAN_TOKENS
} fuzz_scan_e;


typedef enum {
    FUZZ_ACCEPTED = 0,
    FUZZ_DROP_MALFORMED,
    FUZZ_DROP_CLIENT_STATE,
    FUZZ_DROP_TENANT
} fuzz_decision_e;


/* the item fields, in the order of ngx_graph_notify_field_e */
static const char  *fuzz_fields[] = {
    "subscriptionId", "tenantId", "clientState", "changeType", "resource",
    "lifecycleEvent", "resourceData", "encryptedContent",
    "data", "dataKey", "dataSignature", "encryptionCertificateId",
    "encryptionCertificateThumbprint", NULL
};

#define FUZZ_FIELD_ITEM  8      /* fields before this are the item's own */
#define FUZZ_FIELD_N     13


/* the keys the worker never copies from an item into its line */
static const char  *fuzz_own_keys[] = {
    "receivedAt", "kind", "decryptedResource", "callRecord", "fetchedAt",
    "notifications", "clientState", "encryptedContent", "callEvent",
    "backfill", NULL
};


/* the configuration the harness decides items with */
static const char  *fuzz_client_states[] = {
    "secret-1", "old-secret", "new secret from a file",
    "s\xc3\xa9" "cret-\xf0\x9f\x94\x91", NULL
};

static const char  *fuzz_tenants[] = {
    "11111111-2222-3333-4444-555555555555",
    "AAAAAAAA-2222-3333-4444-555555555555", NULL
};


/*
 * The module's defaults, bounds small enough for the fuzzer to pass, and
 * none (0 is no bound to the scanner; the worker never configures it).
 */
static fuzz_bounds_t  fuzz_bounds[] = {
    { 1000, 512 * 1024, 1000 * NGX_GRAPH_NOTIFY_TOKENS_PER_ITEM },
    { 4, 1024, 4 * NGX_GRAPH_NOTIFY_TOKENS_PER_ITEM },
    { 0, 0, 0 }
};

#define FUZZ_BOUNDS_N  (sizeof(fuzz_bounds) / sizeof(fuzz_bounds[0]))


/* one item as the worker decided it */
typedef struct {
    fuzz_decision_e             decision;
    const char                 *kind;        /* basic, rich, lifecycle */
    ngx_str_t                   tenant;
    ngx_str_t                   record;      /* empty: not a call record */
    ngx_str_t                   enc[5];      /* rich: data .. thumbprint */
    unsigned                    thumbprint:1;
} fuzz_item_t;


/* a walk over a text that jansson accepted */
typedef struct {
    u_char                     *p;
    u_char                     *end;
    ngx_uint_t                  tokens;
    fuzz_bounds_t  *bounds;

    /* a real of more than 400 bytes at or above 1e308 was met */
    unsigned                    long_real:1;

    /* a NUL byte after a number or a literal */
    unsigned                    nul:1;
} fuzz_walk_t;


/* a member of an object: the key with its quotes, and the value */
typedef struct {
    u_char                     *key;
    u_char                     *key_end;
    u_char                     *value;
    u_char                     *value_end;
} fuzz_member_t;


static void fuzz_fail(const char *what, const u_char *data, size_t len);
static void fuzz_ws(fuzz_walk_t *w);
static fuzz_scan_e fuzz_walk_value(fuzz_walk_t *w,
    ngx_uint_t level, ngx_uint_t *items);
static ngx_uint_t fuzz_huge_real(u_char *start, u_char *end);
static fuzz_scan_e fuzz_bounds_of(u_char *p, size_t len,
    fuzz_bounds_t *bounds);
static ngx_int_t fuzz_is_guid(const char *s, size_t len);
static ngx_int_t fuzz_record_id(const char *s, size_t len, ngx_str_t *id);
static ngx_uint_t fuzz_in_list(const char **list, const char *s, size_t len,
    ngx_uint_t caseless);
static void fuzz_decide(json_t *item, fuzz_item_t *out);
static json_t *fuzz_line(json_t *item, const char *kind);
static void fuzz_check_line(json_t *line, const u_char *data, size_t len);
static void fuzz_one(u_char *data, size_t len);
static void fuzz_envelope(u_char *data, size_t len, json_t *root,
    fuzz_scan_e *scan);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
fuzz_fail(const char *what, const u_char *data, size_t len)
{
    size_t  i;

    fprintf(stderr, "\nFINDING: %s\ninput (%zu bytes): ", what, len);

    for (i = 0; i < len && i < 1024; i++) {
        if (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '\\') {
            fputc(data[i], stderr);

        } else {
            fprintf(stderr, "\\x%02x", data[i]);
        }
    }

    fprintf(stderr, "%s\n", i < len ? "..." : "");

    abort();
}


/*
 * The bounds the worker checked before jansson parsed a body (a 413),
 * counted anew on a text that jansson accepted, in the text's order (the first bound passed is the one
 * reported): every token (objects, arrays, strings and keys, numbers,
 * literals) against max_tokens; the elements of each array at level 2 (an
 * array that is a member or element of the root) against max_items, and
 * the bytes of each, from its first byte to the ',' or ']' after it,
 * against max_item_size.
 */

static void
fuzz_ws(fuzz_walk_t *w)
{
    while (w->p < w->end
           && (*w->p == ' ' || *w->p == '\t' || *w->p == '\r'
               || *w->p == '\n'))
    {
        w->p++;
    }
}


static fuzz_scan_e
fuzz_walk_value(fuzz_walk_t *w, ngx_uint_t level, ngx_uint_t *items)
{
    u_char       *start;
    ngx_uint_t    n, *elements;
    fuzz_scan_e   rc;

    fuzz_ws(w);

    if (++w->tokens > w->bounds->max_tokens && w->bounds->max_tokens) {
        return FUZZ_SCAN_TOKENS;
    }

    if (items && ++*items > w->bounds->max_items && w->bounds->max_items) {
        return FUZZ_SCAN_ITEMS;
    }

    switch (*w->p) {

    case '"':
        for (w->p++; *w->p != '"'; w->p++) {
            if (*w->p == '\\') {
                w->p++;
            }
        }

        w->p++;
        return FUZZ_SCAN_OK;

    case '{':
        w->p++;
        fuzz_ws(w);

        if (*w->p == '}') {
            w->p++;
            return FUZZ_SCAN_OK;
        }

        for ( ;; ) {
            /* the key: a string token */
            rc = fuzz_walk_value(w, level + 1, NULL);
            if (rc != FUZZ_SCAN_OK) {
                return rc;
            }

            fuzz_ws(w);
            w->p++;                                     /* ':' */

            rc = fuzz_walk_value(w, level + 1, NULL);
            if (rc != FUZZ_SCAN_OK) {
                return rc;
            }

            fuzz_ws(w);

            if (*w->p++ == '}') {
                return FUZZ_SCAN_OK;
            }
        }

    case '[':
        w->p++;
        fuzz_ws(w);

        if (*w->p == ']') {
            w->p++;
            return FUZZ_SCAN_OK;
        }

        n = 0;
        elements = (level + 1 == 2) ? &n : NULL;

        for ( ;; ) {
            fuzz_ws(w);
            start = w->p;

            rc = fuzz_walk_value(w, level + 1, elements);
            if (rc != FUZZ_SCAN_OK) {
                return rc;
            }

            fuzz_ws(w);

            if (elements && w->bounds->max_item_size
                && (size_t) (w->p - start) > w->bounds->max_item_size)
            {
                return FUZZ_SCAN_ITEM_SIZE;
            }

            if (*w->p++ == ']') {
                return FUZZ_SCAN_OK;
            }
        }

    default:

        /*
         * A number or a literal.  jansson skips a NUL byte that directly
         * follows one (it reads one byte ahead, and a NUL byte put back
         * reads as the end of its buffer): a NUL is part of the run, as
         * for the worker's bounds scan.
         */

        start = w->p;

        while (w->p < w->end
               && (*w->p == '\0' || ngx_strchr(",]} \t\r\n", *w->p) == NULL))
        {
            w->p++;
        }

        if (w->p - start > 400 && fuzz_huge_real(start, w->p)) {
            w->long_real = 1;
        }

        if (memchr(start, '\0', w->p - start)) {
            w->nul = 1;
        }

        return FUZZ_SCAN_OK;
    }
}


static ngx_uint_t
fuzz_huge_real(u_char *start, u_char *end)
{
    char        *text;
    double       d;
    ngx_uint_t   huge;

    if (memchr(start, '.', end - start) == NULL
        && memchr(start, 'e', end - start) == NULL
        && memchr(start, 'E', end - start) == NULL)
    {
        return 0;
    }

    text = strndup((char *) start, end - start);
    if (text == NULL) {
        abort();
    }

    d = strtod(text, NULL);
    huge = (fabs(d) >= 1e308);

    free(text);

    return huge;
}


static fuzz_scan_e
fuzz_bounds_of(u_char *p, size_t len, fuzz_bounds_t *bounds)
{
    fuzz_walk_t  w;

    ngx_memzero(&w, sizeof(fuzz_walk_t));
    w.p = p;
    w.end = p + len;
    w.bounds = bounds;

    return fuzz_walk_value(&w, 0, NULL);
}


/* the worker's checks, written anew */

static ngx_int_t
fuzz_is_guid(const char *s, size_t len)
{
    size_t  k;

    if (len != 36) {
        return NGX_DECLINED;
    }

    for (k = 0; k < 36; k++) {
        if (k == 8 || k == 13 || k == 18 || k == 23) {
            if (s[k] != '-') {
                return NGX_DECLINED;
            }

        } else if (!isxdigit((u_char) s[k])) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
fuzz_record_id(const char *s, size_t len, ngx_str_t *id)
{
    size_t       i, plen;
    const char  *prefix = "communications/callrecords/";

    plen = strlen(prefix);

    if (len && *s == '/') {
        s++;
        len--;
    }

    if (len <= plen || strncasecmp(s, prefix, plen) != 0) {
        return NGX_DECLINED;
    }

    s += plen;
    len -= plen;

    if (len > FUZZ_RECORD_ID_MAX) {
        return NGX_DECLINED;
    }

    for (i = 0; i < len; i++) {
        if (!isalnum((u_char) s[i]) && s[i] != '-' && s[i] != '_') {
            return NGX_DECLINED;
        }
    }

    id->data = (u_char *) s;
    id->len = len;

    return NGX_OK;
}


static ngx_uint_t
fuzz_in_list(const char **list, const char *s, size_t len,
    ngx_uint_t caseless)
{
    for ( /* void */ ; *list; list++) {
        if (strlen(*list) == len
            && (caseless ? strncasecmp(*list, s, len)
                         : memcmp(*list, s, len)) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * What the worker decided for an item (ngx_graph_notify_item() and
 * ngx_graph_notify_check_item()), up to the decryption of a rich one,
 * which needs keys: the fields handed to it are the decision.
 */

static void
fuzz_decide(json_t *item, fuzz_item_t *out)
{
    json_t      *v, *enc;
    ngx_uint_t   i;

    ngx_memzero(out, sizeof(fuzz_item_t));
    out->decision = FUZZ_DROP_MALFORMED;

    if (!json_is_object(item)) {
        return;
    }

    v = json_object_get(item, "subscriptionId");
    if (!json_is_string(v) || json_string_length(v) == 0) {
        return;
    }

    v = json_object_get(item, "tenantId");
    if (!json_is_string(v)
        || fuzz_is_guid(json_string_value(v), json_string_length(v))
           != NGX_OK)
    {
        return;
    }

    v = json_object_get(item, "lifecycleEvent");

    if (v != NULL) {
        if (!json_is_string(v)) {
            return;
        }

    } else {
        if (!json_is_string(json_object_get(item, "changeType"))
            || !json_is_string(json_object_get(item, "resource")))
        {
            return;
        }

        v = json_object_get(item, "resourceData");
        if (v != NULL && !json_is_object(v)) {
            return;
        }

        v = json_object_get(item, "encryptedContent");
        if (v != NULL && !json_is_object(v)) {
            return;
        }
    }

    v = json_object_get(item, "clientState");

    if (!json_is_string(v)
        || !fuzz_in_list(fuzz_client_states, json_string_value(v),
                         json_string_length(v), 0))
    {
        out->decision = FUZZ_DROP_CLIENT_STATE;
        return;
    }

    v = json_object_get(item, "tenantId");

    if (!fuzz_in_list(fuzz_tenants, json_string_value(v),
                      json_string_length(v), 1))
    {
        out->decision = FUZZ_DROP_TENANT;
        return;
    }

    out->tenant.data = (u_char *) json_string_value(v);
    out->tenant.len = json_string_length(v);

    enc = json_object_get(item, "encryptedContent");

    if (json_object_get(item, "lifecycleEvent")) {
        out->kind = "lifecycle";

    } else if (enc) {
        out->kind = "rich";

        for (i = 0; i < 5; i++) {
            v = json_object_get(enc, fuzz_fields[FUZZ_FIELD_ITEM + i]);

            if (v == NULL && i == 4) {
                break;
            }

            if (!json_is_string(v)) {
                out->decision = FUZZ_DROP_MALFORMED;
                return;
            }

            out->enc[i].data = (u_char *) json_string_value(v);
            out->enc[i].len = json_string_length(v);
        }

        out->thumbprint = (i == 5);

    } else {
        out->kind = "basic";

        v = json_object_get(item, "resource");

        (void) fuzz_record_id(json_string_value(v), json_string_length(v),
                              &out->record);
    }

    out->decision = FUZZ_ACCEPTED;
}


/* the object ngx_graph_notify_line() dumped for a basic or lifecycle item */

static json_t *
fuzz_line(json_t *item, const char *kind)
{
    json_t      *out, *v;
    ngx_uint_t   i;
    const char  *key;

    out = json_object();
    if (out == NULL) {
        abort();
    }

    json_object_set_new(out, "receivedAt", json_string(FUZZ_RECEIVED));
    json_object_set_new(out, "kind", json_string(kind));

    json_object_foreach(item, key, v) {

        for (i = 0; fuzz_own_keys[i]; i++) {
            if (strcmp(key, fuzz_own_keys[i]) == 0) {
                break;
            }
        }

        if (fuzz_own_keys[i] == NULL) {
            json_object_set(out, key, v);
        }
    }

    return out;
}


/* the line as the worker wrote it: one line of JSON, the same object */

static void
fuzz_check_line(json_t *line, const u_char *data, size_t len)
{
    char    *dump;
    json_t  *again;

    dump = json_dumps(line, JSON_COMPACT);
    if (dump == NULL) {
        fuzz_fail("json_dumps() of the oracle's line failed", data, len);
    }

    if (strchr(dump, '\n') || strchr(dump, '\r')) {
        fuzz_fail("the oracle's line holds a line break", data, len);
    }

    again = json_loads(dump, 0, NULL);

    if (again == NULL || !json_equal(again, line)) {
        fuzz_fail("the oracle's line does not read back", data, len);
    }

    json_decref(again);
    free(dump);
}


static void
fuzz_one(u_char *data, size_t len)
{
    size_t         i, n;
    json_t        *root, *value, *tokens, *item, *line;
    json_error_t   err;
    ngx_uint_t     b;
    fuzz_item_t    decided;
    fuzz_scan_e    scan[FUZZ_BOUNDS_N];

    root = json_loadb((char *) data, len, 0, &err);

    for (b = 0; b < FUZZ_BOUNDS_N; b++) {
        scan[b] = root ? fuzz_bounds_of(data, len, &fuzz_bounds[b])
                       : FUZZ_SCAN_OK;
    }

    if (root) {
        value = json_object_get(root, "value");
        tokens = json_object_get(root, "validationTokens");

        if (json_is_array(value) && (tokens == NULL || json_is_array(tokens)))
        {
            n = json_array_size(value);

            for (i = 0; i < n; i++) {
                item = json_array_get(value, i);

                fuzz_decide(item, &decided);

                if (decided.decision != FUZZ_ACCEPTED
                    || ngx_strcmp(decided.kind, "rich") == 0)
                {
                    continue;
                }

                line = fuzz_line(item, decided.kind);
                fuzz_check_line(line, data, len);
                json_decref(line);
            }
        }
    }

    fuzz_envelope(data, len, root, scan);

    if (root) {
        json_decref(root);
    }
}


/*
 * The module's scanner against the oracle.  What the scanner reports of
 * an item is compared with what jansson holds, and the decisions made from
 * the reported fields (as the handler makes them) with the worker's.
 */

typedef struct {
    ngx_graph_notify_envelope_item_t  *items;
    ngx_uint_t                         n;
    ngx_uint_t                         size;
    ngx_uint_t                         abort_at;    /* 0: never */
} fuzz_collect_t;


/* the members of the object at p, in a text that jansson accepted */

static ngx_uint_t
fuzz_members(u_char *p, u_char *end, fuzz_member_t *m, ngx_uint_t max)
{
    ngx_uint_t                 n;
    fuzz_walk_t                w;
    fuzz_bounds_t  none = { (ngx_uint_t) -1, (size_t) -1,
                                        (ngx_uint_t) -1 };

    ngx_memzero(&w, sizeof(fuzz_walk_t));
    w.p = p;
    w.end = end;
    w.bounds = &none;

    fuzz_ws(&w);

    if (*w.p++ != '{') {
        return 0;
    }

    fuzz_ws(&w);

    if (*w.p == '}') {
        return 0;
    }

    for (n = 0; ; n++) {
        fuzz_ws(&w);

        if (n < max) {
            m[n].key = w.p;
        }

        (void) fuzz_walk_value(&w, 1, NULL);

        if (n < max) {
            m[n].key_end = w.p;
        }

        fuzz_ws(&w);
        w.p++;                                          /* ':' */
        fuzz_ws(&w);

        if (n < max) {
            m[n].value = w.p;
        }

        (void) fuzz_walk_value(&w, 1, NULL);

        if (n < max) {
            m[n].value_end = w.p;
        }

        fuzz_ws(&w);

        if (*w.p++ == '}') {
            return n + 1;
        }
    }
}


static ngx_int_t
fuzz_collect(void *data, ngx_graph_notify_envelope_item_t *item)
{
    fuzz_collect_t  *c = data;

    if (c->n == c->size) {
        c->size = c->size ? 2 * c->size : 16;
        c->items = realloc(c->items,
                           c->size * sizeof(ngx_graph_notify_envelope_item_t));
        if (c->items == NULL) {
            abort();
        }
    }

    c->items[c->n++] = *item;

    return (c->abort_at && c->n == c->abort_at) ? NGX_ERROR : NGX_OK;
}


/* jansson's type of a value, as the scanner names it */

static ngx_graph_notify_json_type_e
fuzz_type(json_t *v)
{
    if (v == NULL) {
        return NGX_GRAPH_NOTIFY_JSON_ABSENT;
    }

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return NGX_GRAPH_NOTIFY_JSON_OBJECT;
    case JSON_ARRAY:
        return NGX_GRAPH_NOTIFY_JSON_ARRAY;
    case JSON_STRING:
        return NGX_GRAPH_NOTIFY_JSON_STRING;
    case JSON_INTEGER:
        return NGX_GRAPH_NOTIFY_JSON_INTEGER;
    case JSON_REAL:
        return NGX_GRAPH_NOTIFY_JSON_REAL;
    case JSON_TRUE:
        return NGX_GRAPH_NOTIFY_JSON_TRUE;
    case JSON_FALSE:
        return NGX_GRAPH_NOTIFY_JSON_FALSE;
    default:
        return NGX_GRAPH_NOTIFY_JSON_NULL;
    }
}


/* the value's bytes, read by jansson, are the oracle's value */

static void
fuzz_same_value(ngx_graph_notify_json_value_t *v, json_t *expect,
    const char *what, const u_char *data, size_t len)
{
    json_t  *got;

    if (v->type != fuzz_type(expect)) {
        fprintf(stderr, "%s: type %d, jansson's %d\n", what, (int) v->type,
                (int) fuzz_type(expect));
        fuzz_fail("a value's type differs from jansson's", data, len);
    }

    if (expect == NULL || v->type == NGX_GRAPH_NOTIFY_JSON_STRING) {
        return;
    }

    if (v->start == NULL || v->end < v->start
        || v->start < data || v->end > data + len)
    {
        fprintf(stderr, "%s\n", what);
        fuzz_fail("a value's bytes are not in the body", data, len);
    }

    got = json_loadb((char *) v->start, v->end - v->start, JSON_DECODE_ANY,
                     NULL);

    if (got == NULL || !json_equal(got, expect)) {
        fprintf(stderr, "%s: \"%.*s\"\n", what, (int) (v->end - v->start),
                v->start);
        fuzz_fail("a value's bytes do not read as jansson's value", data,
                  len);
    }

    json_decref(got);
}


/* a string field decoded by the scanner; buf is freed by the caller */

static void
fuzz_string(ngx_graph_notify_json_value_t *v, ngx_str_t *s, u_char **buf)
{
    size_t  size;

    size = v->end - v->start;

    *buf = malloc(size ? size : 1);
    if (*buf == NULL) {
        abort();
    }

    ngx_graph_notify_envelope_string(v, *buf, s);
}


/*
 * Compacted bytes: no more than the value's, no whitespace outside
 * strings, and jansson reads them as the oracle's value.
 */

static void
fuzz_compact(ngx_graph_notify_json_value_t *v, json_t *expect,
    const char *what, const u_char *data, size_t len)
{
    u_char      *buf, *last, *p;
    json_t      *got;
    size_t       size;
    ngx_uint_t   in_string;

    /* a string's bytes are those between its quotes: it gets them back */

    size = v->end - v->start
           + (v->type == NGX_GRAPH_NOTIFY_JSON_STRING ? 2 : 0);

    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        abort();
    }

    last = ngx_graph_notify_envelope_compact(buf, v);

    if (last < buf || (size_t) (last - buf) > size) {
        fprintf(stderr, "%s\n", what);
        fuzz_fail("compact() wrote more than the value's bytes", data, len);
    }

    in_string = 0;

    for (p = buf; p < last; p++) {
        if (in_string) {
            if (*p == '\\') {
                p++;

            } else if (*p == '"') {
                in_string = 0;
            }

        } else if (*p == '"') {
            in_string = 1;

        } else if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            fprintf(stderr, "%s: \"%.*s\"\n", what, (int) (last - buf), buf);
            fuzz_fail("compact() left whitespace", data, len);
        }
    }

    got = json_loadb((char *) buf, last - buf, JSON_DECODE_ANY, NULL);

    if (got == NULL || !json_equal(got, expect)) {
        fprintf(stderr, "%s: \"%.*s\"\n", what, (int) (last - buf), buf);
        fuzz_fail("compact() does not read as jansson's value", data, len);
    }

    json_decref(got);
    free(buf);
}


/*
 * Whether an item holds one of the fields twice, by decoded key, or its
 * "encryptedContent" holds one of its fields twice: what the scanner
 * reports as "duplicate".
 */

static ngx_uint_t
fuzz_duplicate(u_char *start, u_char *end, ngx_uint_t first,
    ngx_uint_t last)
{
    json_t         *key;
    ngx_uint_t      i, f, n, count[FUZZ_FIELD_N], dup;
    const char     *k;
    fuzz_member_t  *m;

    m = malloc((end - start) * sizeof(fuzz_member_t));
    if (m == NULL) {
        abort();
    }

    n = fuzz_members(start, end, m, end - start);

    ngx_memzero(count, sizeof(count));
    dup = 0;

    for (i = 0; i < n; i++) {
        key = json_loadb((char *) m[i].key, m[i].key_end - m[i].key,
                         JSON_DECODE_ANY, NULL);
        if (!json_is_string(key)) {
            abort();
        }

        k = json_string_value(key);

        for (f = first; f < last; f++) {
            if (strlen(k) == json_string_length(key)
                && strcmp(k, fuzz_fields[f]) == 0)
            {
                dup |= (++count[f] > 1);
            }
        }

        if (first == 0 && strcmp(k, "encryptedContent") == 0
            && strlen(k) == json_string_length(key)
            && *m[i].value == '{')
        {
            dup |= fuzz_duplicate(m[i].value, m[i].value_end,
                                  FUZZ_FIELD_ITEM, FUZZ_FIELD_N);
        }

        json_decref(key);
    }

    free(m);

    return dup;
}


/* the root holds "value" or "validationTokens" twice, by decoded key */

static ngx_uint_t
fuzz_root_duplicate(u_char *data, size_t len)
{
    json_t         *key;
    ngx_uint_t      i, n, value, tokens;
    fuzz_member_t  *m;

    m = malloc((len ? len : 1) * sizeof(fuzz_member_t));
    if (m == NULL) {
        abort();
    }

    n = fuzz_members(data, data + len, m, len);
    value = 0;
    tokens = 0;

    for (i = 0; i < n; i++) {
        key = json_loadb((char *) m[i].key, m[i].key_end - m[i].key,
                         JSON_DECODE_ANY, NULL);
        if (!json_is_string(key)) {
            abort();
        }

        if (strlen(json_string_value(key)) == json_string_length(key)) {
            value += (strcmp(json_string_value(key), "value") == 0);
            tokens += (strcmp(json_string_value(key), "validationTokens")
                       == 0);
        }

        json_decref(key);
    }

    free(m);

    return value > 1 || tokens > 1;
}


/* the stricter refusals the scanner's header documents */

static ngx_uint_t
fuzz_documented_strict(u_char *data, size_t len)
{
    fuzz_walk_t                w;
    fuzz_bounds_t  none = { (ngx_uint_t) -1, (size_t) -1,
                                        (ngx_uint_t) -1 };

    if (fuzz_root_duplicate(data, len)) {
        return 1;
    }

    ngx_memzero(&w, sizeof(fuzz_walk_t));
    w.p = data;
    w.end = data + len;
    w.bounds = &none;

    (void) fuzz_walk_value(&w, 0, NULL);

    return w.long_real || w.nul;
}


/*
 * The decision made from the fields the scanner reports, as the handler
 * makes it: the checks of fuzz_decide() on decoded strings; an item with
 * a field twice is malformed.
 */

static void
fuzz_decide_fields(ngx_graph_notify_envelope_item_t *item, fuzz_item_t *out,
    u_char **bufs)
{
    ngx_uint_t                      i;
    ngx_str_t                       s[FUZZ_FIELD_N];
    ngx_graph_notify_json_value_t  *f;

    ngx_memzero(out, sizeof(fuzz_item_t));
    out->decision = FUZZ_DROP_MALFORMED;

    f = item->field;

    if (item->item.type != NGX_GRAPH_NOTIFY_JSON_OBJECT || item->duplicate) {
        return;
    }

    for (i = 0; i < FUZZ_FIELD_N; i++) {
        if (f[i].type == NGX_GRAPH_NOTIFY_JSON_STRING) {
            fuzz_string(&f[i], &s[i], &bufs[i]);
        }
    }

    if (f[NGX_GRAPH_NOTIFY_FIELD_SUBSCRIPTION_ID].type
            != NGX_GRAPH_NOTIFY_JSON_STRING
        || s[NGX_GRAPH_NOTIFY_FIELD_SUBSCRIPTION_ID].len == 0)
    {
        return;
    }

    if (f[NGX_GRAPH_NOTIFY_FIELD_TENANT_ID].type
            != NGX_GRAPH_NOTIFY_JSON_STRING
        || fuzz_is_guid((char *) s[NGX_GRAPH_NOTIFY_FIELD_TENANT_ID].data,
                        s[NGX_GRAPH_NOTIFY_FIELD_TENANT_ID].len)
           != NGX_OK)
    {
        return;
    }

    if (f[NGX_GRAPH_NOTIFY_FIELD_LIFECYCLE_EVENT].type
        != NGX_GRAPH_NOTIFY_JSON_ABSENT)
    {
        if (f[NGX_GRAPH_NOTIFY_FIELD_LIFECYCLE_EVENT].type
            != NGX_GRAPH_NOTIFY_JSON_STRING)
        {
            return;
        }

    } else {
        if (f[NGX_GRAPH_NOTIFY_FIELD_CHANGE_TYPE].type
                != NGX_GRAPH_NOTIFY_JSON_STRING
            || f[NGX_GRAPH_NOTIFY_FIELD_RESOURCE].type
                != NGX_GRAPH_NOTIFY_JSON_STRING)
        {
            return;
        }

        if (f[NGX_GRAPH_NOTIFY_FIELD_RESOURCE_DATA].type
                != NGX_GRAPH_NOTIFY_JSON_ABSENT
            && f[NGX_GRAPH_NOTIFY_FIELD_RESOURCE_DATA].type
                != NGX_GRAPH_NOTIFY_JSON_OBJECT)
        {
            return;
        }

        if (f[NGX_GRAPH_NOTIFY_FIELD_ENCRYPTED_CONTENT].type
                != NGX_GRAPH_NOTIFY_JSON_ABSENT
            && f[NGX_GRAPH_NOTIFY_FIELD_ENCRYPTED_CONTENT].type
                != NGX_GRAPH_NOTIFY_JSON_OBJECT)
        {
            return;
        }
    }

    if (f[NGX_GRAPH_NOTIFY_FIELD_CLIENT_STATE].type
            != NGX_GRAPH_NOTIFY_JSON_STRING
        || !fuzz_in_list(fuzz_client_states,
                         (char *) s[NGX_GRAPH_NOTIFY_FIELD_CLIENT_STATE].data,
                         s[NGX_GRAPH_NOTIFY_FIELD_CLIENT_STATE].len, 0))
    {
        out->decision = FUZZ_DROP_CLIENT_STATE;
        return;
    }

    if (!fuzz_in_list(fuzz_tenants,
                      (char *) s[NGX_GRAPH_NOTIFY_FIELD_TENANT_ID].data,
                      s[NGX_GRAPH_NOTIFY_FIELD_TENANT_ID].len, 1))
    {
        out->decision = FUZZ_DROP_TENANT;
        return;
    }

    out->tenant = s[NGX_GRAPH_NOTIFY_FIELD_TENANT_ID];

    if (f[NGX_GRAPH_NOTIFY_FIELD_LIFECYCLE_EVENT].type
        != NGX_GRAPH_NOTIFY_JSON_ABSENT)
    {
        out->kind = "lifecycle";

    } else if (f[NGX_GRAPH_NOTIFY_FIELD_ENCRYPTED_CONTENT].type
               != NGX_GRAPH_NOTIFY_JSON_ABSENT)
    {
        out->kind = "rich";

        for (i = 0; i < 5; i++) {
            if (f[NGX_GRAPH_NOTIFY_FIELD_DATA + i].type
                    == NGX_GRAPH_NOTIFY_JSON_ABSENT
                && i == 4)
            {
                break;
            }

            if (f[NGX_GRAPH_NOTIFY_FIELD_DATA + i].type
                != NGX_GRAPH_NOTIFY_JSON_STRING)
            {
                out->decision = FUZZ_DROP_MALFORMED;
                return;
            }

            out->enc[i] = s[NGX_GRAPH_NOTIFY_FIELD_DATA + i];
        }

        out->thumbprint = (i == 5);

    } else {
        out->kind = "basic";

        (void) fuzz_record_id((char *) s[NGX_GRAPH_NOTIFY_FIELD_RESOURCE].data,
                              s[NGX_GRAPH_NOTIFY_FIELD_RESOURCE].len,
                              &out->record);
    }

    out->decision = FUZZ_ACCEPTED;
}


static ngx_uint_t
fuzz_str_eq(ngx_str_t *a, ngx_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}


/* the output line of an item, against the oracle's object */

static void
fuzz_envelope_line(ngx_graph_notify_envelope_item_t *item, json_t *elem,
    const char *kind, const u_char *data, size_t len)
{
    u_char     *buf, *last;
    size_t      size;
    json_t     *got, *expect;
    ngx_str_t   received, k;

    ngx_str_set(&received, FUZZ_RECEIVED);
    k.data = (u_char *) kind;
    k.len = strlen(kind);

    size = ngx_graph_notify_envelope_line_size(item, &received, &k);

    buf = malloc(size + 1);
    if (buf == NULL) {
        abort();
    }

    last = ngx_graph_notify_envelope_line(buf, item, &received, &k);

    if (last < buf || (size_t) (last - buf) > size) {
        fuzz_fail("line() wrote more than line_size()", data, len);
    }

    if (memchr(buf, '\n', last - buf) || memchr(buf, '\r', last - buf)) {
        fuzz_fail("the line holds a line break", data, len);
    }

    *last++ = '}';

    got = json_loadb((char *) buf, last - buf, 0, NULL);
    expect = fuzz_line(elem, kind);

    if (got == NULL || !json_equal(got, expect)) {
        fprintf(stderr, "line: \"%.*s\"\n", (int) (last - buf), buf);
        fuzz_fail("the line is not the object the worker wrote", data, len);
    }

    json_decref(got);
    json_decref(expect);
    free(buf);
}


/* one item of an accepted scan against jansson's element */

static void
fuzz_envelope_item(ngx_graph_notify_envelope_item_t *item, json_t *elem,
    const u_char *data, size_t len)
{
    u_char                         *bufs[FUZZ_FIELD_N];
    json_t                         *expect, *enc;
    ngx_str_t                       s;
    ngx_uint_t                      i, dup;
    fuzz_item_t                     want, got;
    ngx_graph_notify_json_value_t  *f;

    fuzz_same_value(&item->item, elem, "item", data, len);
    fuzz_compact(&item->item, elem, "item", data, len);

    if (!json_is_object(elem)) {
        for (i = 0; i < FUZZ_FIELD_N; i++) {
            if (item->field[i].type != NGX_GRAPH_NOTIFY_JSON_ABSENT) {
                fuzz_fail("a field reported in an item that is no object",
                          data, len);
            }
        }

        return;
    }

    dup = fuzz_duplicate(item->item.start, item->item.end, 0,
                         FUZZ_FIELD_ITEM);

    if (dup != item->duplicate) {
        fprintf(stderr, "duplicate: scanner %d, oracle %d\n",
                (int) item->duplicate, (int) dup);
        fuzz_fail("\"duplicate\" is not what the item holds", data, len);
    }

    enc = json_object_get(elem, "encryptedContent");

    if (!dup) {
        for (i = 0; i < FUZZ_FIELD_N; i++) {
            f = &item->field[i];

            if (i < FUZZ_FIELD_ITEM) {
                expect = json_object_get(elem, fuzz_fields[i]);

            } else {
                expect = json_is_object(enc)
                         ? json_object_get(enc, fuzz_fields[i]) : NULL;
            }

            fuzz_same_value(f, expect, fuzz_fields[i], data, len);

            if (f->type != NGX_GRAPH_NOTIFY_JSON_STRING) {
                continue;
            }

            fuzz_string(f, &s, &bufs[0]);

            if (s.len != json_string_length(expect)
                || (s.len && memcmp(s.data, json_string_value(expect), s.len)
                             != 0))
            {
                fprintf(stderr, "%s: \"%.*s\"\n", fuzz_fields[i],
                        (int) s.len, s.data);
                fuzz_fail("a string field decodes otherwise than with "
                          "jansson", data, len);
            }

            free(bufs[0]);
        }
    }

    /* the decisions */

    fuzz_decide(elem, &want);

    ngx_memzero(bufs, sizeof(bufs));
    fuzz_decide_fields(item, &got, bufs);

    if (dup) {
        /* documented: the module drops it as malformed */

        if (got.decision != FUZZ_DROP_MALFORMED) {
            abort();
        }

    } else if (got.decision != want.decision
               || (got.decision == FUZZ_ACCEPTED
                   && (strcmp(got.kind, want.kind) != 0
                       || !fuzz_str_eq(&got.tenant, &want.tenant)
                       || !fuzz_str_eq(&got.record, &want.record)
                       || got.thumbprint != want.thumbprint
                       || !fuzz_str_eq(&got.enc[0], &want.enc[0])
                       || !fuzz_str_eq(&got.enc[1], &want.enc[1])
                       || !fuzz_str_eq(&got.enc[2], &want.enc[2])
                       || !fuzz_str_eq(&got.enc[3], &want.enc[3])
                       || !fuzz_str_eq(&got.enc[4], &want.enc[4]))))
    {
        fprintf(stderr, "decision: scanner %d, worker %d\n",
                (int) got.decision, (int) want.decision);
        fuzz_fail("the item is decided otherwise than by the worker", data,
                  len);
    }

    for (i = 0; i < FUZZ_FIELD_N; i++) {
        free(bufs[i]);
    }

    /*
     * every object item's line, accepted or not (with its kind if any),
     * even with a field twice: jansson keeps the last of a key, in the
     * item and in the line alike
     */

    fuzz_envelope_line(item, elem,
                       want.decision == FUZZ_ACCEPTED ? want.kind : "basic",
                       data, len);
}


static void
fuzz_envelope(u_char *data, size_t len, json_t *root,
    fuzz_scan_e *scan)
{
    json_t                          *value, *tokens;
    ngx_uint_t                       b, i, n, strict;
    fuzz_collect_t                   c;
    ngx_graph_notify_envelope_t      env;
    ngx_graph_notify_envelope_rc_e   rc, want;

    static ngx_uint_t  own_checked;

    if (!own_checked) {
        for (i = 0; fuzz_own_keys[i]; i++) {
            if (ngx_graph_notify_envelope_own_keys[i].len
                    != strlen(fuzz_own_keys[i])
                || ngx_strncmp(ngx_graph_notify_envelope_own_keys[i].data,
                               fuzz_own_keys[i], strlen(fuzz_own_keys[i]))
                   != 0)
            {
                fuzz_fail("the scanner's own keys are not the worker's",
                          data, 0);
            }
        }

        if (ngx_graph_notify_envelope_own_keys[i].len != 0) {
            fuzz_fail("the scanner has more own keys than the worker",
                      data, 0);
        }

        for (i = 0; i < FUZZ_FIELD_N; i++) {
            if (ngx_graph_notify_envelope_fields[i].len
                    != strlen(fuzz_fields[i])
                || ngx_strncmp(ngx_graph_notify_envelope_fields[i].data,
                               fuzz_fields[i], strlen(fuzz_fields[i]))
                   != 0)
            {
                fuzz_fail("the scanner's field names are not the worker's",
                          data, 0);
            }
        }

        own_checked = 1;
    }

    value = NULL;
    tokens = NULL;
    strict = 0;

    if (root) {
        value = json_object_get(root, "value");
        tokens = json_object_get(root, "validationTokens");
        strict = fuzz_documented_strict(data, len);
    }

    ngx_memzero(&c, sizeof(fuzz_collect_t));

    for (b = 0; b < FUZZ_BOUNDS_N; b++) {

        ngx_memzero(&env, sizeof(ngx_graph_notify_envelope_t));
        env.max_items = fuzz_bounds[b].max_items;
        env.max_item_size = fuzz_bounds[b].max_item_size;
        env.max_tokens = fuzz_bounds[b].max_tokens;

        /* the items of the module's defaults are compared */

        if (b == 0) {
            env.handler = fuzz_collect;
            env.data = &c;
        }

        rc = ngx_graph_notify_envelope_scan(data, len, &env);

        /* a refused body is logged with the reason and the byte's offset */

        if ((rc == NGX_GRAPH_NOTIFY_ENVELOPE_INVALID
             || rc == NGX_GRAPH_NOTIFY_ENVELOPE_STRICT)
            && (env.reason == NULL || env.error == NULL || env.error < data
                || env.error > data + len))
        {
            fuzz_fail("a refused body has no reason or no offset", data, len);
        }

        /* what the worker answered */

        if (root == NULL) {
            if (rc == NGX_GRAPH_NOTIFY_ENVELOPE_OK
                || rc == NGX_GRAPH_NOTIFY_ENVELOPE_NO_VALUE
                || rc == NGX_GRAPH_NOTIFY_ENVELOPE_ABORT)
            {
                fprintf(stderr, "scanner %d, jansson refuses\n", (int) rc);
                fuzz_fail("the scanner takes a body that jansson refuses",
                          data, len);
            }

            continue;
        }

        switch (scan[b]) {
        case FUZZ_SCAN_ITEMS:
            want = NGX_GRAPH_NOTIFY_ENVELOPE_ITEMS;
            break;
        case FUZZ_SCAN_ITEM_SIZE:
            want = NGX_GRAPH_NOTIFY_ENVELOPE_ITEM_SIZE;
            break;
        case FUZZ_SCAN_TOKENS:
            want = NGX_GRAPH_NOTIFY_ENVELOPE_TOKENS;
            break;
        default:
            want = (json_is_array(value)
                    && (tokens == NULL || json_is_array(tokens)))
                   ? NGX_GRAPH_NOTIFY_ENVELOPE_OK
                   : NGX_GRAPH_NOTIFY_ENVELOPE_NO_VALUE;
        }

        if (rc == NGX_GRAPH_NOTIFY_ENVELOPE_STRICT && strict) {
            /*
             * documented: duplicate root keys, a long real near DBL_MAX,
             * a NUL byte after a number or a literal
             */
            break;
        }

        if (rc != want) {
            fprintf(stderr, "scanner %d (%s at byte %ld), worker %d, "
                    "bounds %d\n", (int) rc,
                    env.reason ? env.reason : "-",
                    env.error ? (long) (env.error - data) : -1L, (int) want,
                    (int) b);
            fuzz_fail(rc == NGX_GRAPH_NOTIFY_ENVELOPE_STRICT
                      ? "the scanner refuses as stricter than jansson a "
                        "body its header does not say"
                      : "the scanner answers otherwise than the worker",
                      data, len);
        }

        if (b != 0 || rc != NGX_GRAPH_NOTIFY_ENVELOPE_OK) {
            continue;
        }

        /* the batch and its items */

        n = json_array_size(value);

        if (env.nitems != n || c.n != n) {
            fprintf(stderr, "items: %lu, reported %lu, jansson %lu\n",
                    (unsigned long) env.nitems, (unsigned long) c.n,
                    (unsigned long) n);
            fuzz_fail("the number of items differs", data, len);
        }

        fuzz_same_value(&env.value, value, "value", data, len);
        fuzz_same_value(&env.tokens, tokens, "validationTokens", data, len);

        if (tokens) {
            fuzz_compact(&env.tokens, tokens, "validationTokens", data, len);
        }

        for (i = 0; i < n; i++) {
            fuzz_envelope_item(&c.items[i], json_array_get(value, i), data,
                               len);
        }

        /* a handler that fails stops the scan, at the item it failed */

        if (n) {
            c.n = 0;
            c.abort_at = n;

            rc = ngx_graph_notify_envelope_scan(data, len, &env);

            if (rc != NGX_GRAPH_NOTIFY_ENVELOPE_ABORT || c.n != n) {
                fuzz_fail("a failing handler does not stop the scan", data,
                          len);
            }
        }
    }

    free(c.items);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char  *copy;

    /* an exact copy, so that a read past the body's end is caught */

    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        abort();
    }

    ngx_memcpy(copy, data, size);

    fuzz_one(copy, size);

    /* the body cut short by one byte: where a scanner reads one too far */

    if (size > 1) {
        free(copy);

        copy = malloc(size - 1);
        if (copy == NULL) {
            abort();
        }

        ngx_memcpy(copy, data, size - 1);
        fuzz_one(copy, size - 1);
    }

    free(copy);

    return 0;
}
