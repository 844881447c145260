
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_SUBSCRIPTION_RECONCILE_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_SUBSCRIPTION_RECONCILE_H_INCLUDED_


#include "ngx_graph_notify_subscription.h"


ngx_int_t ngx_graph_notify_reconcile_start(ngx_graph_notify_subs_t *m);
void ngx_graph_notify_reconcile_cleanup(ngx_graph_notify_subs_t *m);


#endif /* _NGX_GRAPH_NOTIFY_SUBSCRIPTION_RECONCILE_H_INCLUDED_ */
