
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"
#include "ngx_graph_notify_journal.h"


/* emptied tenant holds kept for their tenants' next items */
#define NGX_GRAPH_NOTIFY_IDLE_HOLDS  64

/* the key of a tenant's hold: a quarter of ngx_crc32_short()'s cost */
#define ngx_graph_notify_tenant_hash(p, len)  ngx_murmur_hash2(p, len)


/*
 * The queue lives in one slab zone and is guarded by the slab pool's own
 * mutex: if a process dies holding it, the master unlocks it, which a
 * mutex of our own would not get.
 *
 * An item is pending, then in flight (owned by a helper pid, with a lease),
 * and is freed only once its output is written.  In-flight items of a
 * helper that died or whose lease ran out go back to the head of pending.
 */


static ngx_graph_notify_item_t *ngx_graph_notify_queue_alloc(
    ngx_graph_notify_queue_t *q, ngx_graph_notify_entry_t *entry,
    ngx_graph_notify_tokens_t *tokens);
static void ngx_graph_notify_queue_free(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_item_t *item);
static ngx_graph_notify_hold_t *ngx_graph_notify_queue_hold(
    ngx_graph_notify_queue_t *q, ngx_str_t *tenant, uint32_t hash);
static ngx_graph_notify_hold_t *ngx_graph_notify_queue_hold_add(
    ngx_graph_notify_queue_t *q, ngx_str_t *tenant, uint32_t hash);
static ngx_uint_t ngx_graph_notify_queue_over_share(
    ngx_graph_notify_queue_t *q, ngx_graph_notify_entry_t *entries,
    ngx_uint_t n, ngx_graph_notify_hold_t **first, uint32_t *hash);
static size_t ngx_graph_notify_queue_cost(size_t size);
static ngx_uint_t ngx_graph_notify_queue_split(size_t size, size_t *piece);
static size_t ngx_graph_notify_slab_cost(size_t size);
static void ngx_graph_notify_item_write(ngx_graph_notify_item_t *item,
    size_t off, u_char *src, size_t len);
static void ngx_graph_notify_queue_job_strings(ngx_graph_notify_job_t *job,
    ngx_graph_notify_item_t *item, u_char *p);
static void ngx_graph_notify_queue_wake_handler(ngx_event_t *ev);
static void ngx_graph_notify_item_read(ngx_graph_notify_item_t *item,
    u_char *dst, size_t len);


ngx_int_t
ngx_graph_notify_queue_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_graph_notify_queue_t  *oq = data;

    size_t                     len;
    ngx_uint_t                 i;
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

    for (i = 0; i < NGX_GRAPH_NOTIFY_LANES; i++) {
        ngx_queue_init(&q->sh->pending[i]);
    }

    ngx_queue_init(&q->sh->inflight);
    ngx_queue_init(&q->sh->staged);

    ngx_rbtree_init(&q->sh->holds, &q->sh->holds_sentinel,
                    ngx_str_rbtree_insert_value);

    /*
     * The zone's identity names its journal files, so that a helper tells
     * the files of its own zone from those of a zone that is gone.
     */
    q->sh->zone_id = ((uint64_t) ngx_time() << 20)
                     ^ ((uint64_t) ngx_pid << 4) ^ (ngx_random() & 0xfffff);

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
ngx_graph_notify_record_id(ngx_str_t *resource, ngx_str_t *id)
{
    u_char  *p, *last, c;

    static const char  prefix[] = "communications/callRecords/";

    /* "communications/callRecords/{id}": the id goes into a URL and a file */

    p = resource->data;
    last = p + resource->len;

    if (p < last && *p == '/') {
        p++;
    }

    /* Graph's own spelling compared first: a case-blind compare costs more */

    if ((size_t) (last - p) <= sizeof(prefix) - 1
        || (ngx_memcmp(p, prefix, sizeof(prefix) - 1) != 0
            && ngx_strncasecmp(p, (u_char *) prefix, sizeof(prefix) - 1)
               != 0))
    {
        return NGX_DECLINED;
    }

    p += sizeof(prefix) - 1;

    if (last - p > NGX_GRAPH_NOTIFY_RECORD_ID_MAX) {
        return NGX_DECLINED;
    }

    id->data = p;

    /* letters, digits, '-' and '_' (no isalnum(): a call per byte) */

    for ( /* void */ ; p < last; p++) {
        c = (u_char) (*p | 0x20);

        if (!((*p >= '0' && *p <= '9') || (c >= 'a' && c <= 'z')
              || *p == '-' || *p == '_'))
        {
            return NGX_DECLINED;
        }
    }

    id->len = last - id->data;

    return NGX_OK;
}


