
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_envelope.h"

#include <math.h>


/* jansson's JSON_PARSER_MAX_DEPTH: a value inside 2048 containers fails */
#define NGX_GRAPH_NOTIFY_JSON_MAX_DEPTH  2048

/* the levels whose values are looked at: root, value, item, fields */
#define NGX_GRAPH_NOTIFY_JSON_LEVELS     5

/* a real of 1e308 to 1e309 longer than this is refused unconverted */
#define NGX_GRAPH_NOTIFY_JSON_REAL_MAX   400

/* no field's key is longer than 31 bytes, so no longer escaped key is one */
#define NGX_GRAPH_NOTIFY_JSON_KEY_MAX    (6 * 32)

/* the own keys, in ngx_graph_notify_envelope_own_keys */
#define NGX_GRAPH_NOTIFY_JSON_OWN_N      10

/*
 * The lengths of the keys looked for (fields, own and root keys: 4, 5, 7,
 * 8, 9, 10, 11, 12, 13, 14, 16, 17, 23, 31), as bits: most keys of an
 * item are ruled out by their length alone.
 */
#define NGX_GRAPH_NOTIFY_JSON_KEY_LENS                                       \
    ((1U << 4) | (1U << 5) | (1U << 7) | (1U << 8) | (1U << 9) | (1U << 10)  \
     | (1U << 11) | (1U << 12) | (1U << 13) | (1U << 14) | (1U << 16)        \
     | (1U << 17) | (1U << 23) | (1U << 31))


static ngx_inline u_char *ngx_graph_notify_json_string(u_char *p,
    u_char *end, ngx_uint_t *escaped, const char **reason);
static u_char *ngx_graph_notify_json_number(u_char *p, u_char *end,
    ngx_graph_notify_json_type_e *type, ngx_uint_t *strict,
    const char **reason);
static ngx_int_t ngx_graph_notify_json_hex4(u_char *p, u_char *end);
static size_t ngx_graph_notify_json_utf8(u_char *p, u_char *end);
static ngx_int_t ngx_graph_notify_json_key(ngx_str_t *key, ngx_str_t *names,
    ngx_uint_t from, ngx_uint_t to);
static u_char *ngx_graph_notify_json_unescape(u_char *dst, u_char *p,
    u_char *end);
static u_char *ngx_graph_notify_json_copy(u_char *dst, u_char *p,
    u_char **next);
static u_char *ngx_graph_notify_json_skip_ws(u_char *p, u_char *end);


ngx_str_t  ngx_graph_notify_envelope_fields[] = {
    ngx_string("subscriptionId"),
    ngx_string("tenantId"),
    ngx_string("clientState"),
    ngx_string("changeType"),
    ngx_string("resource"),
    ngx_string("lifecycleEvent"),
    ngx_string("resourceData"),
    ngx_string("encryptedContent"),
    ngx_string("data"),
    ngx_string("dataKey"),
    ngx_string("dataSignature"),
    ngx_string("encryptionCertificateId"),
    ngx_string("encryptionCertificateThumbprint")
};


/*
 * Keys that the module itself puts into output lines: an item that
 * carries one loses it, so that no line ever holds a key twice.  The
 * secret and the ciphertext never reach the output either.
 */

ngx_str_t  ngx_graph_notify_envelope_own_keys[] = {
    ngx_string("receivedAt"),
    ngx_string("kind"),
    ngx_string("decryptedResource"),
    ngx_string("callRecord"),
    ngx_string("fetchedAt"),
    ngx_string("notifications"),
    ngx_string("clientState"),
    ngx_string("encryptedContent"),
    ngx_string("callEvent"),
    ngx_string("backfill"),
    ngx_null_string
};


static ngx_str_t  ngx_graph_notify_envelope_root[] = {
    ngx_string("value"),
    ngx_string("validationTokens")
};


/* bytes that a string holds as they are: 0x20-0x7f but '"' and '\' */

static u_char  ngx_graph_notify_json_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
    /* 0x80-0xff: 0, checked as UTF-8 */
};


#define ngx_graph_notify_json_ws(c)                                          \
    ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')

