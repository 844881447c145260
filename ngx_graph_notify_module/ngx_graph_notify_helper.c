
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"
#include "ngx_graph_notify_subscription.h"
#include "ngx_graph_notify_subscription_events.h"
#include "ngx_graph_notify_journal.h"
#include "ngx_graph_notify_jwt.h"
#include "ngx_graph_notify_commit.h"


/* items written per output write, and batches per turn of the loop */
#define NGX_GRAPH_NOTIFY_BATCH    64
#define NGX_GRAPH_NOTIFY_ROUNDS   16

/* written batches awaiting their sync, at most: then the helper waits */
#define NGX_GRAPH_NOTIFY_UNSYNCED 256


typedef struct {
    ngx_cycle_t                   *cycle;
    ngx_graph_notify_main_conf_t  *gmcf;
    ngx_graph_notify_queue_t      *queue;
    ngx_log_t                     *log;

    ngx_connection_t              *wake;
    ngx_event_t                    poll;
    ngx_event_t                    drain;

    /* timers and posted events need a connection with fd -1 as data */
    ngx_connection_t               dummy;

    time_t                         renewed;
    ngx_uint_t                     output_failing;
} ngx_graph_notify_helper_t;


/* a batch written to the output, its items in flight until the sync */
typedef struct {
    ngx_graph_notify_commit_t      commit;
    ngx_graph_notify_helper_t     *helper;
    ngx_pool_t                    *pool;
    ngx_uint_t                     n;
    ngx_graph_notify_job_t         jobs[NGX_GRAPH_NOTIFY_BATCH];
} ngx_graph_notify_written_t;


static void ngx_graph_notify_helper_wake_handler(ngx_event_t *ev);
static void ngx_graph_notify_helper_poll_handler(ngx_event_t *ev);
static void ngx_graph_notify_helper_drain_handler(ngx_event_t *ev);
static void ngx_graph_notify_helper_drain(ngx_graph_notify_helper_t *h);
static ngx_int_t ngx_graph_notify_helper_batch(ngx_graph_notify_helper_t *h);
static void ngx_graph_notify_helper_synced(ngx_graph_notify_commit_t *c,
    ngx_int_t rc);


static ngx_graph_notify_helper_t  *ngx_graph_notify_helper;


ngx_msec_t
ngx_graph_notify_helper_manager(void *data)
{
    /*
     * Called by NGINX's cache manager process.  The first call turns the
     * process into the helper; all further work runs on the helper's own
     * events, so the manager asks for no more calls than NGINX's 1 hour
     * maximum and never shortens other paths' cache management.
     */

    if (ngx_graph_notify_helper == NULL) {
        (void) ngx_graph_notify_helper_start((ngx_cycle_t *) ngx_cycle);
    }

    return 60 * 60 * 1000;
}


ngx_int_t
ngx_graph_notify_helper_start(ngx_cycle_t *cycle)
{
    ngx_connection_t              *c;
    ngx_graph_notify_helper_t     *h;
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_graph_notify_module);

    h = ngx_pcalloc(cycle->pool, sizeof(ngx_graph_notify_helper_t));
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->cycle = cycle;
    h->gmcf = gmcf;
    h->queue = gmcf->shm_zone->data;
    h->log = cycle->log;

    h->dummy.fd = (ngx_socket_t) -1;

    h->poll.handler = ngx_graph_notify_helper_poll_handler;
    h->poll.data = &h->dummy;
    h->poll.log = h->log;
    h->poll.cancelable = 1;

    h->drain.handler = ngx_graph_notify_helper_drain_handler;
    h->drain.data = &h->dummy;
    h->drain.log = h->log;

    if (gmcf->wake_fd != NGX_INVALID_FILE) {
        c = ngx_get_connection(gmcf->wake_fd, h->log);

        if (c == NULL) {
            ngx_log_error(NGX_LOG_ALERT, h->log, 0,
                          "graph_notify: no connection for the wake-up fd, "
                          "polling only");

        } else {
            c->data = h;
            c->read->handler = ngx_graph_notify_helper_wake_handler;
            c->read->log = h->log;
            c->log = h->log;

            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_free_connection(c);
                c = NULL;
            }
        }

        h->wake = c;
    }

    ngx_graph_notify_helper = h;

    if (ngx_graph_notify_commit_init(cycle, gmcf->output_sync_interval,
                                     &h->queue->sh->stats.output_syncs,
                                     h->log)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, h->log, 0,
                      "graph_notify: no thread for the output's syncs, "
                      "they run on the event loop");
    }

    if (gmcf->app.app_id.len) {
        (void) ngx_graph_notify_graph_init(cycle, gmcf);
        (void) ngx_graph_notify_subscription_init(cycle, gmcf);
    }

    if (ngx_graph_notify_jwt_init(cycle, gmcf) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, h->log, 0,
                      "graph_notify: validation tokens cannot be checked, "
                      "rich items are not written");
    }

    /*
     * Until the journal is ours and read back, a status page showing this
     * helper's pid must not show an empty queue as a settled one.
     */

    h->queue->sh->stats.journal_recovering = 1;

    ngx_graph_notify_stat_inc(h->queue, helper_starts);
    h->queue->sh->stats.helper_pid = ngx_pid;

    /*
     * Nothing is taken before the journal is ours: recovery first, and a
     * helper of a previous generation may still hold it for a moment.
     */

    if (ngx_graph_notify_journal_open(cycle, gmcf) == NGX_AGAIN) {
        ngx_log_error(NGX_LOG_NOTICE, h->log, 0,
                      "graph_notify: waiting for the previous helper to "
                      "release the journal");
    }

    ngx_log_error(NGX_LOG_NOTICE, h->log, 0,
                  "graph_notify: helper started, output \"%V\"",
                  &gmcf->output->name);

    /* first run at once: take over what a previous helper left */
    ngx_add_timer(&h->poll, 0);

    return NGX_OK;
}