static ngx_graph_notify_item_t *
ngx_graph_notify_queue_alloc(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_entry_t *entry, ngx_graph_notify_tokens_t *tokens)
{
    size_t                    size, off, piece[3];
    ngx_uint_t                i, n;
    ngx_graph_notify_item_t  *item;

    size = offsetof(ngx_graph_notify_item_t, data)
           + entry->line.len + entry->tenant.len + entry->record.len;

    n = ngx_graph_notify_queue_split(size, piece);

    item = ngx_slab_alloc_locked(q->shpool, piece[0]);
    if (item == NULL) {
        return NULL;
    }

    item->head_len = (uint32_t) (piece[0]
                                 - offsetof(ngx_graph_notify_item_t, data));

    for (i = 0; i < 2; i++) {
        item->more[i] = NULL;
        item->more_len[i] = 0;

        if (i + 1 >= n) {
            continue;
        }

        item->more[i] = ngx_slab_alloc_locked(q->shpool, piece[i + 1]);

        if (item->more[i] == NULL) {
            while (i--) {
                ngx_slab_free_locked(q->shpool, item->more[i]);
            }

            ngx_slab_free_locked(q->shpool, item);
            return NULL;
        }

        item->more_len[i] = (uint32_t) piece[i + 1];
    }

    item->seq = ++q->sh->seq;
    item->owner = ngx_pid;
    item->lease_until = 0;
    item->received = ngx_time();
    item->attempts = 0;
    item->tokens = tokens;
    item->hold = NULL;
    item->size = (uint32_t) size;
    item->cost = 0;

    for (i = 0; i < n; i++) {
        item->cost += (uint32_t) ngx_graph_notify_slab_cost(piece[i]);
    }
    item->line_len = (uint32_t) entry->line.len;
    item->tenant_len = (uint32_t) entry->tenant.len;
    item->record_len = (uint8_t) entry->record.len;
    item->kind = (uint8_t) entry->kind;

    ngx_memzero(&item->journal, sizeof(ngx_graph_notify_jref_t));

    off = 0;
    ngx_graph_notify_item_write(item, off, entry->line.data, entry->line.len);
    off += entry->line.len;
    ngx_graph_notify_item_write(item, off, entry->tenant.data,
                                entry->tenant.len);
    off += entry->tenant.len;
    ngx_graph_notify_item_write(item, off, entry->record.data,
                                entry->record.len);

    if (tokens) {
        tokens->refs++;
    }

    return item;
}


static void
ngx_graph_notify_queue_free(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_item_t *item)
{
    /* called locked; the item is unlinked already */

    ngx_graph_notify_hold_t  *hold;

    if (item->tokens && --item->tokens->refs == 0) {
        ngx_slab_free_locked(q->shpool, item->tokens);
    }

    hold = item->hold;

    if (hold) {
        hold->items--;
        hold->bytes -= item->cost;

        if (hold->items == 0) {
            q->sh->tenants--;

            /*
             * An emptied hold is kept for the tenant's next batch (a
             * queue drained as fast as it fills empties it per item),
             * up to so many; past them it goes.
             */

            if (q->sh->idle_holds < NGX_GRAPH_NOTIFY_IDLE_HOLDS) {
                q->sh->idle_holds++;

            } else {
                ngx_rbtree_delete(&q->sh->holds, &hold->sn.node);
                ngx_slab_free_locked(q->shpool, hold);
            }
        }
    }

    item->seq = 0;

    if (item->more[1]) {
        ngx_slab_free_locked(q->shpool, item->more[1]);
    }

    if (item->more[0]) {
        ngx_slab_free_locked(q->shpool, item->more[0]);
    }

    ngx_slab_free_locked(q->shpool, item);
}