#define ngx_graph_notify_json_is_object(stack, level)                        \
    ((stack)[(level) >> 3] & (1 << ((level) & 7)))

/* skips whitespace, and notes whether an item of "value" holds any */
#define ngx_graph_notify_json_ws_item(p, end)                                \
    ws = p;                                                                  \
    p = ngx_graph_notify_json_skip_ws(p, end);                               \
    if (p != ws && depth >= 3 && in_items) {                                 \
        item.spaced = 1;                                                     \
    }

/* bytes 0x00-0x1f, '"', '\' or 0x80-0xff in a word (or a few more) */
#define ngx_graph_notify_json_special(w)                                     \
    ((((w) - 0x2020202020202020ULL) | (((w) ^ 0x2222222222222222ULL)          \
      - 0x0101010101010101ULL) | (((w) ^ 0x5c5c5c5c5c5c5c5cULL)               \
      - 0x0101010101010101ULL) | (w)) & 0x8080808080808080ULL)


/*
 * One pass, no recursion: "stack" holds a bit per open container (set for
 * an object), "slot" the value being recorded at each of the first levels
 * (a root member, an element of "value", an item's field, a field of its
 * encryptedContent), set by the key or the element that starts it and
 * cleared when it ends.
 */

ngx_graph_notify_envelope_rc_e
ngx_graph_notify_envelope_scan(u_char *p, size_t len,
    ngx_graph_notify_envelope_t *env)
{
    u_char                            *end, *start, *element, *ws, *member,
                                      c;
    ngx_int_t                          f;
    ngx_str_t                          key;
    ngx_uint_t                         depth, tokens, elements, strict,
                                       in_items, in_enc, escaped;
    const char                        *reason;
    ngx_graph_notify_json_type_e       type;
    ngx_graph_notify_json_value_t     *v;
    ngx_graph_notify_json_value_t     *slot[NGX_GRAPH_NOTIFY_JSON_LEVELS];
    ngx_graph_notify_envelope_item_t   item;
    u_char                             stack[NGX_GRAPH_NOTIFY_JSON_MAX_DEPTH
                                             / 8 + 1];
    u_char                             buf[NGX_GRAPH_NOTIFY_JSON_KEY_MAX];

    ngx_memzero(&env->value, sizeof(ngx_graph_notify_json_value_t));
    ngx_memzero(&env->tokens, sizeof(ngx_graph_notify_json_value_t));
    ngx_memzero(slot, sizeof(slot));

    env->nitems = 0;
    env->error = NULL;
    env->reason = NULL;

    end = p + len;
    element = p;
    depth = 0;
    tokens = 0;
    elements = 0;
    strict = 0;
    in_items = 0;
    in_enc = 0;
    reason = NULL;
    member = NULL;

value:

    /* a value starts, inside "depth" containers */

    ngx_graph_notify_json_ws_item(p, end);

    if (p == end) {
        reason = "premature end of input";
        goto invalid;
    }

    if (depth == 0 && *p != '{' && *p != '[') {
        reason = "'[' or '{' expected";
        goto invalid;
    }

    if (depth >= NGX_GRAPH_NOTIFY_JSON_MAX_DEPTH) {
        reason = "maximum parsing depth reached (2048 levels)";
        goto invalid;
    }

    if (env->max_tokens && ++tokens > env->max_tokens) {
        env->error = p;
        return NGX_GRAPH_NOTIFY_ENVELOPE_TOKENS;
    }

    if (depth == 2 && !ngx_graph_notify_json_is_object(stack, 2)) {

        /* an element of an array directly under the root */

        element = p;

        if (env->max_items && ++elements > env->max_items) {
            env->error = p;
            return NGX_GRAPH_NOTIFY_ENVELOPE_ITEMS;
        }

        if (in_items) {
            ngx_memzero(&item, sizeof(ngx_graph_notify_envelope_item_t));
            slot[2] = &item.item;
        }
    }

    v = (depth < NGX_GRAPH_NOTIFY_JSON_LEVELS) ? slot[depth] : NULL;

    if (v) {
        v->start = p;
        v->escaped = 0;
    }

    c = *p;

    switch (c) {

    case '{':
    case '[':
        depth++;

        if (c == '{') {
            stack[depth >> 3] |= (u_char) (1 << (depth & 7));
            type = NGX_GRAPH_NOTIFY_JSON_OBJECT;

        } else {
            stack[depth >> 3] &= (u_char) ~(1 << (depth & 7));
            type = NGX_GRAPH_NOTIFY_JSON_ARRAY;
        }

        if (v) {
            v->type = type;
        }

        if (depth == 2) {
            elements = 0;
            in_items = (c == '[' && v == &env->value);
        }

        if (depth == 4 && in_items && c == '{'
            && v == &item.field[NGX_GRAPH_NOTIFY_FIELD_ENCRYPTED_CONTENT])
        {
            in_enc = 1;
        }

        p++;

        ngx_graph_notify_json_ws_item(p, end);

        if (p < end && *p == (c == '{' ? '}' : ']')) {
            goto close;
        }

        if (c == '{') {
            goto key;
        }

        goto value;

    case '"':
        escaped = 0;
        start = p + 1;

        p = ngx_graph_notify_json_string(start, end, &escaped, &reason);
        if (p == NULL) {
            p = start;
            goto invalid;
        }

        if (v) {
            v->type = NGX_GRAPH_NOTIFY_JSON_STRING;
            v->start = start;
            v->end = p - 1;
            v->escaped = escaped;
        }

        goto next;

    case 't':
    case 'f':
    case 'n':
        if (c == 't' && end - p >= 4 && ngx_strncmp(p, "true", 4) == 0) {
            type = NGX_GRAPH_NOTIFY_JSON_TRUE;
            p += 4;

        } else if (c == 'f' && end - p >= 5
                   && ngx_strncmp(p, "false", 5) == 0)
        {
            type = NGX_GRAPH_NOTIFY_JSON_FALSE;
            p += 5;

        } else if (c == 'n' && end - p >= 4
                   && ngx_strncmp(p, "null", 4) == 0)
        {
            type = NGX_GRAPH_NOTIFY_JSON_NULL;
            p += 4;

        } else {
            reason = "invalid literal";
            goto invalid;
        }

        /* "truex" is one invalid token for jansson: caught as what follows */
        break;

    default:
        if (c != '-' && (c < '0' || c > '9')) {
            reason = "invalid token";
            goto invalid;
        }

        start = p;

        p = ngx_graph_notify_json_number(p, end, &type, &strict, &reason);
        if (p == NULL) {
            p = start;
            goto invalid;
        }

        break;
    }

    if (v) {
        v->type = type;
        v->end = p;
    }

    if (p < end && *p == '\0') {
        /* jansson skips one NUL byte after a number or literal */
        strict = 1;
        reason = "NUL byte after a number or a literal";
        p++;
    }

    goto next;

close:

    /* p is at the closing bracket of the container at level "depth" */

    p++;

    if (depth == 2) {
        in_items = 0;
    }

    if (depth == 4) {
        in_enc = 0;
    }

    depth--;

    if (depth < NGX_GRAPH_NOTIFY_JSON_LEVELS && slot[depth]) {
        slot[depth]->end = p;
    }

next:

    /* a value ended at p, inside "depth" containers */

    if (depth < NGX_GRAPH_NOTIFY_JSON_LEVELS) {
        slot[depth] = NULL;
    }

    if (depth == 3 && in_items && member) {

        /* a member with an own key ends: the line leaves it out */

        if (item.nown < NGX_GRAPH_NOTIFY_ENVELOPE_OWN_MAX) {
            item.own[item.nown][0] = member;
            item.own[item.nown][1] = p;
        }

        item.nown++;
        member = NULL;
    }

    ngx_graph_notify_json_ws_item(p, end);

    if (depth == 0) {
        if (p != end) {
            reason = "end of file expected";
            goto invalid;
        }

        goto done;
    }

    if (p == end) {
        reason = "premature end of input";
        goto invalid;
    }

    c = *p;

    if (ngx_graph_notify_json_is_object(stack, depth)) {

        if (c == ',') {
            p++;
            goto key;
        }

        if (c == '}') {
            goto close;
        }

        reason = "',' or '}' expected";
        goto invalid;
    }

    if (c != ',' && c != ']') {
        reason = "',' or ']' expected";
        goto invalid;
    }

    if (depth == 2) {

        if (env->max_item_size
            && (size_t) (p - element) > env->max_item_size)
        {
            env->error = element;
            return NGX_GRAPH_NOTIFY_ENVELOPE_ITEM_SIZE;
        }

        if (in_items) {
            env->nitems++;

            if (env->handler && !strict
                && env->handler(env->data, &item) != NGX_OK)
            {
                env->error = element;
                return NGX_GRAPH_NOTIFY_ENVELOPE_ABORT;
            }
        }
    }

    if (c == ',') {
        p++;
        goto value;
    }

    goto close;

key:

    /* a member of the object at level "depth" starts */

    ngx_graph_notify_json_ws_item(p, end);

    if (p == end) {
        reason = "premature end of input";
        goto invalid;
    }

    if (*p != '"') {
        reason = "string or '}' expected";
        goto invalid;
    }

    if (env->max_tokens && ++tokens > env->max_tokens) {
        env->error = p;
        return NGX_GRAPH_NOTIFY_ENVELOPE_TOKENS;
    }

    escaped = 0;
    start = p + 1;

    p = ngx_graph_notify_json_string(start, end, &escaped, &reason);
    if (p == NULL) {
        p = start;
        goto invalid;
    }

    /* keys are compared decoded; a long escaped one matches nothing */

    key.data = start;
    key.len = p - 1 - start;

    if (escaped) {
        if (key.len > NGX_GRAPH_NOTIFY_JSON_KEY_MAX) {
            key.len = 0;

        } else {
            key.len = ngx_graph_notify_json_unescape(buf, start, p - 1) - buf;
            key.data = buf;
        }
    }

    if (depth == 1) {
        f = ngx_graph_notify_json_key(&key, ngx_graph_notify_envelope_root,
                                      0, 2);

        if (f == 0) {
            v = &env->value;

        } else if (f == 1) {
            v = &env->tokens;

        } else {
            v = NULL;
        }

        if (v && v->type != NGX_GRAPH_NOTIFY_JSON_ABSENT) {
            /* jansson keeps the last one: refused, see the header */
            strict = 1;
            reason = "\"value\" or \"validationTokens\" twice";
            v = NULL;
        }

        slot[1] = v;

    } else if ((depth == 3 && in_items) || (depth == 4 && in_enc)) {

        f = (depth == 3)
            ? ngx_graph_notify_json_key(&key,
                                        ngx_graph_notify_envelope_fields,
                                        NGX_GRAPH_NOTIFY_FIELD_SUBSCRIPTION_ID,
                                        NGX_GRAPH_NOTIFY_FIELD_DATA)
            : ngx_graph_notify_json_key(&key,
                                        ngx_graph_notify_envelope_fields,
                                        NGX_GRAPH_NOTIFY_FIELD_DATA,
                                        NGX_GRAPH_NOTIFY_FIELD_N);

        if (depth == 3
            && ngx_graph_notify_json_key(&key,
                                         ngx_graph_notify_envelope_own_keys,
                                         0, NGX_GRAPH_NOTIFY_JSON_OWN_N)
               != NGX_DECLINED)
        {
            member = start - 1;
        }

        if (f == NGX_DECLINED) {
            slot[depth] = NULL;

        } else {
            if (item.field[f].type != NGX_GRAPH_NOTIFY_JSON_ABSENT) {
                item.duplicate = 1;
            }

            slot[depth] = &item.field[f];
        }

    } else if (depth < NGX_GRAPH_NOTIFY_JSON_LEVELS) {
        slot[depth] = NULL;
    }

    ngx_graph_notify_json_ws_item(p, end);

    if (p == end || *p != ':') {
        reason = "':' expected";
        goto invalid;
    }

    p++;

    goto value;

done:

    if (strict) {
        env->error = p;
        env->reason = reason;
        return NGX_GRAPH_NOTIFY_ENVELOPE_STRICT;
    }

    if (!ngx_graph_notify_json_is_object(stack, 1)
        || env->value.type != NGX_GRAPH_NOTIFY_JSON_ARRAY
        || (env->tokens.type != NGX_GRAPH_NOTIFY_JSON_ABSENT
            && env->tokens.type != NGX_GRAPH_NOTIFY_JSON_ARRAY))
    {
        env->reason = "no \"value\" array or a malformed "
                      "\"validationTokens\"";
        return NGX_GRAPH_NOTIFY_ENVELOPE_NO_VALUE;
    }

    return NGX_GRAPH_NOTIFY_ENVELOPE_OK;

invalid:

    env->error = p;
    env->reason = reason;

    return NGX_GRAPH_NOTIFY_ENVELOPE_INVALID;
}


