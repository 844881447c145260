
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_RATELOG_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_RATELOG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * Log lines that a client can cause at will (bad bodies, drops, a full
 * queue) are written at most once a second per kind and process: after a
 * line, others of its kind are held back for 1000 ms, and the next line
 * written says how many were.
 */

typedef struct {
    ngx_msec_t                  last;
    ngx_uint_t                  suppressed;
    unsigned                    logged:1;
} ngx_graph_notify_ratelog_t;


/* whether a line may be written now; if so, *held is how many were not */
ngx_uint_t ngx_graph_notify_ratelog_allow(ngx_graph_notify_ratelog_t *rl,
    ngx_uint_t *held);


#endif /* _NGX_GRAPH_NOTIFY_RATELOG_H_INCLUDED_ */
