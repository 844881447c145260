
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_CONF_FILE_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_CONF_FILE_H_INCLUDED_


#include "ngx_graph_notify.h"


/*
 * Files named in the configuration, read at start and on every reload:
 * relative names are relative to the prefix, the text lives in
 * cf->temp_pool, NUL-terminated.
 */
char *ngx_graph_notify_conf_file(ngx_conf_t *cf, ngx_str_t *name,
    size_t max, ngx_str_t *text);

/*
 * A secret given as is, or as "file:PATH" (one line; a trailing newline is
 * not part of it), of 1 to max characters, copied to cf->pool.  Messages
 * name the secret by "what" and never show its value.
 */
char *ngx_graph_notify_conf_secret(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *secret, size_t max, char *what);


#endif /* _NGX_GRAPH_NOTIFY_CONF_FILE_H_INCLUDED_ */
