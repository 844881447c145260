
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_BOUNDS_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_BOUNDS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* JSON tokens a batch may hold per item of graph_notify_max_batch */
#define NGX_GRAPH_NOTIFY_TOKENS_PER_ITEM  64

/* nesting of a decrypted resource: what common JSON readers accept */
#define NGX_GRAPH_NOTIFY_MAX_DEPTH        64


typedef enum {
    NGX_GRAPH_NOTIFY_SCAN_OK = 0,
    NGX_GRAPH_NOTIFY_SCAN_ITEMS,
    NGX_GRAPH_NOTIFY_SCAN_ITEM_SIZE,
    NGX_GRAPH_NOTIFY_SCAN_TOKENS
} ngx_graph_notify_scan_e;


typedef struct {
    ngx_uint_t                  max_items;
    size_t                      max_item_size;
    ngx_uint_t                  max_tokens;
} ngx_graph_notify_bounds_t;


ngx_graph_notify_scan_e ngx_graph_notify_scan_body(u_char *p, size_t len,
    ngx_graph_notify_bounds_t *bounds);
ngx_int_t ngx_graph_notify_depth_ok(u_char *p, size_t len, ngx_uint_t max);


#endif /* _NGX_GRAPH_NOTIFY_BOUNDS_H_INCLUDED_ */
