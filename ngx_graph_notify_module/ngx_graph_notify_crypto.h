
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_CRYPTO_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_CRYPTO_H_INCLUDED_


#include "ngx_graph_notify.h"


/*
 * One rich item to decrypt.  It is prepared on the event loop (key found,
 * every buffer allocated) and run anywhere, a thread of a pool included:
 * running it touches nothing but the job itself and the key.
 */

typedef struct {
    ngx_graph_notify_key_t     *key;
    ngx_str_t                   data;           /* base64, from the body */
    ngx_str_t                   data_key;
    ngx_str_t                   data_signature;
    u_char                     *buf;            /* decoded bytes, and then */
    ngx_str_t                   plain;          /* the resource, out */
    size_t                      event_len;      /* out: a call's event, */
    u_char                      event[64];      /* for the line */
    ngx_graph_notify_drop_e     reason;         /* out, if rc is DECLINED */
    ngx_int_t                   rc;             /* out */
} ngx_graph_notify_decrypt_t;


ngx_int_t ngx_graph_notify_decrypt_prepare(ngx_pool_t *pool,
    ngx_array_t *keys, ngx_graph_notify_encrypted_t *enc,
    ngx_graph_notify_decrypt_t *d, ngx_graph_notify_drop_e *reason);
void ngx_graph_notify_decrypt_run(ngx_graph_notify_decrypt_t **jobs,
    ngx_uint_t n);


#endif /* _NGX_GRAPH_NOTIFY_CRYPTO_H_INCLUDED_ */
