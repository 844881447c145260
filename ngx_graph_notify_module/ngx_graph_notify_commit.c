
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"
#include "ngx_graph_notify_commit.h"

#include <pthread.h>
#include <sys/eventfd.h>


/*
 * Group commit of the NDJSON output for the helper.  The helper writes
 * lines on its event loop (a write to the page cache), and the items stay
 * in the queue until an fdatasync() begun after their write has completed;
 * the syncs run on a thread, one at a time, each covering every write
 * made before it began.  A sync begins at most once per interval
 * (graph_notify_output_sync_interval): under load the lines of that time
 * share one, so that the disk's flushes keep a rate of their own whatever
 * the rate of items; lines are written at once all the same.
 *
 * The thread is the module's own: NGINX's thread pools are started only in
 * worker and single processes (ngx_thread_pool_init_worker()), never in
 * the cache manager process the helper runs in.  It signals completion on
 * an eventfd of its own rather than with ngx_notify(): ngx_notify() has a
 * single handler per process, which the thread pools use in a single
 * process.
 *
 * Other blocking disk work (the subscriptions' state file) runs as jobs
 * on a second thread, started at the first job, so that it never delays
 * the output's syncs; it reports on the same eventfd.
 */


/* descriptors of output files reopened while their lines await a sync */
#define NGX_GRAPH_NOTIFY_COMMIT_OLD  8

/* a job's state */
#define NGX_GRAPH_NOTIFY_JOB_IDLE     0
#define NGX_GRAPH_NOTIFY_JOB_POSTED   1
#define NGX_GRAPH_NOTIFY_JOB_RUNNING  2
#define NGX_GRAPH_NOTIFY_JOB_DONE     3


typedef struct {
    pthread_t                    thread;
    pthread_mutex_t              mutex;
    pthread_cond_t               cond;

    /* under the mutex: the sync asked for and its result */
    ngx_uint_t                   requested;
    ngx_uint_t                   finished;
    ngx_err_t                    err;
    ngx_uint_t                   nfds;
    ngx_fd_t                     fds[NGX_GRAPH_NOTIFY_COMMIT_OLD + 2];
    u_char                       full[NGX_GRAPH_NOTIFY_COMMIT_OLD + 2];

    /* under the mutex: jobs posted, and run */
    pthread_t                    job_thread;
    pthread_cond_t               job_cond;
    pthread_cond_t               job_done_cond;
    ngx_queue_t                  jobs;
    ngx_queue_t                  jobs_done;

    /* the event loop's side */
    ngx_uint_t                   job_thread_started;
    ngx_connection_t            *conn;
    ngx_log_t                   *log;
    ngx_open_file_t             *file;
    ngx_uint_t                   running;
    ngx_msec_t                   interval;
    ngx_msec_t                   started;
    ngx_event_t                  delay;
    ngx_atomic_t                *syncs;
    ngx_queue_t                  waiting;
    ngx_queue_t                  syncing;
    ngx_uint_t                   nwaiting;
    ngx_uint_t                   nold;
    ngx_fd_t                     old[NGX_GRAPH_NOTIFY_COMMIT_OLD];
    u_char                       old_full[NGX_GRAPH_NOTIFY_COMMIT_OLD];
} ngx_graph_notify_committer_t;


static void *ngx_graph_notify_commit_thread(void *data);
static void *ngx_graph_notify_commit_job_thread(void *data);
static void ngx_graph_notify_commit_block_signals(void);
static void ngx_graph_notify_commit_synced(
    ngx_graph_notify_committer_t *cm, ngx_err_t err);
static void ngx_graph_notify_commit_next(ngx_graph_notify_committer_t *cm);
static void ngx_graph_notify_commit_delayed(ngx_event_t *ev);
static void ngx_graph_notify_commit_start(void);
static void ngx_graph_notify_commit_done(ngx_event_t *ev);
static void ngx_graph_notify_commit_atexit(void);


static ngx_graph_notify_committer_t  *ngx_graph_notify_committer;

/* synced with every sync of the output (the journal's done log) */
static ngx_fd_t  ngx_graph_notify_commit_every_fd = NGX_INVALID_FILE;