/* the end of a string whose text starts at p (past its closing quote) */

static ngx_inline u_char *
ngx_graph_notify_json_string(u_char *p, u_char *end, ngx_uint_t *escaped,
    const char **reason)
{
    size_t     n;
    uint64_t   w;
    ngx_int_t  u, low;

    for ( ;; ) {

        /* eight bytes at a time while none of them needs a look */

        while (end - p >= 8) {
            ngx_memcpy(&w, p, 8);

            if (ngx_graph_notify_json_special(w)) {
                break;
            }

            p += 8;
        }

        while (p < end && ngx_graph_notify_json_plain[*p]) {
            p++;
        }

        if (p == end) {
            *reason = "premature end of input";
            return NULL;
        }

        if (*p == '"') {
            return p + 1;
        }

        if (*p == '\\') {
            *escaped = 1;

            if (end - p < 2) {
                *reason = "premature end of input";
                return NULL;
            }

            switch (p[1]) {

            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                continue;

            case 'u':
                u = ngx_graph_notify_json_hex4(p + 2, end);

                if (u == NGX_ERROR) {
                    *reason = "invalid escape";
                    return NULL;
                }

                if (u == 0) {
                    *reason = "\\u0000 in a string";
                    return NULL;
                }

                if (u >= 0xdc00 && u <= 0xdfff) {
                    *reason = "unpaired surrogate escape";
                    return NULL;
                }

                if (u >= 0xd800 && u <= 0xdbff) {

                    if (end - p < 12 || p[6] != '\\' || p[7] != 'u') {
                        *reason = "unpaired surrogate escape";
                        return NULL;
                    }

                    low = ngx_graph_notify_json_hex4(p + 8, end);

                    if (low == NGX_ERROR) {
                        *reason = "invalid escape";
                        return NULL;
                    }

                    if (low < 0xdc00 || low > 0xdfff) {
                        *reason = "unpaired surrogate escape";
                        return NULL;
                    }

                    p += 12;
                    continue;
                }

                p += 6;
                continue;

            default:
                *reason = "invalid escape";
                return NULL;
            }
        }

        if (*p < 0x20) {
            *reason = "control character in a string";
            return NULL;
        }

        n = ngx_graph_notify_json_utf8(p, end);

        if (n == 0) {
            *reason = "invalid UTF-8";
            return NULL;
        }

        p += n;
    }
}


