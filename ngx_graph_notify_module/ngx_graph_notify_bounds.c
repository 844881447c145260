
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_bounds.h"


static u_char *ngx_graph_notify_string_end(u_char *p, u_char *end);


/*
 * jansson has no limit on the number of values it builds, and each costs
 * far more than its text: an empty object "{}" takes 3 bytes of a body and
 * about 220 bytes of heap, so 1 MiB of "{}," became 77 MB.  Before a body
 * is handed to jansson, one pass over its bytes, with no allocation,
 * counts what jansson would build and stops at the first bound passed:
 *
 *   - the elements of every array directly under the root (the "value"
 *     array of a batch, and "validationTokens"): at most max_items;
 *   - the bytes of each such element (one notification item): at most
 *     max_item_size;
 *   - the tokens of the whole body (objects, arrays, strings, keys
 *     included, numbers and literals): at most max_tokens, which bounds
 *     jansson's heap whatever the shape of the body.
 *
 * The scan only needs to tell strings from structure, so it is correct
 * for every body that jansson accepts; on text that is not JSON its counts
 * may be anything, and jansson rejects that text afterwards.  No bound
 * depends on a key's name, so escapes in keys ("valu\u0065") cannot hide
 * an array from it.
 */

ngx_graph_notify_scan_e
ngx_graph_notify_scan_body(u_char *p, size_t len,
    ngx_graph_notify_bounds_t *bounds)
{
    u_char      *end, *item;
    ngx_uint_t   depth, items, tokens, scalar, array;

    end = p + len;
    item = NULL;
    depth = 0;
    items = 0;
    tokens = 0;
    scalar = 0;
    array = 0;

    for ( /* void */ ; p < end; p++) {

        switch (*p) {

        case '}':
        case ']':
        case ',':
            scalar = 0;

            if (depth == 2 && array && item) {
                if ((size_t) (p - item) > bounds->max_item_size) {
                    return NGX_GRAPH_NOTIFY_SCAN_ITEM_SIZE;
                }

                item = NULL;
            }

            if (*p != ',' && depth) {
                depth--;
            }

            continue;

        case ':':
        case ' ':
        case '\t':
        case '\r':
        case '\n':
            scalar = 0;
            continue;

        case '"':
            scalar = 0;
            break;

        case '{':
        case '[':
            scalar = 0;
            break;

        default:

            /* a number or a literal: one token per run of such bytes */

            if (scalar) {
                continue;
            }

            scalar = 1;
            break;
        }

        /* a token starts here */

        if (++tokens > bounds->max_tokens) {
            return NGX_GRAPH_NOTIFY_SCAN_TOKENS;
        }

        if (depth == 2 && array && item == NULL) {
            item = p;

            if (++items > bounds->max_items) {
                return NGX_GRAPH_NOTIFY_SCAN_ITEMS;
            }
        }

        if (*p == '"') {
            p = ngx_graph_notify_string_end(p + 1, end);

            if (p == end) {
                break;
            }

            continue;
        }

        if (*p == '{' || *p == '[') {
            if (++depth == 2) {
                array = (*p == '[');
                items = 0;
                item = NULL;
            }
        }
    }

    return NGX_GRAPH_NOTIFY_SCAN_OK;
}


/*
 * Whether a JSON text nests at most max levels; stops at the first level
 * too deep, before any parser sees the text.
 */

ngx_int_t
ngx_graph_notify_depth_ok(u_char *p, size_t len, ngx_uint_t max)
{
    u_char      *end;
    ngx_uint_t   depth;

    end = p + len;
    depth = 0;

    for ( /* void */ ; p < end; p++) {

        switch (*p) {

        case '"':
            p = ngx_graph_notify_string_end(p + 1, end);

            if (p == end) {
                return NGX_OK;
            }

            break;

        case '{':
        case '[':
            if (++depth > max) {
                return NGX_DECLINED;
            }

            break;

        case '}':
        case ']':
            if (depth) {
                depth--;
            }

            break;

        default:
            break;
        }
    }

    return NGX_OK;
}


/* the closing quote of a string whose text starts at p, or end */

static u_char *
ngx_graph_notify_string_end(u_char *p, u_char *end)
{
    while (p < end) {

        if (*p == '\\') {
            /* the escaped byte is never the closing quote */
            p += (end - p > 1) ? 2 : 1;
            continue;
        }

        if (*p == '"') {
            return p;
        }

        p++;
    }

    return end;
}