/*
 * The slab allocator rounds a chunk up to a power of two (whole pages above
 * half a page): a 600-byte item would take 1,024 bytes.  An item larger
 * than 512 bytes is stored in up to three pieces instead, each as large as
 * the allocator gives without rounding, the last one rounded up; the
 * header is in the first.  Per item the zone then holds at most about 1.14
 * times its size, the pieces' pointers included.
 */

static ngx_uint_t
ngx_graph_notify_queue_split(size_t size, size_t *piece)
{
    size_t      left, p;
    ngx_uint_t  n;

    if (size <= 512
        || ngx_graph_notify_slab_cost(size) * 8 <= size * 9)
    {
        piece[0] = size;
        return 1;
    }

    left = size;

    for (n = 0; n < 2 && left; n++) {

        if (left >= ngx_pagesize) {
            p = left & ~((size_t) ngx_pagesize - 1);

        } else {
            for (p = 8; p * 2 <= left; p <<= 1) { /* void */ }
        }

        piece[n] = p;
        left -= p;
    }

    if (left) {
        piece[n++] = left;
    }

    return n;
}


static size_t
ngx_graph_notify_slab_cost(size_t size)
{
    size_t  cost;

    /* what the slab allocator takes for one allocation */

    if (size > ngx_pagesize / 2) {
        return ngx_align(size, ngx_pagesize);
    }

    for (cost = 8; cost < size; cost <<= 1) { /* void */ }

    return cost;
}


static void
ngx_graph_notify_item_write(ngx_graph_notify_item_t *item, size_t off,
    u_char *src, size_t len)
{
    size_t      n;
    u_char     *seg[3];
    size_t      seglen[3];
    ngx_uint_t  i;

    seg[0] = item->data;
    seglen[0] = item->head_len;
    seg[1] = item->more[0];
    seglen[1] = item->more_len[0];
    seg[2] = item->more[1];
    seglen[2] = item->more_len[1];

    for (i = 0; i < 3 && len; i++) {
        if (off >= seglen[i]) {
            off -= seglen[i];
            continue;
        }

        n = ngx_min(len, seglen[i] - off);
        ngx_memcpy(seg[i] + off, src, n);
        src += n;
        len -= n;
        off = 0;
    }
}


static void
ngx_graph_notify_item_read(ngx_graph_notify_item_t *item, u_char *dst,
    size_t len)
{
    size_t  n;

    n = ngx_min(len, item->head_len);
    dst = ngx_cpymem(dst, item->data, n);
    len -= n;

    n = ngx_min(len, item->more_len[0]);
    if (n) {
        dst = ngx_cpymem(dst, item->more[0], n);
        len -= n;
    }

    n = ngx_min(len, item->more_len[1]);
    if (n) {
        ngx_memcpy(dst, item->more[1], n);
    }
}


/*
 * The fair share: each tenant's items and bytes in the zone are counted;
 * a batch that would take a tenant past its share is refused while other
 * tenants wait (have items queued, or were just refused for lack of room).
 * A tenant alone may use the whole zone.
 */

static ngx_graph_notify_hold_t *
ngx_graph_notify_queue_hold(ngx_graph_notify_queue_t *q, ngx_str_t *tenant,
    uint32_t hash)
{
    /* hash: ngx_graph_notify_tenant_hash(), computed once per batch */

    return (ngx_graph_notify_hold_t *)
               ngx_str_rbtree_lookup(&q->sh->holds, tenant, hash);
}