/* four hex digits at p, or NGX_ERROR */

static ngx_int_t
ngx_graph_notify_json_hex4(u_char *p, u_char *end)
{
    u_char      c;
    ngx_int_t   n;
    ngx_uint_t  i;

    if (end - p < 4) {
        return NGX_ERROR;
    }

    n = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            n = n * 16 + (c - '0');

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            n = n * 16 + ((c | 0x20) - 'a' + 10);

        } else {
            return NGX_ERROR;
        }
    }

    return n;
}


/*
 * The length of the UTF-8 sequence at p (a byte of 0x80 or more), or 0:
 * no overlong form, no surrogate, nothing above U+10FFFF.
 */

static size_t
ngx_graph_notify_json_utf8(u_char *p, u_char *end)
{
    u_char  c, lo, hi;
    size_t  n, i;

    c = *p;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        lo = 0x80;
        hi = 0xbf;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = (c == 0xe0) ? 0xa0 : 0x80;
        hi = (c == 0xed) ? 0x9f : 0xbf;

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = (c == 0xf0) ? 0x90 : 0x80;
        hi = (c == 0xf4) ? 0x8f : 0xbf;

    } else {
        return 0;
    }

    if ((size_t) (end - p) < n || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return n;
}


/*
 * A number as jansson reads it: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?
 * [0-9]+)?; without '.' or exponent an integer that must fit in int64,
 * otherwise a real that must not overflow.
 */