ngx_int_t
ngx_graph_notify_commit_init(ngx_cycle_t *cycle, ngx_msec_t interval,
    ngx_atomic_t *syncs, ngx_log_t *log)
{
    int                            fd, err;
    ngx_connection_t              *c;
    ngx_graph_notify_committer_t  *cm;

    /* not of the cycle's pool: the exit of a single process frees that */
    cm = ngx_calloc(sizeof(ngx_graph_notify_committer_t), log);
    if (cm == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&cm->waiting);
    ngx_queue_init(&cm->syncing);
    ngx_queue_init(&cm->jobs);
    ngx_queue_init(&cm->jobs_done);
    cm->log = log;
    cm->interval = interval;
    cm->syncs = syncs;

    cm->delay.handler = ngx_graph_notify_commit_delayed;
    cm->delay.data = cm;
    cm->delay.log = log;
    cm->delay.cancelable = 1;

    fd = eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC);
    if (fd == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "graph_notify: eventfd() failed");
        ngx_free(cm);
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, log);
    if (c == NULL) {
        (void) close(fd);
        ngx_free(cm);
        return NGX_ERROR;
    }

    c->data = cm;
    c->log = log;
    c->read->log = log;
    c->read->handler = ngx_graph_notify_commit_done;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_free_connection(c);
        (void) close(fd);
        ngx_free(cm);
        return NGX_ERROR;
    }

    cm->conn = c;

    if (pthread_mutex_init(&cm->mutex, NULL) != 0
        || pthread_cond_init(&cm->cond, NULL) != 0
        || pthread_cond_init(&cm->job_cond, NULL) != 0
        || pthread_cond_init(&cm->job_done_cond, NULL) != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "graph_notify: pthread_mutex_init() failed");
        return NGX_ERROR;
    }

    err = pthread_create(&cm->thread, NULL, ngx_graph_notify_commit_thread,
                         cm);
    if (err) {
        ngx_log_error(NGX_LOG_ALERT, log, err,
                      "graph_notify: pthread_create() failed");
        return NGX_ERROR;
    }

    ngx_graph_notify_committer = cm;

    /* the cache manager process leaves with exit(), without module hooks */
    (void) atexit(ngx_graph_notify_commit_atexit);

    return NGX_OK;
}


static void
ngx_graph_notify_commit_atexit(void)
{
    /* a single process has done this in its exit_process hook */

    if (ngx_process == NGX_PROCESS_HELPER) {
        ngx_graph_notify_commit_exit();
    }
}


/*
 * At exit, lines written but not yet synced are synced here (the process
 * serves nothing any more) and their items leave the queue, so that a
 * stop does not write them a second time after the next start.
 */

void
ngx_graph_notify_commit_exit(void)
{
    ngx_int_t                      rc;
    ngx_uint_t                     i;
    ngx_queue_t                   *q, done;
    ngx_graph_notify_commit_t     *cc;
    ngx_graph_notify_committer_t  *cm;

    cm = ngx_graph_notify_committer;

    if (cm == NULL || cm->nwaiting == 0) {
        return;
    }

    ngx_graph_notify_committer = NULL;

    if (cm->delay.timer_set) {
        ngx_del_timer(&cm->delay);
    }

    rc = (cm->file->fd != NGX_INVALID_FILE && fdatasync(cm->file->fd) == 0)
         ? NGX_OK : NGX_ERROR;

    for (i = 0; i < cm->nold; i++) {
        if ((cm->old_full[i] ? fsync(cm->old[i]) : fdatasync(cm->old[i]))
            == -1)
        {
            rc = NGX_ERROR;
        }

        (void) close(cm->old[i]);
    }

    cm->nold = 0;

    if (ngx_graph_notify_commit_every_fd != NGX_INVALID_FILE
        && fdatasync(ngx_graph_notify_commit_every_fd) == -1)
    {
        rc = NGX_ERROR;
    }

    ngx_queue_init(&done);
    ngx_queue_add(&done, &cm->syncing);
    ngx_queue_add(&done, &cm->waiting);

    while (!ngx_queue_empty(&done)) {
        q = ngx_queue_head(&done);
        ngx_queue_remove(q);

        cc = ngx_queue_data(q, ngx_graph_notify_commit_t, link);
        cc->handler(cc, rc);
    }
}


/*
 * Queues c; its handler runs once every line written before this call is
 * on disk (NGX_OK) or the sync failed (NGX_ERROR).  Without the thread
 * (it could not be started) the sync is made here, as a last resort.
 */

void
ngx_graph_notify_commit(ngx_open_file_t *file, ngx_graph_notify_commit_t *c)
{
    ngx_graph_notify_committer_t  *cm;

    cm = ngx_graph_notify_committer;

    if (cm == NULL) {
        c->handler(c, (fdatasync(file->fd) == 0
                       && (ngx_graph_notify_commit_every_fd
                           == NGX_INVALID_FILE
                           || fdatasync(ngx_graph_notify_commit_every_fd)
                              == 0))
                      ? NGX_OK : NGX_ERROR);
        return;
    }

    cm->file = file;
    ngx_queue_insert_tail(&cm->waiting, &c->link);
    cm->nwaiting++;

    ngx_graph_notify_commit_next(cm);
}


