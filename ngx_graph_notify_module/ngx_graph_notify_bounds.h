
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_BOUNDS_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_BOUNDS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * JSON tokens a batch may hold per item of graph_notify_max_batch: the
 * bounds that ngx_graph_notify_envelope_scan() enforces as it reads a body
 */
#define NGX_GRAPH_NOTIFY_TOKENS_PER_ITEM  64

/* nesting of a decrypted resource: what common JSON readers accept */
#define NGX_GRAPH_NOTIFY_MAX_DEPTH        64


ngx_int_t ngx_graph_notify_depth_ok(u_char *p, size_t len, ngx_uint_t max);


#endif /* _NGX_GRAPH_NOTIFY_BOUNDS_H_INCLUDED_ */