static ngx_graph_notify_hold_t *
ngx_graph_notify_queue_hold_add(ngx_graph_notify_queue_t *q,
    ngx_str_t *tenant, uint32_t hash)
{
    ngx_graph_notify_hold_t  *hold;

    hold = ngx_slab_alloc_locked(q->shpool,
                                 offsetof(ngx_graph_notify_hold_t, data)
                                 + tenant->len);
    if (hold == NULL) {
        return NULL;
    }

    hold->sn.node.key = hash;
    hold->sn.str.len = tenant->len;
    hold->sn.str.data = hold->data;
    ngx_memcpy(hold->data, tenant->data, tenant->len);

    hold->items = 0;
    hold->bytes = 0;

    /* an idle hold until its first item */
    ngx_rbtree_insert(&q->sh->holds, &hold->sn.node);
    q->sh->idle_holds++;

    return hold;
}


static ngx_uint_t
ngx_graph_notify_queue_over_share(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_entry_t *entries, ngx_uint_t n,
    ngx_graph_notify_hold_t **first, uint32_t *first_hash)
{
    size_t                    zone, size;
    time_t                    now;
    uint32_t                  hash;
    ngx_uint_t                i, k, ngroups, held_items;
    ngx_graph_notify_hold_t  *hold;

    struct {
        ngx_str_t             tenant;
        ngx_uint_t            items;
        size_t                bytes;
    } groups[16];

    /* the batch's items per tenant; Graph's batches have one or a few */

    ngroups = 0;

    for (i = 0; i < n; i++) {
        for (k = 0; k < ngroups; k++) {
            if (groups[k].tenant.len == entries[i].tenant.len
                && ngx_memcmp(groups[k].tenant.data, entries[i].tenant.data,
                              entries[i].tenant.len)
                   == 0)
            {
                break;
            }
        }

        if (k == ngroups) {
            if (ngroups == 16) {
                continue;
            }

            groups[k].tenant = entries[i].tenant;
            groups[k].items = 0;
            groups[k].bytes = 0;
            ngroups++;
        }

        size = offsetof(ngx_graph_notify_item_t, data) + entries[i].line.len
               + entries[i].tenant.len + entries[i].record.len;

        groups[k].items++;
        groups[k].bytes += ngx_graph_notify_queue_cost(size);
    }

    zone = q->shpool->end - (u_char *) q->shpool;
    now = ngx_time();

    for (k = 0; k < ngroups; k++) {
        hash = ngx_graph_notify_tenant_hash(groups[k].tenant.data,
                                            groups[k].tenant.len);
        hold = ngx_graph_notify_queue_hold(q, &groups[k].tenant, hash);
        held_items = hold ? hold->items : 0;

        if (k == 0) {
            /* the first item's tenant: the stage need not look it up again */
            *first = hold;
            *first_hash = hash;
        }

        if ((held_items + groups[k].items) * 100 <= q->max_items * q->share
            && ((hold ? hold->bytes : 0) + groups[k].bytes) * 100
               <= zone * q->share)
        {
            continue;
        }

        if (q->sh->count > held_items
            || (q->sh->refused_at + 2 * NGX_GRAPH_NOTIFY_RETRY_AFTER >= now
                && q->sh->refused_tenant != hash))
        {
            return 1;
        }
    }

    return 0;
}


static size_t
ngx_graph_notify_queue_cost(size_t size)
{
    size_t  cost;

    size_t      piece[3];
    ngx_uint_t  i, n;

    /* what the slab allocator takes for it, in its pieces */

    n = ngx_graph_notify_queue_split(size, piece);
    cost = 0;

    for (i = 0; i < n; i++) {
        cost += ngx_graph_notify_slab_cost(piece[i]);
    }

    return cost;
}


static ngx_uint_t
ngx_graph_notify_queue_lane(ngx_graph_notify_item_t *item)
{
    return item->kind == NGX_GRAPH_NOTIFY_KIND_CALL_RECORD
           ? NGX_GRAPH_NOTIFY_LANE_RECORD : NGX_GRAPH_NOTIFY_LANE_WRITE;
}