/* c, queued and no longer wanted (its owner goes away): never called */

void
ngx_graph_notify_commit_cancel(ngx_graph_notify_commit_t *c)
{
    if (ngx_graph_notify_committer) {
        ngx_queue_remove(&c->link);
        ngx_graph_notify_committer->nwaiting--;
    }
}


ngx_uint_t
ngx_graph_notify_commit_waiting(void)
{
    return ngx_graph_notify_committer
           ? ngx_graph_notify_committer->nwaiting : 0;
}


/*
 * Called before the output is reopened: the old descriptor is kept open
 * for the next sync, which covers the lines written to it.
 */

void
ngx_graph_notify_commit_reopen(ngx_open_file_t *file, ngx_log_t *log)
{
    ngx_fd_t                       fd;
    ngx_graph_notify_committer_t  *cm;

    cm = ngx_graph_notify_committer;

    if (cm == NULL || cm->nwaiting == 0 || file->fd == NGX_INVALID_FILE) {
        return;
    }

    if (cm->nold == NGX_GRAPH_NOTIFY_COMMIT_OLD) {
        /* reopened again and again before a sync ended: rare, synced now */
        if (fdatasync(file->fd) == -1) {
            ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                          "graph_notify: fdatasync(\"%V\") failed",
                          &file->name);
        }

        return;
    }

    fd = dup(file->fd);

    if (fd == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "graph_notify: dup() failed");
        (void) fdatasync(file->fd);
        return;
    }

    cm->old_full[cm->nold] = 0;
    cm->old[cm->nold++] = fd;
}


/*
 * fd, taken over, is synced (fsync() if full: a directory) by the next
 * sync that begins, then closed; the caller queues a commit to learn when.
 * Without the thread, or with no room left, it is synced here.
 */

void
ngx_graph_notify_commit_fd(ngx_fd_t fd, ngx_uint_t full, ngx_log_t *log)
{
    ngx_graph_notify_committer_t  *cm;

    cm = ngx_graph_notify_committer;

    if (cm == NULL || cm->nold == NGX_GRAPH_NOTIFY_COMMIT_OLD) {
        if ((full ? fsync(fd) : fdatasync(fd)) == -1) {
            ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                          "graph_notify: fsync() failed");
        }

        (void) close(fd);
        return;
    }

    cm->old_full[cm->nold] = (u_char) full;
    cm->old[cm->nold++] = fd;
}


/* fd is synced with every sync of the output; NGX_INVALID_FILE: none */

void
ngx_graph_notify_commit_every(ngx_fd_t fd)
{
    ngx_graph_notify_commit_every_fd = fd;
}


/*
 * The next sync begins now if none runs and the last began an interval
 * ago or more; else when the interval is over (a timer), or when the
 * running one ends.
 */

static void
ngx_graph_notify_commit_next(ngx_graph_notify_committer_t *cm)
{
    ngx_msec_int_t  wait;

    if (cm->running || cm->delay.timer_set || ngx_queue_empty(&cm->waiting))
    {
        return;
    }

    wait = (ngx_msec_int_t) (cm->started + cm->interval - ngx_current_msec);

    if (wait > 0 && wait <= (ngx_msec_int_t) cm->interval) {
        ngx_add_timer(&cm->delay, (ngx_msec_t) wait);
        return;
    }

    ngx_graph_notify_commit_start();
}


static void
ngx_graph_notify_commit_delayed(ngx_event_t *ev)
{
    ngx_graph_notify_commit_next(ev->data);
}


