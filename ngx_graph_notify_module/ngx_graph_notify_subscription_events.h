
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_SUBSCRIPTION_EVENTS_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_SUBSCRIPTION_EVENTS_H_INCLUDED_


#include "ngx_graph_notify_subscription.h"


/* every item the helper takes from the queue */
void ngx_graph_notify_subscription_item(ngx_str_t *line);
/* the events another helper handed over while this one held the lock */
void ngx_graph_notify_sub_take_over(ngx_graph_notify_subs_t *m);


#endif /* _NGX_GRAPH_NOTIFY_SUBSCRIPTION_EVENTS_H_INCLUDED_ */