static void
ngx_graph_notify_helper_wake_handler(ngx_event_t *ev)
{
    ssize_t                     n;
    uint64_t                    count;
    ngx_connection_t           *c;
    ngx_graph_notify_helper_t  *h;

    c = ev->data;
    h = c->data;

    /* edge-triggered: read until the counter is empty */

    for ( ;; ) {
        n = read(c->fd, &count, sizeof(uint64_t));

        if (n == sizeof(uint64_t)) {
            continue;
        }

        if (n == -1 && ngx_errno != NGX_EAGAIN) {
            ngx_log_error(NGX_LOG_ALERT, h->log, ngx_errno,
                          "graph_notify: reading the wake-up fd failed");
        }

        break;
    }

    ngx_graph_notify_helper_drain(h);
}


static void
ngx_graph_notify_helper_poll_handler(ngx_event_t *ev)
{
    time_t                      now;
    ngx_uint_t                  n;
    ngx_graph_notify_helper_t  *h;

    h = ngx_graph_notify_helper;
    now = ngx_time();

    /* single words: plain stores are atomic enough for a status page */
    h->queue->sh->stats.helper_heartbeat = now;
    h->queue->sh->stats.helper_pid = ngx_pid;

    n = ngx_graph_notify_queue_reclaim(h->queue);

    if (n) {
        ngx_log_error(NGX_LOG_NOTICE, h->log, 0,
                      "graph_notify: took back %ui item(s) of a previous "
                      "helper", n);
    }

    if (now - h->renewed >= h->gmcf->lease / 3) {
        ngx_graph_notify_queue_renew(h->queue, h->gmcf->lease);
        h->renewed = now;
    }

    ngx_graph_notify_journal_poll();

    ngx_graph_notify_graph_poll();

    ngx_graph_notify_helper_drain(h);

    if (!ngx_exiting) {
        ngx_add_timer(&h->poll, ngx_graph_notify_journal_ready()
                                ? NGX_GRAPH_NOTIFY_POLL : 100);
    }
}


void
ngx_graph_notify_helper_kick(void)
{
    ngx_graph_notify_helper_t  *h;

    /* room again in the Graph client: take more items now, not at the poll */

    h = ngx_graph_notify_helper;

    if (h && !h->drain.posted) {
        ngx_post_event(&h->drain, &ngx_posted_events);
    }
}


static void
ngx_graph_notify_helper_drain_handler(ngx_event_t *ev)
{
    ngx_graph_notify_helper_drain(ngx_graph_notify_helper);
}


static void
ngx_graph_notify_helper_drain(ngx_graph_notify_helper_t *h)
{
    ngx_int_t   rc;
    ngx_uint_t  round;

    if (h->drain.posted) {
        ngx_delete_posted_event(&h->drain);
    }

    if (!ngx_graph_notify_journal_ready()) {
        return;
    }

    ngx_graph_notify_queue_awake(h->queue);

    for (round = 0; round < NGX_GRAPH_NOTIFY_ROUNDS; round++) {
        rc = ngx_graph_notify_helper_batch(h);

        if (rc == NGX_DECLINED) {
            /* room in the zone: more of a journal being recovered */
            ngx_graph_notify_journal_recover();
            return;
        }

        if (rc == NGX_ERROR) {
            /* the poll timer retries, without a busy loop */
            return;
        }

        if (rc == NGX_AGAIN) {
            /* enough awaits its sync: the end of a sync drains again */
            return;
        }
    }

    /* more to do: yield to the event loop first */
    ngx_post_event(&h->drain, &ngx_posted_events);
}


