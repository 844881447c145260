
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_SUBSCRIPTION_CONF_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_SUBSCRIPTION_CONF_H_INCLUDED_


#include "ngx_graph_notify_subscription.h"


/* the directives, and their checks once the configuration is read */
char *ngx_graph_notify_subscription(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_graph_notify_subscription_prune(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_graph_notify_backfill(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_graph_notify_subscription_location(ngx_conf_t *cf,
    ngx_graph_notify_loc_conf_t *glcf);
ngx_int_t ngx_graph_notify_subscription_postconf(ngx_conf_t *cf);


#endif /* _NGX_GRAPH_NOTIFY_SUBSCRIPTION_CONF_H_INCLUDED_ */
