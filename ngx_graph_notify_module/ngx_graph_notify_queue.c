
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"


/*
 * The queue lives in one slab zone and is guarded by the slab pool's own
 * mutex: if a process dies holding it, the master unlocks it, which a
 * mutex of our own would not get.
 *
 * An item is pending, then in flight (owned by a helper pid, with a lease),
 * and is freed only once its output is written.  In-flight items of a
 * helper that died or whose lease ran out go back to the head of pending.
 */


ngx_int_t
ngx_graph_notify_queue_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_graph_notify_queue_t  *oq = data;

    size_t                     len;
    ngx_graph_notify_queue_t  *q;

    q = shm_zone->data;

    if (oq) {
        /* reload with an unchanged zone: queued items survive */
        q->sh = oq->sh;
        q->shpool = oq->shpool;
        return NGX_OK;
    }

    q->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        q->sh = q->shpool->data;
        return NGX_OK;
    }

    q->sh = ngx_slab_alloc(q->shpool, sizeof(ngx_graph_notify_shctx_t));
    if (q->sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(q->sh, sizeof(ngx_graph_notify_shctx_t));

    ngx_queue_init(&q->sh->pending);
    ngx_queue_init(&q->sh->inflight);

    q->shpool->data = q->sh;

    len = sizeof(" in graph_notify zone \"\"") + shm_zone->shm.name.len;

    q->shpool->log_ctx = ngx_slab_alloc(q->shpool, len);
    if (q->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(q->shpool->log_ctx, " in graph_notify zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full queue is an expected condition, answered with 503 */
    q->shpool->log_nomem = 0;

    return NGX_OK;
}


ngx_int_t
ngx_graph_notify_queue_push(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_entry_t *entries, ngx_uint_t n)
{
    size_t                    size, total;
    ngx_uint_t                i;
    ngx_queue_t               batch, *qe;
    ngx_graph_notify_item_t  *item;

    ngx_queue_init(&batch);
    total = 0;

    ngx_shmtx_lock(&q->shpool->mutex);

    if (q->sh->count + n > q->max_items) {
        goto full;
    }

    for (i = 0; i < n; i++) {
        size = offsetof(ngx_graph_notify_item_t, data)
               + entries[i].line.len + entries[i].tokens.len;

        item = ngx_slab_alloc_locked(q->shpool, size);

        if (item == NULL) {
            /* the whole batch or nothing */

            while (!ngx_queue_empty(&batch)) {
                qe = ngx_queue_head(&batch);
                ngx_queue_remove(qe);
                ngx_slab_free_locked(q->shpool, qe);
            }

            goto full;
        }

        item->seq = ++q->sh->seq;
        item->owner = 0;
        item->lease_until = 0;
        item->attempts = 0;
        item->size = size;
        item->line_len = entries[i].line.len;
        item->tokens_len = entries[i].tokens.len;

        ngx_memcpy(ngx_cpymem(item->data, entries[i].line.data,
                              entries[i].line.len),
                   entries[i].tokens.data, entries[i].tokens.len);

        ngx_queue_insert_tail(&batch, &item->queue);

        total += size;
    }

    if (n) {
        ngx_queue_add(&q->sh->pending, &batch);
    }

    q->sh->count += n;
    q->sh->bytes += total;

    ngx_shmtx_unlock(&q->shpool->mutex);

    return NGX_OK;

full:

    ngx_shmtx_unlock(&q->shpool->mutex);

    return NGX_BUSY;
}


ngx_int_t
ngx_graph_notify_queue_take(ngx_graph_notify_queue_t *q, time_t lease,
    ngx_pool_t *pool, ngx_graph_notify_job_t *job)
{
    u_char                   *p;
    ngx_queue_t              *qe;
    ngx_graph_notify_item_t  *item;

    ngx_shmtx_lock(&q->shpool->mutex);

    if (ngx_queue_empty(&q->sh->pending)) {
        ngx_shmtx_unlock(&q->shpool->mutex);
        return NGX_DECLINED;
    }

    qe = ngx_queue_head(&q->sh->pending);
    item = ngx_queue_data(qe, ngx_graph_notify_item_t, queue);

    /* a private copy: the helper never reads shared memory unlocked */

    p = ngx_pnalloc(pool, item->line_len + item->tokens_len + 1);
    if (p == NULL) {
        ngx_shmtx_unlock(&q->shpool->mutex);
        return NGX_ERROR;
    }

    ngx_memcpy(p, item->data, item->line_len + item->tokens_len);
    p[item->line_len + item->tokens_len] = '\0';

    ngx_queue_remove(qe);
    ngx_queue_insert_tail(&q->sh->inflight, qe);

    item->owner = ngx_pid;
    item->lease_until = ngx_time() + lease;
    item->attempts++;

    job->shm = item;
    job->seq = item->seq;
    job->line.data = p;
    job->line.len = item->line_len;
    job->tokens.data = p + item->line_len;
    job->tokens.len = item->tokens_len;

    ngx_shmtx_unlock(&q->shpool->mutex);

    return NGX_OK;
}


static ngx_graph_notify_item_t *
ngx_graph_notify_queue_own(ngx_graph_notify_job_t *job)
{
    /*
     * Still ours unless the lease ran out and another helper took the
     * item over; the sequence number tells, as item memory stays mapped.
     */

    if (job->shm->seq == job->seq && job->shm->owner == ngx_pid) {
        return job->shm;
    }

    return NULL;
}


void
ngx_graph_notify_queue_done(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_job_t *job)
{
    ngx_graph_notify_item_t  *item;

    ngx_shmtx_lock(&q->shpool->mutex);

    item = ngx_graph_notify_queue_own(job);

    if (item) {
        ngx_queue_remove(&item->queue);

        q->sh->count--;
        q->sh->bytes -= item->size;

        item->seq = 0;
        ngx_slab_free_locked(q->shpool, item);
    }

    ngx_shmtx_unlock(&q->shpool->mutex);
}


void
ngx_graph_notify_queue_release(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_job_t *job)
{
    ngx_graph_notify_item_t  *item;

    ngx_shmtx_lock(&q->shpool->mutex);

    item = ngx_graph_notify_queue_own(job);

    if (item) {
        ngx_queue_remove(&item->queue);
        ngx_queue_insert_head(&q->sh->pending, &item->queue);
        item->owner = 0;
    }

    ngx_shmtx_unlock(&q->shpool->mutex);
}


void
ngx_graph_notify_queue_renew(ngx_graph_notify_queue_t *q, time_t lease)
{
    time_t                    until;
    ngx_queue_t              *qe;
    ngx_graph_notify_item_t  *item;

    until = ngx_time() + lease;

    ngx_shmtx_lock(&q->shpool->mutex);

    for (qe = ngx_queue_head(&q->sh->inflight);
         qe != ngx_queue_sentinel(&q->sh->inflight);
         qe = ngx_queue_next(qe))
    {
        item = ngx_queue_data(qe, ngx_graph_notify_item_t, queue);

        if (item->owner == ngx_pid) {
            item->lease_until = until;
        }
    }

    ngx_shmtx_unlock(&q->shpool->mutex);
}


ngx_uint_t
ngx_graph_notify_queue_reclaim(ngx_graph_notify_queue_t *q)
{
    time_t                    now;
    ngx_uint_t                n;
    ngx_queue_t              *qe, *prev;
    ngx_graph_notify_item_t  *item;

    now = ngx_time();
    n = 0;

    ngx_shmtx_lock(&q->shpool->mutex);

    /* from the tail, so that reclaimed items keep their order */

    for (qe = ngx_queue_last(&q->sh->inflight);
         qe != ngx_queue_sentinel(&q->sh->inflight);
         qe = prev)
    {
        prev = ngx_queue_prev(qe);
        item = ngx_queue_data(qe, ngx_graph_notify_item_t, queue);

        if (item->owner == ngx_pid) {
            continue;
        }

        if (item->lease_until > now
            && (kill(item->owner, 0) == 0 || ngx_errno != NGX_ESRCH))
        {
            /* a live helper (an old one during a reload) holds it */
            continue;
        }

        ngx_queue_remove(qe);
        ngx_queue_insert_head(&q->sh->pending, qe);
        item->owner = 0;
        n++;
    }

    ngx_shmtx_unlock(&q->shpool->mutex);

    if (n) {
        ngx_graph_notify_stat_add(q, lease_reclaims, n);
    }

    return n;
}


/*
 * One wake-up at a time: a worker writes to the eventfd only if no wake-up
 * is pending; the helper clears the flag before it drains, so an item
 * pushed after the helper's last look always wakes it again.
 */

void
ngx_graph_notify_queue_wake(ngx_graph_notify_queue_t *q, ngx_fd_t fd,
    ngx_log_t *log)
{
#if (NGX_LINUX)

    uint64_t  one;

    if (fd == NGX_INVALID_FILE
        || !ngx_atomic_cmp_set(&q->sh->wake_pending, 0, 1))
    {
        return;
    }

    one = 1;

    /* EAGAIN means the counter is saturated: the helper is awake anyway */

    if (write(fd, &one, sizeof(uint64_t)) != sizeof(uint64_t)
        && ngx_errno != NGX_EAGAIN)
    {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "graph_notify: waking the helper failed");
    }

#endif
}


void
ngx_graph_notify_queue_awake(ngx_graph_notify_queue_t *q)
{
    q->sh->wake_pending = 0;
    ngx_memory_barrier();
}