/*
 * Intake in two steps: the batch is staged (room checked, memory taken,
 * sequence numbers given, invisible to the helper), journaled by the
 * worker, then published to the lanes; or unstaged if the journal could
 * not take it.  Either the whole batch or nothing.  The first staged item
 * is returned, the rest follow it in the staged list.
 */

ngx_graph_notify_item_t *
ngx_graph_notify_queue_stage(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_entry_t *entries, ngx_uint_t n, ngx_str_t *tokens,
    ngx_graph_notify_jref_t *jref)
{
    size_t                      total;
    uint32_t                    hash;
    ngx_uint_t                  i, known;
    ngx_queue_t                 batch, *qe;
    ngx_graph_notify_item_t    *item, *first;
    ngx_graph_notify_hold_t    *hold;
    ngx_graph_notify_tokens_t  *t;

    ngx_queue_init(&batch);
    total = 0;
    t = NULL;
    first = NULL;
    hold = NULL;
    hash = 0;
    known = 0;

    q->refused = NGX_GRAPH_NOTIFY_REFUSED_FULL;

    ngx_shmtx_lock(&q->shpool->mutex);

    if (n == 0 || q->sh->count + n > q->max_items) {
        goto full;
    }

    if (q->share < 100) {

        if (ngx_graph_notify_queue_over_share(q, entries, n, &hold, &hash)) {
            q->refused = NGX_GRAPH_NOTIFY_REFUSED_SHARE;
            ngx_shmtx_unlock(&q->shpool->mutex);
            return NULL;
        }

        /* hold: the first item's tenant's, NULL if it has none yet */
        known = 1;
    }

    if (tokens && tokens->len) {
        t = ngx_slab_alloc_locked(q->shpool,
                                  offsetof(ngx_graph_notify_tokens_t, data)
                                  + tokens->len);
        if (t == NULL) {
            goto full;
        }

        /* the batch's own reference, dropped once its items hold theirs */
        t->refs = 1;
        t->len = tokens->len;
        ngx_memcpy(t->data, tokens->data, tokens->len);
    }

    for (i = 0; i < n; i++) {
        item = ngx_graph_notify_queue_alloc(q, &entries[i], t);

        if (item && !(i == 0 && known)
            && (hold == NULL
                || hold->sn.str.len != entries[i].tenant.len
                || ngx_memcmp(hold->data, entries[i].tenant.data,
                              entries[i].tenant.len)
                   != 0))
        {
            hash = ngx_graph_notify_tenant_hash(entries[i].tenant.data,
                                                entries[i].tenant.len);
            hold = ngx_graph_notify_queue_hold(q, &entries[i].tenant, hash);
        }

        if (item && hold == NULL) {
            hold = ngx_graph_notify_queue_hold_add(q, &entries[i].tenant,
                                                   hash);

            if (hold == NULL) {
                ngx_graph_notify_queue_free(q, item);
                item = NULL;
            }
        }

        if (item) {
            item->hold = hold;

            if (hold->items++ == 0) {
                q->sh->tenants++;
                q->sh->idle_holds--;
            }

            hold->bytes += item->cost;
        }

        if (item == NULL) {
            while (!ngx_queue_empty(&batch)) {
                qe = ngx_queue_head(&batch);
                ngx_queue_remove(qe);
                ngx_graph_notify_queue_free(q, ngx_queue_data(qe,
                                               ngx_graph_notify_item_t,
                                               queue));
            }

            if (t) {
                ngx_slab_free_locked(q->shpool, t);
            }

            goto full;
        }

        if (jref) {
            item->journal = *jref;
            item->journal.seq = item->seq;
        }

        if (first == NULL) {
            first = item;
        }

        ngx_queue_insert_tail(&batch, &item->queue);

        total += item->size;
    }

    if (t) {
        t->refs--;
        total += offsetof(ngx_graph_notify_tokens_t, data) + t->len;
    }

    ngx_queue_add(&q->sh->staged, &batch);

    q->sh->count += n;
    q->sh->bytes += total;

    ngx_shmtx_unlock(&q->shpool->mutex);

    return first;

full:

    /* a tenant refused for lack of room waits: the others keep to a share */

    if (n) {
        q->sh->refused_at = ngx_time();
        q->sh->refused_tenant = ngx_graph_notify_tenant_hash(
                                    entries[0].tenant.data,
                                    entries[0].tenant.len);
    }

    ngx_shmtx_unlock(&q->shpool->mutex);

    return NULL;
}