static ngx_int_t
ngx_graph_notify_helper_batch(ngx_graph_notify_helper_t *h)
{
    u_char                      *buf, *p;
    size_t                       len;
    ngx_int_t                    rc;
    ngx_uint_t                   i, k, n, lane, taken;
    ngx_pool_t                  *pool;
    ngx_graph_notify_job_t      *jobs;
    ngx_graph_notify_written_t  *w;

    if (ngx_graph_notify_commit_waiting() >= NGX_GRAPH_NOTIFY_UNSYNCED) {
        return NGX_AGAIN;
    }

    pool = ngx_create_pool(16384, h->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    w = ngx_palloc(pool, sizeof(ngx_graph_notify_written_t));
    if (w == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    w->helper = h;
    w->pool = pool;
    jobs = w->jobs;

    n = 0;

    /*
     * The write lane first, whatever the Graph client's state: these items
     * never wait behind call records.  Then call records, as long as the
     * Graph client has room for them.
     */

    for (lane = 0; lane < NGX_GRAPH_NOTIFY_LANES; lane++) {

        while (n < NGX_GRAPH_NOTIFY_BATCH) {

            if (lane == NGX_GRAPH_NOTIFY_LANE_RECORD
                ? ngx_graph_notify_graph_busy()
                : ngx_graph_notify_jwt_busy())
            {
                break;
            }

            rc = ngx_graph_notify_queue_take(h->queue, lane, h->gmcf->lease,
                                             pool, &jobs[n]);
            if (rc != NGX_OK) {
                break;
            }

            n++;
        }
    }

    taken = n;

    /* nothing of a rich batch goes on before its validation tokens pass */

    ngx_graph_notify_jwt_filter(jobs, &n, pool);

    len = 0;
    k = 0;

    for (i = 0; i < n; i++) {

        /* subscriptions: last notification seen, lifecycle events */
        ngx_graph_notify_subscription_item(&jobs[i].line);

        /* call records go to the Graph client, the rest is written */

        rc = ngx_graph_notify_graph_submit(&jobs[i]);

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_ERROR) {
            /* back to the head of their lanes, in their order */

            while (n > i) {
                ngx_graph_notify_queue_release(h->queue, &jobs[--n]);
            }

            break;
        }

        jobs[k] = jobs[i];
        len += jobs[k].line.len + 1;
        k++;
    }

    n = k;

    if (n == 0) {
        ngx_destroy_pool(pool);
        return taken ? NGX_OK : NGX_DECLINED;
    }

    buf = ngx_pnalloc(pool, len);
    if (buf == NULL) {
        rc = NGX_ERROR;
        goto failed;
    }

    p = buf;

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, jobs[i].line.data, jobs[i].line.len);
        *p++ = LF;
    }

    rc = ngx_graph_notify_output_append(h->gmcf->output, 0, buf, len,
                                        h->log);

    if (rc != NGX_OK) {
        ngx_graph_notify_stat_inc(h->queue, output_errors);
        h->output_failing = 1;
        goto failed;
    }

    /*
     * The items stay in the queue (and in the journal) until a sync that
     * began after this write has completed: group commit on a thread.
     */

    w->n = n;
    w->commit.handler = ngx_graph_notify_helper_synced;
    w->commit.data = w;

    ngx_graph_notify_commit(h->gmcf->output, &w->commit);

    return NGX_OK;

failed:

    /* back to the head of the queue, in their order */

    while (n) {
        ngx_graph_notify_queue_release(h->queue, &jobs[--n]);
    }

    ngx_destroy_pool(pool);

    return NGX_ERROR;
}


static void
ngx_graph_notify_helper_synced(ngx_graph_notify_commit_t *c, ngx_int_t rc)
{
    ngx_uint_t                   i, n;
    ngx_graph_notify_helper_t   *h;
    ngx_graph_notify_written_t  *w;

    w = c->data;
    h = w->helper;
    n = w->n;

    if (rc != NGX_OK) {
        /* taken again and written again: twice rather than never */

        ngx_graph_notify_stat_inc(h->queue, output_errors);
        h->output_failing = 1;

        while (n) {
            ngx_graph_notify_queue_release(h->queue, &w->jobs[--n]);
        }

        ngx_destroy_pool(w->pool);
        return;
    }

    if (h->output_failing) {
        h->output_failing = 0;
        ngx_log_error(NGX_LOG_NOTICE, h->log, 0,
                      "graph_notify: writing to \"%V\" works again",
                      &h->gmcf->output->name);
    }

    for (i = 0; i < n; i++) {
        ngx_graph_notify_queue_done(h->queue, &w->jobs[i]);
    }

    ngx_graph_notify_journal_flush();

    ngx_graph_notify_stat_add(h->queue, items_written, n);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, h->log, 0,
                   "graph_notify: wrote %ui item(s)", n);

    ngx_destroy_pool(w->pool);

    /* room for more batches awaiting a sync */
    ngx_graph_notify_helper_kick();
}