static u_char *
ngx_graph_notify_json_number(u_char *p, u_char *end,
    ngx_graph_notify_json_type_e *type, ngx_uint_t *strict,
    const char **reason)
{
    u_char     *start, *int_start, *int_end, *frac_start, *frac_end, *q;
    int64_t     order, exp;
    ngx_uint_t  neg, exp_neg;
    double      d;
    u_char      buf[NGX_GRAPH_NOTIFY_JSON_REAL_MAX + 1];

    start = p;
    neg = 0;

    if (*p == '-') {
        neg = 1;
        p++;
    }

    int_start = p;

    if (p < end && *p == '0') {
        p++;

        if (p < end && *p >= '0' && *p <= '9') {
            *reason = "invalid number";
            return NULL;
        }

    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

    } else {
        *reason = "invalid number";
        return NULL;
    }

    int_end = p;

    if (p == end || (*p != '.' && *p != 'e' && *p != 'E')) {

        *type = NGX_GRAPH_NOTIFY_JSON_INTEGER;

        /* int64: at most 9223372036854775807, or ...808 when negative */

        if (int_end - int_start < 19) {
            return p;
        }

        if (int_end - int_start > 19
            || ngx_strncmp(int_start,
                           neg ? "9223372036854775808"
                               : "9223372036854775807", 19)
               > 0)
        {
            *reason = "too big integer";
            return NULL;
        }

        return p;
    }

    *type = NGX_GRAPH_NOTIFY_JSON_REAL;

    frac_start = p;
    frac_end = p;

    if (*p == '.') {
        p++;
        frac_start = p;

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

        frac_end = p;

        if (frac_end == frac_start) {
            *reason = "invalid number";
            return NULL;
        }
    }

    exp = 0;

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        exp_neg = 0;

        if (p < end && (*p == '+' || *p == '-')) {
            exp_neg = (*p == '-');
            p++;
        }

        if (p == end || *p < '0' || *p > '9') {
            *reason = "invalid number";
            return NULL;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            if (exp < 1000000000) {
                exp = exp * 10 + (*p - '0');
            }

            p++;
        }

        if (exp_neg) {
            exp = -exp;
        }
    }

    /*
     * The decimal order of the value's first significant digit decides:
     * below 308 it is below DBL_MAX, above 308 it overflows; at 308,
     * strtod() tells, as it does for jansson (in the C locale).
     */

    if (int_end - int_start > 1 || *int_start != '0') {
        order = (int_end - int_start) - 1;

    } else {
        for (q = frac_start; q < frac_end && *q == '0'; q++) {
            /* void */
        }

        if (q == frac_end) {
            return p;           /* zero */
        }

        order = -(int64_t) (q - frac_start) - 1;
    }

    order += exp;

    if (order < 308) {
        return p;
    }

    if (order > 308) {
        *reason = "real number overflow";
        return NULL;
    }

    if (p - start > NGX_GRAPH_NOTIFY_JSON_REAL_MAX) {
        *strict = 1;
        *reason = "real number too long to convert";
        return p;
    }

    ngx_memcpy(buf, start, p - start);
    buf[p - start] = '\0';

    errno = 0;
    d = strtod((char *) buf, NULL);

    if ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE) {
        *reason = "real number overflow";
        return NULL;
    }

    return p;
}


