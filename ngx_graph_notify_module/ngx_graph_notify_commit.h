
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


typedef struct ngx_graph_notify_commit_job_s  ngx_graph_notify_commit_job_t;

typedef void (*ngx_graph_notify_commit_job_pt)(
    ngx_graph_notify_commit_job_t *job);

/*
 * Other blocking disk work of the helper (the subscriptions' state file):
 * run() on a thread of the committer's, apart from the output's syncs,
 * then handler() on the event loop.  run() touches only the job's data.
 */
struct ngx_graph_notify_commit_job_s {
    ngx_queue_t                      link;
    ngx_graph_notify_commit_job_pt   run;
    ngx_graph_notify_commit_job_pt   handler;
    void                            *data;
    ngx_uint_t                       state;     /* under the mutex */
};


ngx_int_t ngx_graph_notify_commit_init(ngx_cycle_t *cycle,
    ngx_msec_t interval, ngx_atomic_t *syncs, ngx_log_t *log);
void ngx_graph_notify_commit(ngx_open_file_t *file,
    ngx_graph_notify_commit_t *c);
void ngx_graph_notify_commit_cancel(ngx_graph_notify_commit_t *c);
ngx_uint_t ngx_graph_notify_commit_waiting(void);
void ngx_graph_notify_commit_reopen(ngx_open_file_t *file, ngx_log_t *log);
void ngx_graph_notify_commit_fd(ngx_fd_t fd, ngx_uint_t full, ngx_log_t *log);
void ngx_graph_notify_commit_every(ngx_fd_t fd);
void ngx_graph_notify_commit_exit(void);
void ngx_graph_notify_commit_post(ngx_graph_notify_commit_job_t *job);
void ngx_graph_notify_commit_wait(ngx_graph_notify_commit_job_t *job);


#endif /* _NGX_GRAPH_NOTIFY_COMMIT_H_INCLUDED_ */