static void
ngx_graph_notify_commit_start(void)
{
    ngx_fd_t                       fd, every;
    ngx_err_t                      err;
    ngx_uint_t                     i;
    ngx_graph_notify_committer_t  *cm;

    cm = ngx_graph_notify_committer;

    if (ngx_queue_empty(&cm->waiting)) {
        return;
    }

    /* the thread closes its own copies: a reopen cannot pull them away */

    err = 0;
    every = NGX_INVALID_FILE;

    fd = dup(cm->file->fd);

    if (fd != -1 && ngx_graph_notify_commit_every_fd != NGX_INVALID_FILE) {
        every = dup(ngx_graph_notify_commit_every_fd);

        if (every == -1) {
            (void) close(fd);
            fd = -1;
        }
    }

    if (fd == -1) {
        err = ngx_errno ? ngx_errno : NGX_EBADF;
        ngx_log_error(NGX_LOG_ALERT, cm->log, err,
                      "graph_notify: dup() failed");
    }

    /* everyone waiting now is covered by this sync */

    ngx_queue_add(&cm->syncing, &cm->waiting);
    ngx_queue_init(&cm->waiting);
    cm->running = 1;
    cm->started = ngx_current_msec;

    if (cm->syncs) {
        (void) ngx_atomic_fetch_add(cm->syncs, 1);
    }

    pthread_mutex_lock(&cm->mutex);

    cm->nfds = 0;

    if (fd != -1) {
        cm->full[cm->nfds] = 0;
        cm->fds[cm->nfds++] = fd;
    }

    for (i = 0; i < cm->nold; i++) {
        cm->full[cm->nfds] = cm->old_full[i];
        cm->fds[cm->nfds++] = cm->old[i];
    }

    if (every != NGX_INVALID_FILE) {
        cm->full[cm->nfds] = 0;
        cm->fds[cm->nfds++] = every;
    }

    cm->nold = 0;
    cm->err = err;
    cm->finished = 0;
    cm->requested = 1;

    pthread_cond_signal(&cm->cond);
    pthread_mutex_unlock(&cm->mutex);
}


static void *
ngx_graph_notify_commit_thread(void *data)
{
    ngx_graph_notify_committer_t *cm = data;

    int         fds[NGX_GRAPH_NOTIFY_COMMIT_OLD + 2];
    u_char      full[NGX_GRAPH_NOTIFY_COMMIT_OLD + 2];
    uint64_t    one;
    ngx_err_t   err;
    ngx_uint_t  i, n;

    ngx_graph_notify_commit_block_signals();

    one = 1;

    for ( ;; ) {
        pthread_mutex_lock(&cm->mutex);

        while (!cm->requested) {
            pthread_cond_wait(&cm->cond, &cm->mutex);
        }

        n = cm->nfds;
        err = cm->err;

        for (i = 0; i < n; i++) {
            fds[i] = cm->fds[i];
            full[i] = cm->full[i];
        }

        pthread_mutex_unlock(&cm->mutex);

        for (i = 0; i < n; i++) {
            if ((full[i] ? fsync(fds[i]) : fdatasync(fds[i])) == -1) {
                err = errno;
            }

            (void) close(fds[i]);
        }

        pthread_mutex_lock(&cm->mutex);
        cm->err = err;
        cm->requested = 0;
        cm->finished = 1;
        pthread_mutex_unlock(&cm->mutex);

        if (write(cm->conn->fd, &one, sizeof(uint64_t)) == -1) {
            /* only EAGAIN: the counter is full, a wake-up is pending */
        }
    }

    return NULL;
}


static void
ngx_graph_notify_commit_done(ngx_event_t *ev)
{
    uint64_t                        count;
    ngx_err_t                       err;
    ngx_uint_t                      finished;
    ngx_queue_t                    *q, jobs;
    ngx_connection_t               *c;
    ngx_graph_notify_commit_job_t  *job;
    ngx_graph_notify_committer_t   *cm;

    c = ev->data;
    cm = c->data;

    while (read(c->fd, &count, sizeof(uint64_t)) == sizeof(uint64_t)) {
        /* void */
    }

    ngx_queue_init(&jobs);

    pthread_mutex_lock(&cm->mutex);
    finished = cm->finished;
    err = cm->err;
    cm->finished = 0;

    if (!ngx_queue_empty(&cm->jobs_done)) {
        ngx_queue_add(&jobs, &cm->jobs_done);
        ngx_queue_init(&cm->jobs_done);
    }

    pthread_mutex_unlock(&cm->mutex);

    if (finished && cm->running) {
        ngx_graph_notify_commit_synced(cm, err);
    }

    while (!ngx_queue_empty(&jobs)) {
        q = ngx_queue_head(&jobs);
        ngx_queue_remove(q);

        job = ngx_queue_data(q, ngx_graph_notify_commit_job_t, link);
        job->state = NGX_GRAPH_NOTIFY_JOB_IDLE;
        job->handler(job);
    }
}