/* the index in names[from, to) of a decoded key, or NGX_DECLINED */

static ngx_int_t
ngx_graph_notify_json_key(ngx_str_t *key, ngx_str_t *names, ngx_uint_t from,
    ngx_uint_t to)
{
    ngx_uint_t  i;

    if (key->len > 31
        || !(NGX_GRAPH_NOTIFY_JSON_KEY_LENS & (1U << key->len)))
    {
        return NGX_DECLINED;
    }

    for (i = from; i < to; i++) {
        if (names[i].len == key->len
            && ngx_memcmp(names[i].data, key->data, key->len) == 0)
        {
            return i;
        }
    }

    return NGX_DECLINED;
}


void
ngx_graph_notify_envelope_string(ngx_graph_notify_json_value_t *v,
    u_char *buf, ngx_str_t *s)
{
    if (!v->escaped) {
        s->data = v->start;
        s->len = v->end - v->start;
        return;
    }

    s->data = buf;
    s->len = ngx_graph_notify_json_unescape(buf, v->start, v->end) - buf;
}


/* decodes the text of a valid string; returns the end of what it wrote */

static u_char *
ngx_graph_notify_json_unescape(u_char *dst, u_char *p, u_char *end)
{
    u_char     *s;
    uint32_t    u;

    while (p < end) {

        s = p;

        while (p < end && *p != '\\') {
            p++;
        }

        dst = ngx_cpymem(dst, s, p - s);

        if (p == end) {
            break;
        }

        switch (p[1]) {

        case 'b':
            *dst++ = '\b';
            break;

        case 'f':
            *dst++ = '\f';
            break;

        case 'n':
            *dst++ = '\n';
            break;

        case 'r':
            *dst++ = '\r';
            break;

        case 't':
            *dst++ = '\t';
            break;

        case 'u':
            u = (uint32_t) ngx_graph_notify_json_hex4(p + 2, end);

            if (u >= 0xd800 && u <= 0xdbff) {
                u = 0x10000 + ((u - 0xd800) << 10)
                    + ((uint32_t) ngx_graph_notify_json_hex4(p + 8, end)
                       - 0xdc00);
                p += 6;
            }

            if (u < 0x80) {
                *dst++ = (u_char) u;

            } else if (u < 0x800) {
                *dst++ = (u_char) (0xc0 | (u >> 6));
                *dst++ = (u_char) (0x80 | (u & 0x3f));

            } else if (u < 0x10000) {
                *dst++ = (u_char) (0xe0 | (u >> 12));
                *dst++ = (u_char) (0x80 | ((u >> 6) & 0x3f));
                *dst++ = (u_char) (0x80 | (u & 0x3f));

            } else {
                *dst++ = (u_char) (0xf0 | (u >> 18));
                *dst++ = (u_char) (0x80 | ((u >> 12) & 0x3f));
                *dst++ = (u_char) (0x80 | ((u >> 6) & 0x3f));
                *dst++ = (u_char) (0x80 | (u & 0x3f));
            }

            p += 4;
            break;

        default:    /* '"', '\\', '/' */
            *dst++ = p[1];
            break;
        }

        p += 2;
    }

    return dst;
}


