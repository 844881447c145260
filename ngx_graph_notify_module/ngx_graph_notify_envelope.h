
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_ENVELOPE_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_ENVELOPE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * The notification envelope: one validating pass over a POST body that
 * finds the items of "value" and the fields the worker needs, and the
 * output line of an item built from the body's own bytes.
 *
 * The scan accepts a body only if jansson 2.14's json_loadb(body, len, 0)
 * accepts it too, with the same values: the root is an object or an
 * array; whitespace is space, tab, CR, LF; strings hold no byte below
 * 0x20, only valid UTF-8 (no overlong form, no surrogate, nothing above
 * U+10FFFF), only the escapes \" \\ \/ \b \f \n \r \t \uXXXX, no \u0000,
 * no unpaired surrogate escape; numbers follow JSON's grammar, integers
 * (no '.', 'e' or 'E') fit in int64, reals do not overflow to HUGE_VAL;
 * literals are true, false, null; a value nests at most 2048 levels
 * (jansson counts a scalar inside 2048 containers as level 2049); nothing
 * but whitespace follows the root.
 *
 * Where it is stricter than jansson (an input jansson accepts is refused):
 *
 *   - the root object holds "value" or "validationTokens" twice (jansson
 *     keeps the last): NGX_GRAPH_NOTIFY_ENVELOPE_STRICT;
 *   - a real number between 1e308 and 1e309 written in more than 400
 *     bytes (it is not converted to decide whether it overflows):
 *     NGX_GRAPH_NOTIFY_ENVELOPE_STRICT;
 *   - a NUL byte right after a number or a literal (jansson skips one
 *     such byte): NGX_GRAPH_NOTIFY_ENVELOPE_STRICT;
 *   - an item that holds one of the fields below twice (as keys once
 *     decoded; jansson keeps the last) is reported with "duplicate" set,
 *     and the module drops it as malformed.
 *
 * The functions use no pool, no log and no NGINX function: they need only
 * NGINX's headers and libc, so that the file compiles alone (a fuzzer
 * links it with jansson).  Work is linear in the body's length, with a
 * fixed stack of a bit per level for nesting.
 */


/* the types of JSON values, as jansson tells them apart */
typedef enum {
    NGX_GRAPH_NOTIFY_JSON_ABSENT = 0,
    NGX_GRAPH_NOTIFY_JSON_OBJECT,
    NGX_GRAPH_NOTIFY_JSON_ARRAY,
    NGX_GRAPH_NOTIFY_JSON_STRING,
    NGX_GRAPH_NOTIFY_JSON_INTEGER,
    NGX_GRAPH_NOTIFY_JSON_REAL,
    NGX_GRAPH_NOTIFY_JSON_TRUE,
    NGX_GRAPH_NOTIFY_JSON_FALSE,
    NGX_GRAPH_NOTIFY_JSON_NULL
} ngx_graph_notify_json_type_e;


/*
 * A value of the body, as sent: [start, end) are its bytes; for a string,
 * the bytes between the quotes, still escaped ("escaped" says whether a
 * backslash is among them).  ABSENT: a member that is not there.
 */
typedef struct {
    u_char                         *start;
    u_char                         *end;
    ngx_graph_notify_json_type_e    type;
    unsigned                        escaped:1;
} ngx_graph_notify_json_value_t;


/* the fields of an item the worker needs, by decoded key */
typedef enum {
    NGX_GRAPH_NOTIFY_FIELD_SUBSCRIPTION_ID = 0,
    NGX_GRAPH_NOTIFY_FIELD_TENANT_ID,
    NGX_GRAPH_NOTIFY_FIELD_CLIENT_STATE,
    NGX_GRAPH_NOTIFY_FIELD_CHANGE_TYPE,
    NGX_GRAPH_NOTIFY_FIELD_RESOURCE,
    NGX_GRAPH_NOTIFY_FIELD_LIFECYCLE_EVENT,
    NGX_GRAPH_NOTIFY_FIELD_RESOURCE_DATA,
    NGX_GRAPH_NOTIFY_FIELD_ENCRYPTED_CONTENT,

    /* members of "encryptedContent", when it is an object */
    NGX_GRAPH_NOTIFY_FIELD_DATA,
    NGX_GRAPH_NOTIFY_FIELD_DATA_KEY,
    NGX_GRAPH_NOTIFY_FIELD_DATA_SIGNATURE,
    NGX_GRAPH_NOTIFY_FIELD_CERT_ID,
    NGX_GRAPH_NOTIFY_FIELD_THUMBPRINT,

    NGX_GRAPH_NOTIFY_FIELD_N
} ngx_graph_notify_field_e;


/* the members of an item with own keys that the line's fast path skips */
#define NGX_GRAPH_NOTIFY_ENVELOPE_OWN_MAX  4


/* one element of "value" */
typedef struct {
    /* the element itself, of any type; the fields only if an object */
    ngx_graph_notify_json_value_t   item;
    ngx_graph_notify_json_value_t   field[NGX_GRAPH_NOTIFY_FIELD_N];

    /*
     * For ngx_graph_notify_envelope_line(): the members of an object item
     * with one of the module's own keys, from the key's opening quote to
     * the end of the value (the first OWN_MAX of them; nown counts all),
     * and whether whitespace separates any of the item's tokens.
     */
    u_char                         *own[NGX_GRAPH_NOTIFY_ENVELOPE_OWN_MAX][2];
    ngx_uint_t                      nown;
    unsigned                        spaced:1;

    /* a field occurs twice in its object: the item is not to be used */
    unsigned                        duplicate:1;
} ngx_graph_notify_envelope_item_t;