void
ngx_graph_notify_queue_publish(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_item_t *first, ngx_uint_t n)
{
    ngx_uint_t                lane;
    ngx_queue_t              *qe, *next;
    ngx_graph_notify_item_t  *item;

    ngx_shmtx_lock(&q->shpool->mutex);

    for (qe = &first->queue; n; n--, qe = next) {
        next = ngx_queue_next(qe);
        item = ngx_queue_data(qe, ngx_graph_notify_item_t, queue);

        ngx_queue_remove(qe);

        lane = ngx_graph_notify_queue_lane(item);
        ngx_queue_insert_tail(&q->sh->pending[lane], qe);
        q->sh->lane_count[lane]++;

        item->owner = 0;
    }

    ngx_shmtx_unlock(&q->shpool->mutex);
}


void
ngx_graph_notify_queue_unstage(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_item_t *first, ngx_uint_t n)
{
    size_t                    total;
    ngx_uint_t                k;
    ngx_queue_t              *qe, *next;
    ngx_graph_notify_item_t  *item;

    total = 0;
    k = n;

    ngx_shmtx_lock(&q->shpool->mutex);

    if (first->tokens && first->tokens->refs <= n) {
        total += offsetof(ngx_graph_notify_tokens_t, data)
                 + first->tokens->len;
    }

    for (qe = &first->queue; k; k--, qe = next) {
        next = ngx_queue_next(qe);
        item = ngx_queue_data(qe, ngx_graph_notify_item_t, queue);

        ngx_queue_remove(qe);
        total += item->size;
        ngx_graph_notify_queue_free(q, item);
    }

    q->sh->count -= n;
    q->sh->bytes -= total;

    ngx_shmtx_unlock(&q->shpool->mutex);
}


ngx_int_t
ngx_graph_notify_queue_push(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_entry_t *entries, ngx_uint_t n, ngx_str_t *tokens)
{
    ngx_graph_notify_item_t  *first;

    /* without a journal: staged and published at once */

    first = ngx_graph_notify_queue_stage(q, entries, n, tokens, NULL);
    if (first == NULL) {
        return NGX_BUSY;
    }

    ngx_graph_notify_queue_publish(q, first, n);

    return NGX_OK;
}


ngx_int_t
ngx_graph_notify_queue_requeue(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_entry_t *entry, ngx_str_t *tokens,
    ngx_graph_notify_jref_t *jref, time_t received)
{
    ngx_graph_notify_item_t  *item;

    /* an item recovered from a journal keeps its identity there */

    item = ngx_graph_notify_queue_stage(q, entry, 1, tokens, NULL);
    if (item == NULL) {
        return NGX_BUSY;
    }

    item->journal = *jref;
    item->received = received;

    ngx_graph_notify_queue_publish(q, item, 1);

    return NGX_OK;
}


/* the job's line, tenant and record id, from a private copy of the item */

static void
ngx_graph_notify_queue_job_strings(ngx_graph_notify_job_t *job,
    ngx_graph_notify_item_t *item, u_char *p)
{
    job->line.data = p;
    job->line.len = item->line_len;
    job->tenant.data = p + item->line_len;
    job->tenant.len = item->tenant_len;
    job->record.data = job->tenant.data + item->tenant_len;
    job->record.len = item->record_len;
}