u_char *
ngx_graph_notify_envelope_compact(u_char *dst,
    ngx_graph_notify_json_value_t *v)
{
    u_char  *next;

    if (v->type == NGX_GRAPH_NOTIFY_JSON_STRING) {
        *dst++ = '"';
        dst = ngx_cpymem(dst, v->start, v->end - v->start);
        *dst++ = '"';
        return dst;
    }

    return ngx_graph_notify_json_copy(dst, v->start, &next);
}


/*
 * Copies the valid value at p without the whitespace between its tokens
 * (dst NULL: only skips it); *next is where the value ends.
 */

static u_char *
ngx_graph_notify_json_copy(u_char *dst, u_char *p, u_char **next)
{
    u_char      *s;
    ngx_uint_t   level;

    level = 0;

    for ( ;; ) {

        switch (*p) {

        case '"':
            s = p++;

            for ( ;; ) {
                while (*p != '"' && *p != '\\') {
                    p++;
                }

                if (*p == '"') {
                    break;
                }

                p += 2;
            }

            p++;

            if (dst) {
                dst = ngx_cpymem(dst, s, p - s);
            }

            break;

        case '{':
        case '[':
            level++;

            if (dst) {
                *dst++ = *p;
            }

            p++;
            break;

        case '}':
        case ']':
            level--;

            if (dst) {
                *dst++ = *p;
            }

            p++;
            break;

        case ' ':
        case '\t':
        case '\r':
        case '\n':
            p++;
            continue;

        case ',':
        case ':':
            if (dst) {
                *dst++ = *p;
            }

            p++;
            continue;

        default:

            /* a number or a literal: up to the next delimiter */

            s = p;

            while (*p != ',' && *p != '}' && *p != ']' && *p != ':'
                   && !ngx_graph_notify_json_ws(*p))
            {
                p++;
            }

            if (dst) {
                dst = ngx_cpymem(dst, s, p - s);
            }

            break;
        }

        if (level == 0) {
            *next = p;
            return dst;
        }
    }
}


