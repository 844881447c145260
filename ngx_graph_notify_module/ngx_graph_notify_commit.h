
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_COMMIT_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_COMMIT_H_INCLUDED_


#include "ngx_graph_notify.h"


typedef struct ngx_graph_notify_commit_s  ngx_graph_notify_commit_t;

/* rc: NGX_OK once the lines written before the request are on disk */
typedef void (*ngx_graph_notify_commit_pt)(ngx_graph_notify_commit_t *c,
    ngx_int_t rc);

struct ngx_graph_notify_commit_s {
    ngx_queue_t                  link;
    ngx_graph_notify_commit_pt   handler;
    void                        *data;
};


ngx_int_t ngx_graph_notify_commit_init(ngx_cycle_t *cycle, ngx_log_t *log);
void ngx_graph_notify_commit(ngx_open_file_t *file,
    ngx_graph_notify_commit_t *c);
void ngx_graph_notify_commit_cancel(ngx_graph_notify_commit_t *c);
ngx_uint_t ngx_graph_notify_commit_waiting(void);
void ngx_graph_notify_commit_reopen(ngx_open_file_t *file, ngx_log_t *log);
void ngx_graph_notify_commit_fd(ngx_fd_t fd, ngx_uint_t full, ngx_log_t *log);
void ngx_graph_notify_commit_every(ngx_fd_t fd);
void ngx_graph_notify_commit_exit(void);


#endif /* _NGX_GRAPH_NOTIFY_COMMIT_H_INCLUDED_ */