static void
ngx_graph_notify_commit_synced(ngx_graph_notify_committer_t *cm,
    ngx_err_t err)
{
    ngx_int_t                   rc;
    ngx_queue_t                *q, done;
    ngx_graph_notify_commit_t  *cc;

    cm->running = 0;

    rc = NGX_OK;

    if (err) {
        ngx_log_error(NGX_LOG_CRIT, cm->log, err,
                      "graph_notify: syncing \"%V\" failed", &cm->file->name);
        rc = NGX_ERROR;
    }

    ngx_queue_init(&done);
    ngx_queue_add(&done, &cm->syncing);
    ngx_queue_init(&cm->syncing);

    /* the next group is started (or timed) before the handlers write more */

    ngx_graph_notify_commit_next(cm);

    while (!ngx_queue_empty(&done)) {
        q = ngx_queue_head(&done);
        ngx_queue_remove(q);
        cm->nwaiting--;

        cc = ngx_queue_data(q, ngx_graph_notify_commit_t, link);
        cc->handler(cc, rc);
    }
}


static void
ngx_graph_notify_commit_block_signals(void)
{
    sigset_t  set;

    /* signals are the event loop's */

    sigfillset(&set);
    sigdelset(&set, SIGILL);
    sigdelset(&set, SIGFPE);
    sigdelset(&set, SIGSEGV);
    sigdelset(&set, SIGBUS);
    (void) pthread_sigmask(SIG_BLOCK, &set, NULL);
}


/*
 * Runs job->run() on the jobs' thread, then job->handler() on the event
 * loop.  Without the committer, or if the thread cannot be started, both
 * run here, as a last resort.
 */

void
ngx_graph_notify_commit_post(ngx_graph_notify_commit_job_t *job)
{
    int                            err;
    ngx_graph_notify_committer_t  *cm;

    cm = ngx_graph_notify_committer;

    if (cm != NULL && !cm->job_thread_started) {
        err = pthread_create(&cm->job_thread, NULL,
                             ngx_graph_notify_commit_job_thread, cm);
        if (err) {
            ngx_log_error(NGX_LOG_ALERT, cm->log, err,
                          "graph_notify: pthread_create() failed, "
                          "a job runs on the event loop");
            cm = NULL;

        } else {
            cm->job_thread_started = 1;
        }
    }

    if (cm == NULL) {
        job->run(job);
        job->handler(job);
        return;
    }

    pthread_mutex_lock(&cm->mutex);
    job->state = NGX_GRAPH_NOTIFY_JOB_POSTED;
    ngx_queue_insert_tail(&cm->jobs, &job->link);
    pthread_cond_signal(&cm->job_cond);
    pthread_mutex_unlock(&cm->mutex);
}


/*
 * At exit: waits until a posted job has run; its handler is then not
 * called (the caller takes the result itself).
 */

void
ngx_graph_notify_commit_wait(ngx_graph_notify_commit_job_t *job)
{
    ngx_graph_notify_committer_t  *cm;

    cm = ngx_graph_notify_committer;

    if (cm == NULL || !cm->job_thread_started) {
        return;
    }

    pthread_mutex_lock(&cm->mutex);

    while (job->state == NGX_GRAPH_NOTIFY_JOB_POSTED
           || job->state == NGX_GRAPH_NOTIFY_JOB_RUNNING)
    {
        pthread_cond_wait(&cm->job_done_cond, &cm->mutex);
    }

    if (job->state == NGX_GRAPH_NOTIFY_JOB_DONE) {
        ngx_queue_remove(&job->link);
        job->state = NGX_GRAPH_NOTIFY_JOB_IDLE;
    }

    pthread_mutex_unlock(&cm->mutex);
}


static void *
ngx_graph_notify_commit_job_thread(void *data)
{
    ngx_graph_notify_committer_t *cm = data;

    uint64_t                        one;
    ngx_queue_t                    *q;
    ngx_graph_notify_commit_job_t  *job;

    ngx_graph_notify_commit_block_signals();

    one = 1;

    for ( ;; ) {
        pthread_mutex_lock(&cm->mutex);

        while (ngx_queue_empty(&cm->jobs)) {
            pthread_cond_wait(&cm->job_cond, &cm->mutex);
        }

        q = ngx_queue_head(&cm->jobs);
        ngx_queue_remove(q);

        job = ngx_queue_data(q, ngx_graph_notify_commit_job_t, link);
        job->state = NGX_GRAPH_NOTIFY_JOB_RUNNING;

        pthread_mutex_unlock(&cm->mutex);

        job->run(job);

        pthread_mutex_lock(&cm->mutex);
        job->state = NGX_GRAPH_NOTIFY_JOB_DONE;
        ngx_queue_insert_tail(&cm->jobs_done, &job->link);
        pthread_cond_broadcast(&cm->job_done_cond);
        pthread_mutex_unlock(&cm->mutex);

        if (write(cm->conn->fd, &one, sizeof(uint64_t)) == -1) {
            /* only EAGAIN: the counter is full, a wake-up is pending */
        }
    }

    return NULL;
}