size_t
ngx_graph_notify_envelope_line_size(ngx_graph_notify_envelope_item_t *item,
    ngx_str_t *received, ngx_str_t *kind)
{
    /* each member needs a comma: the item's own commas and braces do */

    return sizeof("{\"receivedAt\":\"\",\"kind\":\"\"") - 1
           + received->len + kind->len
           + (item->item.end - item->item.start);
}


u_char *
ngx_graph_notify_envelope_line(u_char *p,
    ngx_graph_notify_envelope_item_t *item, ngx_str_t *received,
    ngx_str_t *kind)
{
    u_char     *s, *quote, *key, *key_end, *next;
    size_t      len;
    ngx_str_t  *own;
    ngx_uint_t  i;
    u_char      buf[NGX_GRAPH_NOTIFY_JSON_KEY_MAX];

    p = ngx_cpymem(p, "{\"receivedAt\":\"", sizeof("{\"receivedAt\":\"") - 1);
    p = ngx_cpymem(p, received->data, received->len);
    p = ngx_cpymem(p, "\",\"kind\":\"", sizeof("\",\"kind\":\"") - 1);
    p = ngx_cpymem(p, kind->data, kind->len);
    *p++ = '"';

    if (!item->spaced && item->nown <= NGX_GRAPH_NOTIFY_ENVELOPE_OWN_MAX) {

        /* compact as sent: the members between the own ones, as they are */

        *p++ = ',';
        s = item->item.start + 1;

        for (i = 0; i < item->nown; i++) {
            p = ngx_cpymem(p, s, item->own[i][0] - s);
            s = item->own[i][1];

            if (*s == ',') {
                s++;
            }
        }

        p = ngx_cpymem(p, s, item->item.end - 1 - s);

        /* after the last member kept, or none: no comma */

        if (p[-1] == ',') {
            p--;
        }

        return p;
    }

    s = item->item.start + 1;

    for ( ;; ) {

        /* the item is a valid object: a key or its end, after whitespace */

        while (ngx_graph_notify_json_ws(*s) || *s == ',') {
            s++;
        }

        if (*s == '}') {
            return p;
        }

        quote = s;
        key = s + 1;
        len = 0;

        for (s = key; *s != '"'; s++) {
            if (*s == '\\') {
                len = 1;
                s++;
            }
        }

        key_end = s;

        if (len) {
            /* escaped; a key this long decodes to more than any own key */

            if (key_end - key <= NGX_GRAPH_NOTIFY_JSON_KEY_MAX) {
                len = ngx_graph_notify_json_unescape(buf, key, key_end) - buf;
                key = buf;

            } else {
                len = key_end - key;
            }

        } else {
            len = key_end - key;
        }

        for (own = ngx_graph_notify_envelope_own_keys; own->len; own++) {
            if (own->len == len && ngx_memcmp(own->data, key, len) == 0) {
                break;
            }
        }

        s = key_end + 1;

        while (*s != ':') {
            s++;
        }

        s++;

        while (ngx_graph_notify_json_ws(*s)) {
            s++;
        }

        if (own->len) {
            (void) ngx_graph_notify_json_copy(NULL, s, &next);
            s = next;
            continue;
        }

        *p++ = ',';
        p = ngx_cpymem(p, quote, key_end + 1 - quote);
        *p++ = ':';
        p = ngx_graph_notify_json_copy(p, s, &next);
        s = next;
    }
}


static u_char *
ngx_graph_notify_json_skip_ws(u_char *p, u_char *end)
{
    while (p < end && ngx_graph_notify_json_ws(*p)) {
        p++;
    }

    return p;
}