/*
 * Called for each element of the root object's "value" array, in order,
 * as soon as the element is scanned (the item is on the scanner's stack:
 * copy what is kept).  The body is not yet known to be valid: keep the
 * items only if the scan returns NGX_GRAPH_NOTIFY_ENVELOPE_OK.  Anything
 * but NGX_OK stops the scan with NGX_GRAPH_NOTIFY_ENVELOPE_ABORT.
 */
typedef ngx_int_t (*ngx_graph_notify_envelope_item_pt)(void *data,
    ngx_graph_notify_envelope_item_t *item);


typedef struct {
    /* in: the bounds of ngx_graph_notify_bounds.h; 0 is no bound */
    ngx_uint_t                          max_items;
    size_t                              max_item_size;
    ngx_uint_t                          max_tokens;

    /* in: may be NULL */
    ngx_graph_notify_envelope_item_pt   handler;
    void                               *data;

    /* out: the root's "value" and "validationTokens" (or ABSENT) */
    ngx_graph_notify_json_value_t       value;
    ngx_graph_notify_json_value_t       tokens;
    ngx_uint_t                          nitems;

    /* out, unless OK: the byte where the scan stopped, and why */
    u_char                             *error;
    const char                         *reason;
} ngx_graph_notify_envelope_t;


typedef enum {
    /*
     * jansson accepts the body with the same values; the root is an
     * object, its "value" an array (every element reported to the
     * handler), its "validationTokens" absent or an array.
     */
    NGX_GRAPH_NOTIFY_ENVELOPE_OK = 0,

    /* jansson accepts the body, but it is no notification batch */
    NGX_GRAPH_NOTIFY_ENVELOPE_NO_VALUE,

    /* jansson rejects the body too */
    NGX_GRAPH_NOTIFY_ENVELOPE_INVALID,

    /* jansson accepts it, the scan does not (the cases listed above) */
    NGX_GRAPH_NOTIFY_ENVELOPE_STRICT,

    /*
     * A bound was passed (answered 413) before the scan met an error:
     * says nothing of the rest.  The counts are those of the bounds scan
     * the module used before: an array directly under the root (any key)
     * holds at most max_items elements, each at most max_item_size bytes
     * (from its first byte to the ',' or ']' after it), and the body at
     * most max_tokens tokens (objects, arrays, strings and keys, numbers,
     * literals).
     */
    NGX_GRAPH_NOTIFY_ENVELOPE_ITEMS,
    NGX_GRAPH_NOTIFY_ENVELOPE_ITEM_SIZE,
    NGX_GRAPH_NOTIFY_ENVELOPE_TOKENS,

    /* the handler returned something other than NGX_OK */
    NGX_GRAPH_NOTIFY_ENVELOPE_ABORT
} ngx_graph_notify_envelope_rc_e;


ngx_graph_notify_envelope_rc_e ngx_graph_notify_envelope_scan(u_char *p,
    size_t len, ngx_graph_notify_envelope_t *env);

/*
 * A string value of an accepted scan, decoded: its own bytes when it has
 * no escape, or decoded into buf, which has room for (end - start) bytes
 * (decoding never lengthens a string).
 */
void ngx_graph_notify_envelope_string(ngx_graph_notify_json_value_t *v,
    u_char *buf, ngx_str_t *s);

/*
 * A value of an accepted scan copied to dst without the whitespace
 * between its tokens (strings unchanged, escapes as sent); at most
 * (end - start) bytes, and 2 more for a string (its quotes, which
 * [start, end) leaves out).  Returns the end of what was written.
 */
u_char *ngx_graph_notify_envelope_compact(u_char *dst,
    ngx_graph_notify_json_value_t *v);

/*
 * The output line of an item (an object) of an accepted scan:
 * {"receivedAt":"<received>","kind":"<kind>" then ,"key":value for each
 * member of the item, in order, except the module's own keys (compared
 * decoded: receivedAt, kind, decryptedResource, callRecord, fetchedAt,
 * notifications, clientState, encryptedContent, callEvent, backfill),
 * each compacted as above; no closing brace: the caller adds its own
 * members, then '}'.  received and kind are written as they are (plain
 * ASCII, nothing to escape).  line_size() is a bound of what line()
 * writes; line() returns the end of what it wrote.
 */
size_t ngx_graph_notify_envelope_line_size(
    ngx_graph_notify_envelope_item_t *item, ngx_str_t *received,
    ngx_str_t *kind);
u_char *ngx_graph_notify_envelope_line(u_char *p,
    ngx_graph_notify_envelope_item_t *item, ngx_str_t *received,
    ngx_str_t *kind);


/* the fields' keys, by ngx_graph_notify_field_e */
extern ngx_str_t  ngx_graph_notify_envelope_fields[];

/* the module's own keys, never copied from an item; a null-terminated list */
extern ngx_str_t  ngx_graph_notify_envelope_own_keys[];


#endif /* _NGX_GRAPH_NOTIFY_ENVELOPE_H_INCLUDED_ */