ngx_int_t
ngx_graph_notify_queue_take(ngx_graph_notify_queue_t *q, ngx_uint_t lane,
    time_t lease, ngx_pool_t *pool, ngx_graph_notify_job_t *job)
{
    u_char                   *p;
    size_t                    len;
    ngx_queue_t              *qe;
    ngx_graph_notify_item_t  *item;

    ngx_shmtx_lock(&q->shpool->mutex);

    if (ngx_queue_empty(&q->sh->pending[lane])) {
        ngx_shmtx_unlock(&q->shpool->mutex);
        return NGX_DECLINED;
    }

    qe = ngx_queue_head(&q->sh->pending[lane]);
    item = ngx_queue_data(qe, ngx_graph_notify_item_t, queue);

    /* a private copy: the helper never reads shared memory unlocked */

    len = item->line_len + item->tenant_len + item->record_len;

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        ngx_shmtx_unlock(&q->shpool->mutex);
        return NGX_ERROR;
    }

    ngx_graph_notify_item_read(item, p, len);
    p[len] = '\0';

    ngx_queue_remove(qe);
    ngx_queue_insert_tail(&q->sh->inflight, qe);
    q->sh->lane_count[lane]--;

    item->owner = ngx_pid;
    item->lease_until = ngx_time() + lease;
    item->attempts++;

    job->shm = item;
    job->seq = item->seq;
    job->kind = item->kind;
    job->lane = lane;
    job->received = item->received;
    job->journal = item->journal;
    ngx_graph_notify_queue_job_strings(job, item, p);

    ngx_shmtx_unlock(&q->shpool->mutex);

    return NGX_OK;
}


ngx_int_t
ngx_graph_notify_queue_tokens(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_job_t *job, ngx_pool_t *pool, ngx_str_t *tokens)
{
    ngx_int_t                 rc;
    ngx_graph_notify_item_t  *item;

    /* the batch's validationTokens, copied only by whoever needs them */

    ngx_str_null(tokens);
    rc = NGX_OK;

    ngx_shmtx_lock(&q->shpool->mutex);

    item = job->shm;

    if (item->seq != job->seq) {
        rc = NGX_DECLINED;

    } else if (item->tokens) {
        tokens->data = ngx_pnalloc(pool, item->tokens->len);

        if (tokens->data == NULL) {
            rc = NGX_ERROR;

        } else {
            tokens->len = item->tokens->len;
            ngx_memcpy(tokens->data, item->tokens->data, tokens->len);
        }
    }

    ngx_shmtx_unlock(&q->shpool->mutex);

    return rc;
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

        if (item->tokens && item->tokens->refs == 1) {
            q->sh->bytes -= offsetof(ngx_graph_notify_tokens_t, data)
                            + item->tokens->len;
        }

        ngx_graph_notify_queue_free(q, item);
    }

    ngx_shmtx_unlock(&q->shpool->mutex);

    /* consumed: the journal records it once the output write is over */

    if (item) {
        ngx_graph_notify_journal_done(&job->journal);
    }
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
        ngx_queue_insert_head(&q->sh->pending[job->lane], &item->queue);
        q->sh->lane_count[job->lane]++;
        item->owner = 0;
    }

    ngx_shmtx_unlock(&q->shpool->mutex);
}


ngx_int_t
ngx_graph_notify_queue_read(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_job_t *job, ngx_pool_t *pool)
{
    u_char                   *p;
    size_t                    len;
    ngx_graph_notify_item_t  *item;

    /*
     * The line of an item the helper holds by reference only (a tenant's
     * backlog), copied when its turn comes; NGX_DECLINED if it is no
     * longer ours.
     */

    ngx_shmtx_lock(&q->shpool->mutex);

    item = ngx_graph_notify_queue_own(job);

    if (item == NULL) {
        ngx_shmtx_unlock(&q->shpool->mutex);
        return NGX_DECLINED;
    }

    len = item->line_len + item->tenant_len + item->record_len;

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        ngx_shmtx_unlock(&q->shpool->mutex);
        return NGX_ERROR;
    }

    ngx_graph_notify_item_read(item, p, len);
    p[len] = '\0';

    ngx_graph_notify_queue_job_strings(job, item, p);

    ngx_shmtx_unlock(&q->shpool->mutex);

    return NGX_OK;
}


uint64_t
ngx_graph_notify_queue_last_seq(ngx_graph_notify_queue_t *q)
{
    uint64_t  seq;

    /* every item pushed so far has a sequence number up to this one */

    ngx_shmtx_lock(&q->shpool->mutex);
    seq = q->sh->seq;
    ngx_shmtx_unlock(&q->shpool->mutex);

    return seq;
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
    ngx_uint_t                n, lane;
    ngx_queue_t              *qe, *prev, *next;
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

        lane = ngx_graph_notify_queue_lane(item);

        ngx_queue_remove(qe);
        ngx_queue_insert_head(&q->sh->pending[lane], qe);
        q->sh->lane_count[lane]++;
        item->owner = 0;
        n++;
    }

    /*
     * Staged items of a worker that died between staging and publishing:
     * never answered 202, so Graph delivers them again; their memory
     * comes back.
     */

    for (qe = ngx_queue_head(&q->sh->staged);
         qe != ngx_queue_sentinel(&q->sh->staged);
         qe = next)
    {
        next = ngx_queue_next(qe);
        item = ngx_queue_data(qe, ngx_graph_notify_item_t, queue);

        if (kill(item->owner, 0) == 0 || ngx_errno != NGX_ESRCH) {
            continue;
        }

        ngx_queue_remove(qe);

        q->sh->count--;
        q->sh->bytes -= item->size;

        if (item->tokens && item->tokens->refs == 1) {
            q->sh->bytes -= offsetof(ngx_graph_notify_tokens_t, data)
                            + item->tokens->len;
        }

        ngx_graph_notify_queue_free(q, item);
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
 *
 * The write is made once per turn of the worker's event loop, after every
 * request of that turn is handled (a posted event): a helper that keeps up
 * would otherwise be woken, at the cost of a system call and a switch to
 * it, for almost every request.
 */

static ngx_event_t                ngx_graph_notify_wake_ev;
static ngx_graph_notify_queue_t  *ngx_graph_notify_wake_queue;
static ngx_fd_t                   ngx_graph_notify_wake_fd;


void
ngx_graph_notify_queue_wake(ngx_graph_notify_queue_t *q, ngx_fd_t fd,
    ngx_log_t *log)
{
#if (NGX_LINUX)

    if (fd == NGX_INVALID_FILE) {
        return;
    }

    ngx_graph_notify_wake_queue = q;
    ngx_graph_notify_wake_fd = fd;

    if (!ngx_graph_notify_wake_ev.posted) {
        ngx_graph_notify_wake_ev.handler = ngx_graph_notify_queue_wake_handler;
        ngx_graph_notify_wake_ev.log = ngx_cycle->log;

        ngx_post_event(&ngx_graph_notify_wake_ev, &ngx_posted_events);
    }

#endif
}


static void
ngx_graph_notify_queue_wake_handler(ngx_event_t *ev)
{
#if (NGX_LINUX)

    uint64_t                   one;
    ngx_graph_notify_queue_t  *q;

    q = ngx_graph_notify_wake_queue;

    if (!ngx_atomic_cmp_set(&q->sh->wake_pending, 0, 1)) {
        return;
    }

    one = 1;

    /* EAGAIN means the counter is saturated: the helper is awake anyway */

    if (write(ngx_graph_notify_wake_fd, &one, sizeof(uint64_t))
        != sizeof(uint64_t)
        && ngx_errno != NGX_EAGAIN)
    {
        ngx_log_error(NGX_LOG_ALERT, ev->log, ngx_errno,
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
