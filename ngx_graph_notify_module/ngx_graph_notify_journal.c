
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"
#include "ngx_graph_notify_journal.h"
#include "ngx_graph_notify_commit.h"
#include "ngx_graph_notify_crc32c.h"

#include <sys/file.h>
#include <zlib.h>


/*
 * An entry's magic says which CRC covers its payload: "GNJ2", written now,
 * CRC-32C (the processor's crc32 instruction: a tenth of the cost of
 * zlib's CRC-32 on a one-item batch); "GNJ1", written by earlier versions
 * and still read, zlib's CRC-32.
 */
#define NGX_GRAPH_NOTIFY_JOURNAL_MAGIC    0x324a4e47     /* "GNJ2" */
#define NGX_GRAPH_NOTIFY_JOURNAL_MAGIC1   0x314a4e47     /* "GNJ1" */
#define NGX_GRAPH_NOTIFY_STATE_MAGIC      0x31534e47     /* "GNS1" */

/* a worker starts a new file past this size, so consumed ones go away */
#define NGX_GRAPH_NOTIFY_JOURNAL_ROTATE   (16 * 1024 * 1024)

/* entries read per turn of the helper's loop while recovering */
#define NGX_GRAPH_NOTIFY_JOURNAL_BUDGET   1024

/* done records buffered before a write */
#define NGX_GRAPH_NOTIFY_JOURNAL_DONE_MAX 2048

#define NGX_GRAPH_NOTIFY_JOURNAL_PREFIX   "journal."

/*
 * The turn's buffer: entries of every batch accepted in one turn of the
 * worker's event loop, written with one write().  It is kept from turn to
 * turn (no allocation per turn), unless a large batch made it grow past
 * the size kept.
 */
#define NGX_GRAPH_NOTIFY_JOURNAL_BUF      (64 * 1024)
#define NGX_GRAPH_NOTIFY_JOURNAL_BUF_KEEP (1024 * 1024)

/*
 * The checkpoint's CRC-32, and the entries' of "GNJ1": zlib's, the same
 * value as ngx_crc32_long(), several times faster on a batch.
 */
#define ngx_graph_notify_journal_crc(p, len)                                 \
    ((uint32_t) crc32(0L, (const Bytef *) (p), (uInt) (len)))

#define ngx_graph_notify_journal_entry_crc(magic, p, len)                    \
    ((magic) == NGX_GRAPH_NOTIFY_JOURNAL_MAGIC                               \
     ? ngx_graph_notify_crc32c(p, len) : ngx_graph_notify_journal_crc(p, len))


typedef struct {
    uint32_t                      magic;
    uint32_t                      len;
    uint32_t                      crc;
    uint32_t                      n;
} ngx_graph_notify_jentry_t;


typedef struct {
    uint64_t                      seq;
    uint32_t                      line_len;
    uint32_t                      tenant_len;
    uint32_t                      record_len;
    uint32_t                      kind;
} ngx_graph_notify_jitem_t;


/* a record of "journal.done" */
typedef struct {
    uint64_t                      zone;
    uint64_t                      seq;
    uint32_t                      pid;
    uint32_t                      file;
} ngx_graph_notify_jdone_t;


/* a file's record in "journal.state", followed by its seqs */
typedef struct {
    uint64_t                      zone;
    uint32_t                      pid;
    uint32_t                      file;
    uint64_t                      consumed;     /* W */
    uint64_t                      known;        /* E */
    uint32_t                      npending;
    uint32_t                      ndone;
} ngx_graph_notify_jstate_t;


#define NGX_GRAPH_NOTIFY_JOURNAL_RETIRED  8

/*
 * fsync tasks of a worker in flight at once: the next group's fsync starts
 * while the last one's runs (the disk takes two at a time in less than
 * twice one's time), its requests answered only after the older ones'.
 */
#define NGX_GRAPH_NOTIFY_JOURNAL_FSYNCS   2


/*
 * A request whose batch is in the turn's buffer (first and n: its staged
 * items), or whose 202 waits for the journal's fsync.
 */
typedef struct {
    ngx_queue_t                   link;
    ngx_http_request_t           *request;
    ngx_graph_notify_journal_synced_pt  handler;
    ngx_graph_notify_item_t      *first;
    ngx_uint_t                    n;
} ngx_graph_notify_jwait_t;


/*
 * What one fsync task covers: every file a waiting request wrote to.  The
 * task owns its descriptors (the files retired since the last task, and a
 * copy of the current one's) and closes them, so that no other task or
 * writer closes a descriptor under it.
 */
typedef struct {
    ngx_fd_t                      fd[NGX_GRAPH_NOTIFY_JOURNAL_RETIRED + 1];
    ngx_uint_t                    nfd;
    u_char                       *dir;
    ngx_err_t                     err;

    /* the event loop's side: the requests it covers */
    ngx_queue_t                   syncing;
    ngx_uint_t                    n;
    ngx_uint_t                    done;
    ngx_uint_t                    failed_before;
} ngx_graph_notify_jsync_t;


/* the worker's own journal file */
typedef struct {
    ngx_fd_t                      fd;
    ngx_uint_t                    opened;
    off_t                         off;
    uint32_t                      file;

    /* the turn's entries, written at its end by the posted "write" */
    u_char                       *buf;
    size_t                        len;
    size_t                        size;
    ngx_pool_t                   *pool;
    ngx_queue_t                   turn;
    ngx_uint_t                    nturn;
    ngx_event_t                   write;

    /* graph_notify_sync: group commit, up to two fsync tasks in flight */
    ngx_queue_t                   waiting;
    ngx_uint_t                    nwaiting;
    ngx_uint_t                    running;
    ngx_uint_t                    oldest;
    ngx_fd_t                      retired[NGX_GRAPH_NOTIFY_JOURNAL_RETIRED];
    ngx_uint_t                    nretired;
    ngx_uint_t                    created;
    u_char                        dir[NGX_MAX_PATH];
#if (NGX_THREADS)
    ngx_thread_task_t            *tasks[NGX_GRAPH_NOTIFY_JOURNAL_FSYNCS];
    ngx_event_t                   start;
#endif
    ngx_event_t                   alive;
    ngx_graph_notify_queue_t     *queue;
    ngx_graph_notify_main_conf_t *gmcf;

    u_char                        name[NGX_MAX_PATH];
} ngx_graph_notify_jwriter_t;


/* a build for benchmarks only: see ngx_graph_notify_journal_append() */
#ifndef NGX_GRAPH_NOTIFY_NO_JOURNAL
#define NGX_GRAPH_NOTIFY_NO_JOURNAL       0
#endif


/* a journal file as the helper knows it */
typedef struct {
    ngx_queue_t                   link;
    ngx_pool_t                   *pool;
    uint64_t                      zone;
    uint32_t                      pid;
    uint32_t                      file;
    u_char                       *name;
    ngx_uint_t                    own;
    ngx_uint_t                    closed;
    ngx_uint_t                    finished;
    ngx_uint_t                    seen;
    ngx_uint_t                    unsorted;
    off_t                         size;

    /* recovery of a file of another zone: the next entry to read */
    off_t                         read;
    ngx_uint_t                    read_item;

    /* the checkpoint found at start, and done records since */
    off_t                         ck_consumed;
    off_t                         ck_known;
    ngx_array_t                   pending;      /* uint64_t, sorted */
    ngx_array_t                   done;         /* uint64_t, sorted */
    ngx_array_t                   inzone;       /* uint64_t, sorted */

    /* the latest look at the zone */
    ngx_array_t                  *scan;
    off_t                         scan_min;
} ngx_graph_notify_jfile_t;


typedef struct {
    ngx_graph_notify_main_conf_t *gmcf;
    ngx_graph_notify_queue_t     *queue;
    ngx_log_t                    *log;
    ngx_str_t                     dir;
    ngx_fd_t                      lock_fd;
    ngx_fd_t                      done_fd;
    ngx_queue_t                   files;
    ngx_uint_t                    ready;
    ngx_uint_t                    dirty;
    ngx_uint_t                    backlog;
    ngx_uint_t                    recovered;
    ngx_uint_t                    failing;

    ngx_uint_t                    ndone;
    ngx_graph_notify_jdone_t      done[NGX_GRAPH_NOTIFY_JOURNAL_DONE_MAX];

    /*
     * graph_notify_sync: the done log and the checkpoint reach the disk
     * through the helper's group commit (off the event loop): the done
     * log with every sync of the output, the checkpoint in two steps (its
     * temporary file, then the directory after the rename) before the done
     * log it replaces is cut.
     */
    off_t                         done_size;
    off_t                         ck_done_size;
    ngx_uint_t                    done_queued;
    ngx_uint_t                    done_again;
    ngx_uint_t                    ck_step;
    ngx_uint_t                    ck_failing;
    time_t                        ck_retry;
    ngx_graph_notify_commit_t     done_commit;
    ngx_graph_notify_commit_t     state_commit;

    ngx_event_t                   flush;
    ngx_event_t                   more;
    ngx_connection_t              dummy;

    u_char                        name[NGX_MAX_PATH];
} ngx_graph_notify_journal_t;


static ngx_int_t ngx_graph_notify_journal_writer(
    ngx_graph_notify_main_conf_t *gmcf, ngx_graph_notify_queue_t *q,
    ngx_log_t *log);
static ngx_int_t ngx_graph_notify_journal_grow(ngx_graph_notify_jwriter_t *w,
    size_t len);
static void ngx_graph_notify_journal_write_handler(ngx_event_t *ev);
static void ngx_graph_notify_journal_answer(ngx_queue_t *done, ngx_int_t rc);
static void ngx_graph_notify_journal_refused(ngx_graph_notify_queue_t *q,
    ngx_log_t *log, ngx_err_t err, const char *what);
#if (NGX_THREADS)
static void ngx_graph_notify_journal_fsync_next(ngx_event_t *ev);
static ngx_int_t ngx_graph_notify_journal_fsync_start(ngx_log_t *log);
static void ngx_graph_notify_journal_fsync_thread(void *data, ngx_log_t *log);
static void ngx_graph_notify_journal_fsync_done(ngx_event_t *ev);
#endif
static void ngx_graph_notify_journal_alive(ngx_event_t *ev);
static ngx_int_t ngx_graph_notify_journal_lock(void);
static void ngx_graph_notify_journal_start(void);
static ngx_int_t ngx_graph_notify_journal_list(void);
static ngx_graph_notify_jfile_t *ngx_graph_notify_journal_file(uint64_t zone,
    uint32_t pid, uint32_t file);
static ngx_graph_notify_jfile_t *ngx_graph_notify_journal_add(uint64_t zone,
    uint32_t pid, uint32_t file);
static void ngx_graph_notify_journal_free(ngx_graph_notify_jfile_t *f);
static void ngx_graph_notify_journal_read_state(void);
static void ngx_graph_notify_journal_read_done(void);
static ngx_int_t ngx_graph_notify_journal_scan(ngx_pool_t *pool,
    ngx_uint_t *pending, time_t *oldest);
static void ngx_graph_notify_journal_closed(void);
static ngx_int_t ngx_graph_notify_journal_file_recover(
    ngx_graph_notify_jfile_t *f, ngx_uint_t *budget);
static ngx_int_t ngx_graph_notify_journal_entry(ngx_graph_notify_jfile_t *f,
    u_char *p, ngx_graph_notify_jentry_t *e, off_t off);
static ngx_uint_t ngx_graph_notify_journal_has(ngx_array_t *a, uint64_t seq);
static void ngx_graph_notify_journal_sort(ngx_array_t *a);
static void ngx_graph_notify_journal_checkpoint(void);
static void ngx_graph_notify_journal_flush_handler(ngx_event_t *ev);
static void ngx_graph_notify_journal_more_handler(ngx_event_t *ev);
static void ngx_graph_notify_journal_cleanup(void *data);
static void ngx_graph_notify_journal_sync_done(ngx_graph_notify_journal_t *j);
static void ngx_graph_notify_journal_done_synced(ngx_graph_notify_commit_t *c,
    ngx_int_t rc);
static void ngx_graph_notify_journal_state_synced(
    ngx_graph_notify_commit_t *c, ngx_int_t rc);
static void ngx_graph_notify_journal_trim(off_t from);


/* zeroed: "opened" tells whether fd is a journal file */
static ngx_graph_notify_jwriter_t  ngx_graph_notify_jwriter;

static ngx_graph_notify_journal_t  *ngx_graph_notify_journal;


/* the worker's side */

ngx_int_t
ngx_graph_notify_journal_append(ngx_http_request_t *r,
    ngx_graph_notify_entry_t *entries, ngx_uint_t n, ngx_str_t *tokens,
    ngx_graph_notify_journal_synced_pt handler)
{
    u_char                        *p, *start;
    size_t                         len;
    uint64_t                       received;
    uint32_t                       tlen;
    ngx_uint_t                     i;
    ngx_graph_notify_queue_t      *q;
    ngx_graph_notify_item_t       *first;
    ngx_graph_notify_jref_t        jref;
    ngx_graph_notify_jentry_t      e;
    ngx_graph_notify_jitem_t       ji;
    ngx_graph_notify_jwait_t      *wt;
    ngx_graph_notify_jwriter_t    *w;
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_graph_notify_module);
    q = gmcf->shm_zone->data;
    w = &ngx_graph_notify_jwriter;

#if (NGX_GRAPH_NOTIFY_NO_JOURNAL)

    /*
     * A build for scripts/bench only (EXTRA_CFLAGS=-DNGX_GRAPH_NOTIFY_NO_
     * JOURNAL): the batch is queued as it is with the journal, but not
     * written, so the journal's cost is the difference of the two builds.
     */

    ngx_memzero(&jref, sizeof(ngx_graph_notify_jref_t));

    first = ngx_graph_notify_queue_stage(q, entries, n, tokens, &jref);
    if (first == NULL) {
        return q->refused == NGX_GRAPH_NOTIFY_REFUSED_SHARE ? NGX_ABORT
                                                            : NGX_BUSY;
    }

    ngx_graph_notify_queue_publish(q, first, n);

    return NGX_OK;

#endif

    if (w->write.handler == NULL) {
        ngx_queue_init(&w->turn);

        w->write.handler = ngx_graph_notify_journal_write_handler;
        w->write.data = w;
        w->write.log = ngx_cycle->log;
    }

    w->gmcf = gmcf;
    w->queue = q;

    /* a new file only between writes: the turn's entries go to one file */

    if (w->len == 0
        && (!w->opened
            || (w->off >= NGX_GRAPH_NOTIFY_JOURNAL_ROTATE
                && w->nretired < NGX_GRAPH_NOTIFY_JOURNAL_RETIRED)))
    {
        if (ngx_graph_notify_journal_writer(gmcf, q, r->connection->log)
            != NGX_OK)
        {
            ngx_graph_notify_stat_inc(q, journal_failures);
            return NGX_DECLINED;
        }
    }

    wt = ngx_palloc(r->pool, sizeof(ngx_graph_notify_jwait_t));
    if (wt == NULL) {
        return NGX_ERROR;
    }

    tlen = tokens ? (uint32_t) tokens->len : 0;

    len = sizeof(ngx_graph_notify_jentry_t) + sizeof(uint64_t)
          + sizeof(uint32_t) + tlen;

    for (i = 0; i < n; i++) {
        len += sizeof(ngx_graph_notify_jitem_t) + entries[i].line.len
               + entries[i].tenant.len + entries[i].record.len;
    }

    if (w->len + len > w->size) {
        if (ngx_graph_notify_journal_grow(w, len) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /* room in the zone first: a full queue never touches the journal */

    jref.zone = q->sh->zone_id;
    jref.pid = (uint32_t) ngx_pid;
    jref.file = w->file;
    jref.off = w->off + w->len;
    jref.seq = 0;

    first = ngx_graph_notify_queue_stage(q, entries, n, tokens, &jref);
    if (first == NULL) {
        return q->refused == NGX_GRAPH_NOTIFY_REFUSED_SHARE ? NGX_ABORT
                                                            : NGX_BUSY;
    }

    /* the entry, built in the turn's buffer after those of the turn */

    start = w->buf + w->len;
    p = start + sizeof(ngx_graph_notify_jentry_t);

    received = (uint64_t) first->received;
    p = ngx_cpymem(p, &received, sizeof(uint64_t));
    p = ngx_cpymem(p, &tlen, sizeof(uint32_t));

    if (tlen) {
        p = ngx_cpymem(p, tokens->data, tlen);
    }

    for (i = 0; i < n; i++) {
        /* sequence numbers of one stage are consecutive */
        ji.seq = first->seq + i;
        ji.line_len = (uint32_t) entries[i].line.len;
        ji.tenant_len = (uint32_t) entries[i].tenant.len;
        ji.record_len = (uint32_t) entries[i].record.len;
        ji.kind = (uint32_t) entries[i].kind;

        p = ngx_cpymem(p, &ji, sizeof(ngx_graph_notify_jitem_t));
        p = ngx_cpymem(p, entries[i].line.data, entries[i].line.len);
        p = ngx_cpymem(p, entries[i].tenant.data, entries[i].tenant.len);
        p = ngx_cpymem(p, entries[i].record.data, entries[i].record.len);
    }

    e.magic = NGX_GRAPH_NOTIFY_JOURNAL_MAGIC;
    e.len = (uint32_t) (len - sizeof(ngx_graph_notify_jentry_t));
    e.crc = ngx_graph_notify_crc32c(start + sizeof(ngx_graph_notify_jentry_t),
                                    e.len);
    e.n = (uint32_t) n;

    ngx_memcpy(start, &e, sizeof(ngx_graph_notify_jentry_t));

    w->len += len;

    wt->request = r;
    wt->handler = handler;
    wt->first = first;
    wt->n = n;

    ngx_queue_insert_tail(&w->turn, &wt->link);
    w->nturn++;

    /* posted events run at the end of the turn, before the loop waits */

    if (!w->write.posted) {
        ngx_post_event(&w->write, &ngx_posted_events);
    }

    return NGX_AGAIN;
}


/* the turn's buffer, large enough for len bytes more */

static ngx_int_t
ngx_graph_notify_journal_grow(ngx_graph_notify_jwriter_t *w, size_t len)
{
    u_char  *buf;
    size_t   size;

    /*
     * From the cycle's pool, so that it goes with the cycle (and with the
     * module's code); a new cycle in a single process starts afresh.
     */

    if (w->pool != ngx_cycle->pool && w->len == 0) {
        w->pool = ngx_cycle->pool;
        w->buf = NULL;
        w->size = 0;
    }

    size = ngx_max(w->size * 2, NGX_GRAPH_NOTIFY_JOURNAL_BUF);

    while (size < w->len + len) {
        size *= 2;
    }

    buf = ngx_palloc(w->pool, size);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    if (w->len) {
        ngx_memcpy(buf, w->buf, w->len);
    }

    if (w->buf) {
        (void) ngx_pfree(w->pool, w->buf);
    }

    w->buf = buf;
    w->size = size;

    return NGX_OK;
}


/*
 * The end of the turn: one write() for every batch of the turn, each
 * entry whole as before.  On success their items are published and the
 * requests answered (or queued for the fsync); on failure every batch of
 * the write is unstaged and answered 503: nothing of them is kept.
 */

static void
ngx_graph_notify_journal_write_handler(ngx_event_t *ev)
{
    size_t                       len;
    ssize_t                      written;
    ngx_err_t                    err;
    ngx_int_t                    rc;
    ngx_uint_t                   nturn;
    ngx_queue_t                  turn, *qe;
    ngx_graph_notify_queue_t    *q;
    ngx_graph_notify_jwait_t    *wt;
    ngx_graph_notify_jwriter_t  *w;

    w = ev->data;
    q = w->queue;
    len = w->len;
    nturn = w->nturn;

    ngx_queue_init(&turn);
    ngx_queue_add(&turn, &w->turn);
    ngx_queue_init(&w->turn);
    w->nturn = 0;
    w->len = 0;

    if (len == 0) {
        return;
    }

    /* one write: every batch of the turn is in the page cache, or none */

    written = write(w->fd, w->buf, len);

    if (written == (ssize_t) len) {
        w->off += len;
        rc = NGX_OK;

        ngx_graph_notify_stat_add(q, journal_appends, nturn);
        ngx_graph_notify_stat_inc(q, journal_writes);

    } else {
        err = (written == -1) ? ngx_errno : NGX_ENOSPC;
        rc = NGX_DECLINED;

        ngx_graph_notify_stat_add(q, journal_failures, nturn);

        /* a part written is cut off; if that fails, a new file is next */

        if (written > 0 && ftruncate(w->fd, w->off) == -1) {
            if (w->gmcf->sync
                && w->nretired < NGX_GRAPH_NOTIFY_JOURNAL_RETIRED)
            {
                w->retired[w->nretired++] = w->fd;

            } else {
                (void) ngx_close_file(w->fd);
            }

            w->opened = 0;
        }

        ngx_graph_notify_journal_refused(q, ev->log, err, "writing");
    }

    for (qe = ngx_queue_head(&turn);
         qe != ngx_queue_sentinel(&turn);
         qe = ngx_queue_next(qe))
    {
        wt = ngx_queue_data(qe, ngx_graph_notify_jwait_t, link);

        if (rc == NGX_OK) {
            ngx_graph_notify_queue_publish(q, wt->first, wt->n);

        } else {
            ngx_graph_notify_queue_unstage(q, wt->first, wt->n);
        }
    }

    if (w->size > NGX_GRAPH_NOTIFY_JOURNAL_BUF_KEEP) {
        /* a large batch made it grow: not kept */
        (void) ngx_pfree(w->pool, w->buf);
        w->buf = NULL;
        w->size = 0;
    }

    ngx_graph_notify_journal_answer(&turn, rc);
}


static void
ngx_graph_notify_journal_answer(ngx_queue_t *done, ngx_int_t rc)
{
    ngx_queue_t               *qe;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_graph_notify_jwait_t  *wt;

    while (!ngx_queue_empty(done)) {
        qe = ngx_queue_head(done);
        ngx_queue_remove(qe);

        wt = ngx_queue_data(qe, ngx_graph_notify_jwait_t, link);
        r = wt->request;
        c = r->connection;

        wt->handler(r, rc);

        ngx_http_run_posted_requests(c);
    }
}


static ngx_int_t
ngx_graph_notify_journal_writer(ngx_graph_notify_main_conf_t *gmcf,
    ngx_graph_notify_queue_t *q, ngx_log_t *log)
{
    ngx_fd_t                     fd;
    ngx_file_info_t              fi;
    ngx_graph_notify_jwriter_t  *w;

    w = &ngx_graph_notify_jwriter;

    if (gmcf->path->name.len + 64 > NGX_MAX_PATH) {
        ngx_graph_notify_journal_refused(q, log, 0, "naming");
        return NGX_ERROR;
    }

    /* a new number for each file of this zone */

    w->file = (uint32_t) ngx_atomic_fetch_add(&q->sh->files, 1);

    (void) ngx_sprintf(w->name, "%V/" NGX_GRAPH_NOTIFY_JOURNAL_PREFIX
                       "%016xL.%P.%uD%Z",
                       &gmcf->path->name, q->sh->zone_id, ngx_pid, w->file);

    fd = ngx_open_file(w->name, NGX_FILE_APPEND,
                       NGX_FILE_CREATE_OR_OPEN|NGX_FILE_NONBLOCK, 0600);

    if (fd == NGX_INVALID_FILE) {
        ngx_graph_notify_journal_refused(q, log, ngx_errno, "opening");
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_graph_notify_journal_refused(q, log, ngx_errno, "opening");
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    if (w->opened) {
        if (gmcf->sync) {
            /* requests wrote to it: the next fsync covers it, then it goes */
            w->retired[w->nretired++] = w->fd;

        } else {
            (void) ngx_close_file(w->fd);
        }
    }

    w->fd = fd;
    w->opened = 1;
    w->off = ngx_file_size(&fi);

    /* a new name in the directory: the next fsync covers it too */

    w->created = 1;
    (void) ngx_sprintf(w->dir, "%V%Z", &gmcf->path->name);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "graph_notify: journal \"%s\"", w->name);

    return NGX_OK;
}


static void
ngx_graph_notify_journal_refused(ngx_graph_notify_queue_t *q, ngx_log_t *log,
    ngx_err_t err, const char *what)
{
    time_t             now, last;
    ngx_atomic_uint_t  n;

    /*
     * One line a minute for all workers together, with the count, whatever
     * the rate of requests.
     */

    (void) ngx_atomic_fetch_add(&q->sh->journal_refused, 1);

    now = ngx_time();
    last = (time_t) q->sh->journal_logged;

    if (now - last < 60
        || !ngx_atomic_cmp_set(&q->sh->journal_logged, (ngx_atomic_uint_t) last,
                               (ngx_atomic_uint_t) now))
    {
        return;
    }

    n = q->sh->journal_refused;
    (void) ngx_atomic_fetch_add(&q->sh->journal_refused, -(ngx_atomic_int_t) n);

    ngx_log_error(NGX_LOG_ERR, log, err,
                  "graph_notify: %s the journal \"%s\" failed, %uA batch(es) "
                  "refused with 503 since the last report",
                  what, ngx_graph_notify_jwriter.name, n);
}


/*
 * graph_notify_sync: the 202 waits until the journal is on disk.  The
 * fsync runs in a thread of the pool; the requests of one turn of the loop
 * wait for one fsync, which covers them all (group commit).
 */

ngx_int_t
ngx_graph_notify_journal_sync(ngx_http_request_t *r,
    ngx_graph_notify_journal_synced_pt handler)
{
#if (NGX_THREADS)

    ngx_graph_notify_jwait_t      *wt;
    ngx_graph_notify_jwriter_t    *w;
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_graph_notify_module);

    if (!gmcf->sync || gmcf->thread_pool == NULL
        || NGX_GRAPH_NOTIFY_NO_JOURNAL)
    {
        return NGX_OK;
    }

    w = &ngx_graph_notify_jwriter;

    if (w->alive.handler == NULL) {
        ngx_queue_init(&w->waiting);

        w->gmcf = gmcf;
        w->queue = gmcf->shm_zone->data;

        w->alive.handler = ngx_graph_notify_journal_alive;
        w->alive.data = w;
        w->alive.log = ngx_cycle->log;

        w->start.handler = ngx_graph_notify_journal_fsync_next;
        w->start.data = w;
        w->start.log = ngx_cycle->log;
    }

    wt = ngx_palloc(r->pool, sizeof(ngx_graph_notify_jwait_t));
    if (wt == NULL) {
        return NGX_ERROR;
    }

    wt->request = r;
    wt->handler = handler;

    ngx_queue_insert_tail(&w->waiting, &wt->link);
    w->nwaiting++;

    /*
     * A timer that is not cancelable keeps a worker that is told to quit
     * alive until the requests it journaled are answered.
     */

    if (!w->alive.timer_set) {
        ngx_add_timer(&w->alive, 60000);
    }

    /*
     * The group's fsync starts at the end of the turn, so that every
     * request answered in this turn is in it; with both tasks in flight,
     * when the older one is done.
     */

    if (w->running < NGX_GRAPH_NOTIFY_JOURNAL_FSYNCS && !w->start.posted) {
        ngx_post_event(&w->start, &ngx_posted_events);
    }

    return NGX_AGAIN;

#else

    return NGX_OK;

#endif
}


#if (NGX_THREADS)

/* the end of a turn: the fsync of the requests answered in it */

static void
ngx_graph_notify_journal_fsync_next(ngx_event_t *ev)
{
    ngx_queue_t                  failed;
    ngx_graph_notify_jwriter_t  *w;

    w = ev->data;

    if (w->nwaiting == 0 || w->running == NGX_GRAPH_NOTIFY_JOURNAL_FSYNCS) {
        return;
    }

    if (ngx_graph_notify_journal_fsync_start(ev->log) == NGX_OK) {
        return;
    }

    /* not known to be on disk: 503, so that Graph sends them again */

    ngx_queue_init(&failed);
    ngx_queue_add(&failed, &w->waiting);
    ngx_queue_init(&w->waiting);
    w->nwaiting = 0;

    ngx_graph_notify_journal_answer(&failed, NGX_ERROR);

    if (!w->running && w->nwaiting == 0 && w->alive.timer_set) {
        ngx_del_timer(&w->alive);
    }
}


static ngx_int_t
ngx_graph_notify_journal_fsync_start(ngx_log_t *log)
{
    ngx_fd_t                     fd;
    ngx_uint_t                   i, k;
    ngx_thread_task_t           *task;
    ngx_graph_notify_jsync_t    *js;
    ngx_graph_notify_jwriter_t  *w;

    w = &ngx_graph_notify_jwriter;

    /* the slot after the newest task in flight */

    k = (w->oldest + w->running) % NGX_GRAPH_NOTIFY_JOURNAL_FSYNCS;
    task = w->tasks[k];

    if (task == NULL) {
        task = ngx_thread_task_alloc(ngx_cycle->pool,
                                     sizeof(ngx_graph_notify_jsync_t));
        if (task == NULL) {
            return NGX_ERROR;
        }

        task->handler = ngx_graph_notify_journal_fsync_thread;
        task->event.handler = ngx_graph_notify_journal_fsync_done;
        task->event.data = task->ctx;

        w->tasks[k] = task;
    }

    js = task->ctx;

    /* the current file's descriptor copied: a rotation may close it */

    fd = NGX_INVALID_FILE;

    if (w->opened) {
        fd = dup(w->fd);

        if (fd == NGX_INVALID_FILE) {
            /* out of descriptors: logged once a minute, the group 503 */
            ngx_graph_notify_journal_refused(w->queue, log, ngx_errno,
                                             "copying the descriptor of");
            return NGX_ERROR;
        }
    }

    js->nfd = 0;

    for (i = 0; i < w->nretired; i++) {
        js->fd[js->nfd++] = w->retired[i];
    }

    if (fd != NGX_INVALID_FILE) {
        js->fd[js->nfd++] = fd;
    }

    js->err = 0;
    js->dir = w->created ? w->dir : NULL;
    js->done = 0;
    js->failed_before = 0;

    task->event.log = log;

    if (ngx_thread_task_post(w->gmcf->thread_pool, task) != NGX_OK) {
        if (fd != NGX_INVALID_FILE) {
            (void) ngx_close_file(fd);
        }

        return NGX_ERROR;
    }

    /* the files retired and the new name are the task's now */

    w->nretired = 0;
    w->created = 0;

    /* everyone waiting now is covered by this fsync */

    ngx_queue_init(&js->syncing);
    ngx_queue_add(&js->syncing, &w->waiting);
    ngx_queue_init(&w->waiting);

    js->n = w->nwaiting;
    w->nwaiting = 0;
    w->running++;

    return NGX_OK;
}


static void
ngx_graph_notify_journal_fsync_thread(void *data, ngx_log_t *log)
{
    ngx_graph_notify_jsync_t *js = data;

    ngx_fd_t    fd;
    ngx_uint_t  i;

    for (i = 0; i < js->nfd; i++) {
        if (fdatasync(js->fd[i]) == -1) {
            js->err = ngx_errno;
        }
    }

    /* a file just created survives a power cut only with its name */

    if (js->dir) {
        fd = ngx_open_file(js->dir, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

        if (fd == NGX_INVALID_FILE || fsync(fd) == -1) {
            js->err = ngx_errno;
        }

        if (fd != NGX_INVALID_FILE) {
            (void) ngx_close_file(fd);
        }
    }

    /* the task's own descriptors: nobody else closes them */

    for (i = 0; i < js->nfd; i++) {
        (void) ngx_close_file(js->fd[i]);
    }
}


static void
ngx_graph_notify_journal_fsync_done(ngx_event_t *ev)
{
    ngx_int_t                    rc;
    ngx_uint_t                   i, k, after;
    ngx_queue_t                  done;
    ngx_graph_notify_jsync_t    *js, *next;
    ngx_graph_notify_jwriter_t  *w;

    js = ev->data;
    w = &ngx_graph_notify_jwriter;

    js->done = 1;

    ngx_graph_notify_stat_inc(w->queue, journal_fsyncs);
    ngx_graph_notify_stat_add(w->queue, journal_fsync_requests, js->n);

    if (js->n > w->queue->sh->stats.journal_fsync_group_max) {
        /* a gauge: a lost race only shows a slightly smaller maximum */
        w->queue->sh->stats.journal_fsync_group_max = js->n;
    }

    if (js->err) {
        ngx_log_error(NGX_LOG_ALERT, ev->log, js->err,
                      "graph_notify: fdatasync() of the journal \"%s\" "
                      "failed, %ui request(s) answered 503", w->name, js->n);

        /*
         * The tasks started before this failure was known may rely on
         * what it did not sync (a file's name, a file retired): they fail
         * too, and the next task syncs the directory again.
         */

        after = 0;

        for (i = 0; i < w->running; i++) {
            k = (w->oldest + i) % NGX_GRAPH_NOTIFY_JOURNAL_FSYNCS;
            next = w->tasks[k]->ctx;

            if (after) {
                next->failed_before = 1;
            }

            if (next == js) {
                after = 1;
            }
        }

        w->created = 1;
    }

    /*
     * Groups are answered in the order their fsyncs started: a request is
     * answered only when every fsync before its own is done as well.
     */

    while (w->running) {
        js = w->tasks[w->oldest]->ctx;

        if (!js->done) {
            break;
        }

        rc = (js->err || js->failed_before) ? NGX_ERROR : NGX_OK;

        ngx_queue_init(&done);
        ngx_queue_add(&done, &js->syncing);
        ngx_queue_init(&js->syncing);

        w->oldest = (w->oldest + 1) % NGX_GRAPH_NOTIFY_JOURNAL_FSYNCS;
        w->running--;

        /* the next group first, so that it fills while these are answered */

        ngx_graph_notify_journal_fsync_next(&w->start);

        ngx_graph_notify_journal_answer(&done, rc);
    }

    if (!w->running && w->nwaiting == 0 && w->alive.timer_set) {
        ngx_del_timer(&w->alive);
    }
}


#endif


static void
ngx_graph_notify_journal_alive(ngx_event_t *ev)
{
    /* only a backstop: an fsync that takes a minute is answered then */

    if (ngx_graph_notify_jwriter.running || ngx_graph_notify_jwriter.nwaiting)
    {
        ngx_add_timer(ev, 60000);
    }
}


/* the helper's side */

ngx_int_t
ngx_graph_notify_journal_open(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf)
{
    ngx_pool_cleanup_t          *cln;
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;

    if (j == NULL) {
        j = ngx_pcalloc(cycle->pool, sizeof(ngx_graph_notify_journal_t));
        if (j == NULL) {
            return NGX_ERROR;
        }

        cln = ngx_pool_cleanup_add(cycle->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_graph_notify_journal_cleanup;
        cln->data = j;

        j->gmcf = gmcf;
        j->queue = gmcf->shm_zone->data;
        j->log = cycle->log;
        j->dir = gmcf->path->name;
        j->lock_fd = NGX_INVALID_FILE;
        j->done_fd = NGX_INVALID_FILE;

        ngx_queue_init(&j->files);

        j->dummy.fd = (ngx_socket_t) -1;

        j->flush.handler = ngx_graph_notify_journal_flush_handler;
        j->flush.data = &j->dummy;
        j->flush.log = j->log;

        j->more.handler = ngx_graph_notify_journal_more_handler;
        j->more.data = &j->dummy;
        j->more.log = j->log;

        j->done_commit.handler = ngx_graph_notify_journal_done_synced;
        j->done_commit.data = j;
        j->state_commit.handler = ngx_graph_notify_journal_state_synced;
        j->state_commit.data = j;

        ngx_graph_notify_journal = j;
    }

    if (j->ready) {
        return NGX_OK;
    }

#if (NGX_GRAPH_NOTIFY_NO_JOURNAL)
    ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                  "graph_notify: built without the journal's writes "
                  "(NGX_GRAPH_NOTIFY_NO_JOURNAL), for benchmarks only: "
                  "queued items do not survive a stop");
#endif

    switch (ngx_graph_notify_journal_lock()) {

    case NGX_OK:
        break;

    case NGX_AGAIN:
        return NGX_AGAIN;

    default:
        return NGX_ERROR;
    }

    ngx_graph_notify_journal_start();

    return NGX_OK;
}


ngx_uint_t
ngx_graph_notify_journal_ready(void)
{
    return ngx_graph_notify_journal && ngx_graph_notify_journal->ready;
}


static ngx_int_t
ngx_graph_notify_journal_lock(void)
{
    u_char                      *name;
    ngx_err_t                    err;
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;

    /* retried every 100 ms while another helper holds it: no allocation */

    if (j->dir.len + sizeof("/journal.lock") > NGX_MAX_PATH) {
        ngx_log_error(NGX_LOG_ALERT, j->log, 0,
                      "graph_notify: the path \"%V\" is too long", &j->dir);
        return NGX_ERROR;
    }

    name = j->name;

    (void) ngx_sprintf(name, "%V/journal.lock%Z", &j->dir);

    if (j->lock_fd == NGX_INVALID_FILE) {
        j->lock_fd = ngx_open_file(name, NGX_FILE_RDWR,
                                   NGX_FILE_CREATE_OR_OPEN, 0600);

        if (j->lock_fd == NGX_INVALID_FILE) {
            ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                          "graph_notify: opening \"%s\" failed", name);
            return NGX_ERROR;
        }

        (void) fcntl(j->lock_fd, F_SETFD, FD_CLOEXEC);
    }

    /*
     * One helper consumes journals at a time; during a reload or a binary
     * upgrade the other one waits here until the first is gone.
     */

    if (flock(j->lock_fd, LOCK_EX|LOCK_NB) == -1) {
        err = ngx_errno;

        if (err == NGX_EAGAIN) {
            return NGX_AGAIN;
        }

        ngx_log_error(NGX_LOG_ALERT, j->log, err,
                      "graph_notify: flock(\"%s\") failed", name);
        return NGX_ERROR;
    }

    (void) ngx_sprintf(name, "%V/journal.done%Z", &j->dir);

    j->done_fd = ngx_open_file(name, O_RDWR|O_APPEND,
                               NGX_FILE_CREATE_OR_OPEN, 0600);

    if (j->done_fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                      "graph_notify: opening \"%s\" failed", name);
        (void) flock(j->lock_fd, LOCK_UN);
        return NGX_ERROR;
    }

    (void) fcntl(j->done_fd, F_SETFD, FD_CLOEXEC);

    j->done_size = lseek(j->done_fd, 0, SEEK_END);

    if (j->done_size == -1) {
        j->done_size = 0;
    }

    if (j->gmcf->sync) {
        ngx_graph_notify_commit_every(j->done_fd);
    }

    return NGX_OK;
}


static void
ngx_graph_notify_journal_start(void)
{
    ngx_uint_t                   foreign;
    ngx_queue_t                 *qe;
    ngx_graph_notify_jfile_t    *f;
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;

    (void) ngx_graph_notify_journal_list();

    ngx_graph_notify_journal_read_state();
    ngx_graph_notify_journal_read_done();

    /* what a previous helper of this zone queued again already */

    (void) ngx_graph_notify_journal_scan(NULL, NULL, NULL);

    foreign = 0;

    for (qe = ngx_queue_head(&j->files);
         qe != ngx_queue_sentinel(&j->files);
         qe = ngx_queue_next(qe))
    {
        f = ngx_queue_data(qe, ngx_graph_notify_jfile_t, link);

        ngx_graph_notify_journal_sort(&f->pending);
        ngx_graph_notify_journal_sort(&f->done);
        ngx_graph_notify_journal_sort(&f->inzone);

        if (!f->own) {
            f->read = f->ck_consumed;
            foreign++;
        }
    }

    ngx_graph_notify_journal_closed();

    j->ready = 1;
    j->dirty = 1;
    j->backlog = foreign;
    j->queue->sh->stats.journal_recovering = foreign;

    if (foreign) {
        ngx_graph_notify_stat_inc(j->queue, journal_recoveries);

        ngx_log_error(NGX_LOG_NOTICE, j->log, 0,
                      "graph_notify: recovering %ui journal file(s) of "
                      "another zone", foreign);

        ngx_graph_notify_journal_recover();
    }
}


static ngx_int_t
ngx_graph_notify_journal_list(void)
{
    u_char                    *name, *p, *last, *dot;
    size_t                     len;
    uint64_t                   zone;
    ngx_int_t                  pid, file;
    ngx_dir_t                  dir;
    ngx_graph_notify_jfile_t  *f;

    if (ngx_open_dir(&ngx_graph_notify_journal->dir, &dir) == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, ngx_graph_notify_journal->log,
                      ngx_errno, "graph_notify: reading the directory "
                      "\"%V\" failed", &ngx_graph_notify_journal->dir);
        return NGX_ERROR;
    }

    for ( ;; ) {
        ngx_set_errno(0);

        if (ngx_read_dir(&dir) == NGX_ERROR) {
            break;
        }

        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);
        last = name + len;

        /* journal.<16 hex>.<pid>.<n> */

        p = name + sizeof(NGX_GRAPH_NOTIFY_JOURNAL_PREFIX) - 1;

        if (len < sizeof(NGX_GRAPH_NOTIFY_JOURNAL_PREFIX) + 20
            || ngx_strncmp(name, NGX_GRAPH_NOTIFY_JOURNAL_PREFIX,
                           sizeof(NGX_GRAPH_NOTIFY_JOURNAL_PREFIX) - 1)
               != 0
            || p[16] != '.')
        {
            continue;
        }

        zone = (uint64_t) ngx_hextoi(p, 16);

        p += 17;
        dot = ngx_strlchr(p, last, '.');

        if (dot == NULL || (ngx_int_t) zone == NGX_ERROR) {
            continue;
        }

        pid = ngx_atoi(p, dot - p);
        file = ngx_atoi(dot + 1, last - dot - 1);

        if (pid == NGX_ERROR || file == NGX_ERROR) {
            continue;
        }

        f = ngx_graph_notify_journal_file(zone, (uint32_t) pid,
                                          (uint32_t) file);
        if (f == NULL) {
            f = ngx_graph_notify_journal_add(zone, (uint32_t) pid,
                                              (uint32_t) file);
            if (f == NULL) {
                break;
            }
        }

        f->seen = 1;
    }

    ngx_close_dir(&dir);

    return NGX_OK;
}


static ngx_graph_notify_jfile_t *
ngx_graph_notify_journal_file(uint64_t zone, uint32_t pid, uint32_t file)
{
    ngx_queue_t               *qe;
    ngx_graph_notify_jfile_t  *f;

    for (qe = ngx_queue_head(&ngx_graph_notify_journal->files);
         qe != ngx_queue_sentinel(&ngx_graph_notify_journal->files);
         qe = ngx_queue_next(qe))
    {
        f = ngx_queue_data(qe, ngx_graph_notify_jfile_t, link);

        if (f->zone == zone && f->pid == pid && f->file == file) {
            return f;
        }
    }

    return NULL;
}


static ngx_graph_notify_jfile_t *
ngx_graph_notify_journal_add(uint64_t zone, uint32_t pid, uint32_t file)
{
    ngx_pool_t                  *pool;
    ngx_graph_notify_jfile_t    *f;
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;

    pool = ngx_create_pool(1024, j->log);
    if (pool == NULL) {
        return NULL;
    }

    f = ngx_pcalloc(pool, sizeof(ngx_graph_notify_jfile_t));
    if (f == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    f->pool = pool;
    f->zone = zone;
    f->pid = pid;
    f->file = file;
    f->own = (zone == j->queue->sh->zone_id);

    f->name = ngx_pnalloc(pool, j->dir.len + 64);

    if (f->name == NULL
        || ngx_array_init(&f->pending, pool, 4, sizeof(uint64_t)) != NGX_OK
        || ngx_array_init(&f->done, pool, 4, sizeof(uint64_t)) != NGX_OK
        || ngx_array_init(&f->inzone, pool, 4, sizeof(uint64_t)) != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NULL;
    }

    (void) ngx_sprintf(f->name, "%V/" NGX_GRAPH_NOTIFY_JOURNAL_PREFIX
                       "%016xL.%uD.%uD%Z", &j->dir, zone, pid, file);

    ngx_queue_insert_tail(&j->files, &f->link);

    return f;
}


static void
ngx_graph_notify_journal_free(ngx_graph_notify_jfile_t *f)
{
    ngx_queue_remove(&f->link);
    ngx_destroy_pool(f->pool);
}


static void
ngx_graph_notify_journal_read_state(void)
{
    u_char                      *buf, *p, *last;
    size_t                       size;
    ssize_t                      n;
    uint32_t                     magic, crc, i;
    uint64_t                    *seq;
    ngx_fd_t                     fd;
    ngx_file_info_t              fi;
    ngx_graph_notify_jfile_t    *f;
    ngx_graph_notify_jstate_t    st;
    ngx_graph_notify_journal_t  *j;
    u_char                       name[NGX_MAX_PATH];

    j = ngx_graph_notify_journal;

    (void) ngx_sprintf(name, "%V/journal.state%Z", &j->dir);

    fd = ngx_open_file(name, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return;
    }

    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        goto failed;
    }

    size = (size_t) ngx_file_size(&fi);

    if (size < 2 * sizeof(uint32_t)) {
        goto failed;
    }

    buf = ngx_alloc(size, j->log);
    if (buf == NULL) {
        goto failed;
    }

    n = read(fd, buf, size);

    if (n != (ssize_t) size) {
        goto failed;
    }

    /* the magic first, the CRC of everything before it last */

    ngx_memcpy(&magic, buf, sizeof(uint32_t));
    ngx_memcpy(&crc, buf + size - sizeof(uint32_t), sizeof(uint32_t));

    if (magic != NGX_GRAPH_NOTIFY_STATE_MAGIC
        || crc != ngx_graph_notify_journal_crc(buf, size - sizeof(uint32_t)))
    {
        ngx_log_error(NGX_LOG_ALERT, j->log, 0,
                      "graph_notify: \"%s\" is damaged, ignored: journal "
                      "entries consumed before may be written again", name);
        goto failed;
    }

    p = buf + sizeof(uint32_t);
    last = buf + size - sizeof(uint32_t);

    while ((size_t) (last - p) >= sizeof(ngx_graph_notify_jstate_t)) {
        ngx_memcpy(&st, p, sizeof(ngx_graph_notify_jstate_t));
        p += sizeof(ngx_graph_notify_jstate_t);

        if ((size_t) (last - p)
            < ((size_t) st.npending + st.ndone) * sizeof(uint64_t))
        {
            break;
        }

        f = ngx_graph_notify_journal_file(st.zone, st.pid, st.file);

        if (f == NULL) {
            /* the file is gone: nothing of it is left to do */
            p += ((size_t) st.npending + st.ndone) * sizeof(uint64_t);
            continue;
        }

        f->ck_consumed = (off_t) st.consumed;
        f->ck_known = (off_t) st.known;

        for (i = 0; i < st.npending + st.ndone; i++) {
            seq = ngx_array_push(i < st.npending ? &f->pending : &f->done);
            if (seq == NULL) {
                goto failed;
            }

            ngx_memcpy(seq, p, sizeof(uint64_t));
            p += sizeof(uint64_t);
        }
    }

failed:

    if (buf) {
        ngx_free(buf);
    }

    (void) ngx_close_file(fd);
}


static void
ngx_graph_notify_journal_read_done(void)
{
    u_char                      *buf;
    size_t                       size, i;
    ssize_t                      n;
    uint64_t                    *seq;
    ngx_file_info_t              fi;
    ngx_graph_notify_jdone_t     d;
    ngx_graph_notify_jfile_t    *f;
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;

    if (ngx_fd_info(j->done_fd, &fi) == NGX_FILE_ERROR) {
        return;
    }

    /* a record cut short by a crash is left out */

    size = (size_t) ngx_file_size(&fi);
    size -= size % sizeof(ngx_graph_notify_jdone_t);

    if (size == 0) {
        return;
    }

    buf = ngx_alloc(size, j->log);
    if (buf == NULL) {
        return;
    }

    n = pread(j->done_fd, buf, size, 0);

    for (i = 0; n == (ssize_t) size && i < size; i += sizeof(d)) {
        ngx_memcpy(&d, buf + i, sizeof(d));

        f = ngx_graph_notify_journal_file(d.zone, d.pid, d.file);
        if (f == NULL) {
            continue;
        }

        seq = ngx_array_push(&f->done);
        if (seq == NULL) {
            break;
        }

        *seq = d.seq;
    }

    ngx_free(buf);
}


/*
 * A look at the zone, under its lock: which journaled items are still in
 * it, per file.  At start (pool NULL) it fills each file's "inzone", else
 * its "scan" (allocated from the pool) and the lowest entry offset.
 */

static ngx_int_t
ngx_graph_notify_journal_scan(ngx_pool_t *pool, ngx_uint_t *pending,
    time_t *oldest)
{
    uint64_t                    *seq;
    ngx_int_t                    rc;
    ngx_uint_t                   i, count;
    ngx_queue_t                 *lists[NGX_GRAPH_NOTIFY_LANES + 2], *qe;
    ngx_graph_notify_item_t     *item;
    ngx_graph_notify_jfile_t    *f;
    ngx_graph_notify_queue_t    *q;
    ngx_graph_notify_journal_t  *j;
    time_t                       old;

    j = ngx_graph_notify_journal;
    q = j->queue;
    rc = NGX_OK;
    count = 0;
    old = 0;
    f = NULL;

    for (i = 0; i < NGX_GRAPH_NOTIFY_LANES; i++) {
        lists[i] = &q->sh->pending[i];
    }

    lists[i++] = &q->sh->inflight;
    lists[i] = &q->sh->staged;

    ngx_shmtx_lock(&q->shpool->mutex);

    for (i = 0; i < NGX_GRAPH_NOTIFY_LANES + 2; i++) {

        for (qe = ngx_queue_head(lists[i]);
             qe != ngx_queue_sentinel(lists[i]);
             qe = ngx_queue_next(qe))
        {
            item = ngx_queue_data(qe, ngx_graph_notify_item_t, queue);

            if (item->journal.zone == 0) {
                continue;
            }

            count++;

            if (old == 0 || item->received < old) {
                old = item->received;
            }

            if (f == NULL || f->zone != item->journal.zone
                || f->pid != item->journal.pid
                || f->file != item->journal.file)
            {
                f = ngx_graph_notify_journal_file(item->journal.zone,
                                                  item->journal.pid,
                                                  item->journal.file);
                if (f == NULL) {
                    /* a file newer than the listing: next time */
                    continue;
                }
            }

            if (pool == NULL) {
                seq = ngx_array_push(&f->inzone);

            } else {
                if (f->scan == NULL) {
                    f->scan = ngx_array_create(pool, 16, sizeof(uint64_t));
                    if (f->scan == NULL) {
                        rc = NGX_ERROR;
                        goto done;
                    }

                    f->scan_min = item->journal.off;
                }

                if (item->journal.off < f->scan_min) {
                    f->scan_min = item->journal.off;
                }

                seq = ngx_array_push(f->scan);
            }

            if (seq == NULL) {
                rc = NGX_ERROR;
                goto done;
            }

            *seq = item->journal.seq;
        }
    }

done:

    ngx_shmtx_unlock(&q->shpool->mutex);

    if (pending) {
        *pending = count;
    }

    if (oldest) {
        *oldest = old;
    }

    return rc;
}


static void
ngx_graph_notify_journal_closed(void)
{
    ngx_queue_t                 *qe, *qn;
    ngx_graph_notify_jfile_t    *f, *g;
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;

    /*
     * A file is closed once its writer is gone, or wrote a newer file: no
     * entry will be added to it, and a bad entry at its end is torn.
     */

    for (qe = ngx_queue_head(&j->files);
         qe != ngx_queue_sentinel(&j->files);
         qe = ngx_queue_next(qe))
    {
        f = ngx_queue_data(qe, ngx_graph_notify_jfile_t, link);

        if (f->closed) {
            continue;
        }

        if ((ngx_pid_t) f->pid != ngx_pid
            && kill((ngx_pid_t) f->pid, 0) == -1 && ngx_errno == NGX_ESRCH)
        {
            f->closed = 1;
            continue;
        }

        for (qn = ngx_queue_head(&j->files);
             qn != ngx_queue_sentinel(&j->files);
             qn = ngx_queue_next(qn))
        {
            g = ngx_queue_data(qn, ngx_graph_notify_jfile_t, link);

            if (g->zone == f->zone && g->pid == f->pid && g->file > f->file) {
                f->closed = 1;
                break;
            }
        }
    }
}


void
ngx_graph_notify_journal_recover(void)
{
    ngx_int_t                    rc;
    ngx_uint_t                   budget, backlog, unread, visited;
    ngx_queue_t                 *qe;
    ngx_graph_notify_jfile_t    *f;
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;

    if (j == NULL || !j->ready || !j->backlog) {
        return;
    }

    budget = NGX_GRAPH_NOTIFY_JOURNAL_BUDGET;
    backlog = 0;
    unread = 0;
    rc = NGX_OK;

    for (qe = ngx_queue_head(&j->files);
         qe != ngx_queue_sentinel(&j->files);
         qe = ngx_queue_next(qe))
    {
        f = ngx_queue_data(qe, ngx_graph_notify_jfile_t, link);

        if (f->own || f->finished) {
            continue;
        }

        visited = 0;

        if (rc != NGX_BUSY && rc != NGX_DONE) {
            if (f->unsorted) {
                ngx_graph_notify_journal_sort(&f->done);
                f->unsorted = 0;
            }

            rc = ngx_graph_notify_journal_file_recover(f, &budget);
            visited = 1;
        }

        if (!f->finished) {
            backlog++;

            /*
             * A file read to its end stays unfinished while its writer
             * lives, in case it adds entries; its items are back all the
             * same.
             */

            if (!visited || f->read < f->size) {
                unread++;
            }
        }
    }

    j->backlog = backlog;
    j->queue->sh->stats.journal_recovering = unread;

    if (j->recovered) {
        ngx_log_error(NGX_LOG_NOTICE, j->log, 0,
                      "graph_notify: %ui journaled item(s) queued again",
                      j->recovered);

        ngx_graph_notify_stat_add(j->queue, journal_recovered, j->recovered);
        j->recovered = 0;
        j->dirty = 1;

        ngx_graph_notify_helper_kick();
    }

    /* budget spent, not the zone's room: go on after the event loop */

    if (rc == NGX_DONE && !j->more.posted) {
        ngx_post_event(&j->more, &ngx_posted_events);
    }
}


static void
ngx_graph_notify_journal_more_handler(ngx_event_t *ev)
{
    ngx_graph_notify_journal_recover();
}


static ngx_int_t
ngx_graph_notify_journal_file_recover(ngx_graph_notify_jfile_t *f,
    ngx_uint_t *budget)
{
    u_char                      *p;
    ssize_t                      n;
    ngx_fd_t                     fd;
    ngx_int_t                    rc;
    ngx_file_info_t              fi;
    ngx_graph_notify_jentry_t    e;
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;

    fd = ngx_open_file(f->name, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                      "graph_notify: opening the journal \"%s\" failed",
                      f->name);
        return NGX_ERROR;
    }

    rc = NGX_OK;
    p = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        rc = NGX_ERROR;
        goto done;
    }

    f->size = ngx_file_size(&fi);

    while (f->read < f->size) {

        if ((*budget)-- == 0) {
            rc = NGX_DONE;
            goto done;
        }

        n = pread(fd, &e, sizeof(e), f->read);

        if (n != sizeof(e)
            || (e.magic != NGX_GRAPH_NOTIFY_JOURNAL_MAGIC
                && e.magic != NGX_GRAPH_NOTIFY_JOURNAL_MAGIC1)
            || (off_t) e.len > f->size - f->read - (off_t) sizeof(e))
        {
            goto torn;
        }

        p = ngx_alloc(e.len ? e.len : 1, j->log);
        if (p == NULL) {
            rc = NGX_ERROR;
            goto done;
        }

        n = pread(fd, p, e.len, f->read + sizeof(e));

        if (n != (ssize_t) e.len
            || e.crc != ngx_graph_notify_journal_entry_crc(e.magic, p, e.len))
        {
            ngx_free(p);
            p = NULL;
            goto torn;
        }

        rc = ngx_graph_notify_journal_entry(f, p, &e, f->read);

        ngx_free(p);
        p = NULL;

        if (rc == NGX_BUSY) {
            /* the zone is full: the rest when the helper made room */
            goto done;
        }

        if (rc == NGX_ERROR) {
            goto torn;
        }

        f->read += sizeof(e) + e.len;
        f->read_item = 0;
    }

    if (f->closed) {
        f->finished = 1;
    }

    goto done;

torn:

    /*
     * An entry cut short or damaged: a writer may still be writing it, or
     * a crash tore it.  Only at the end of a closed file is it given up.
     */

    if (f->closed) {
        ngx_log_error(NGX_LOG_ERR, j->log, 0,
                      "graph_notify: journal \"%s\": a torn entry at "
                      "offset %O (%O bytes) skipped, everything before it "
                      "recovered", f->name, f->read, f->size - f->read);

        ngx_graph_notify_stat_inc(j->queue, journal_torn);

        f->read = f->size;
        f->finished = 1;
        j->dirty = 1;
    }

    rc = NGX_OK;

done:

    (void) ngx_close_file(fd);

    return rc;
}


static ngx_int_t
ngx_graph_notify_journal_entry(ngx_graph_notify_jfile_t *f, u_char *p,
    ngx_graph_notify_jentry_t *e, off_t off)
{
    u_char                      *last;
    uint32_t                     tlen, i;
    uint64_t                     received;
    ngx_str_t                    tokens;
    ngx_graph_notify_entry_t     entry;
    ngx_graph_notify_jitem_t     ji;
    ngx_graph_notify_jref_t      jref;
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;
    last = p + e->len;

    if ((size_t) (last - p) < sizeof(uint64_t) + sizeof(uint32_t)) {
        return NGX_ERROR;
    }

    ngx_memcpy(&received, p, sizeof(uint64_t));
    p += sizeof(uint64_t);
    ngx_memcpy(&tlen, p, sizeof(uint32_t));
    p += sizeof(uint32_t);

    if ((size_t) (last - p) < tlen) {
        return NGX_ERROR;
    }

    tokens.data = p;
    tokens.len = tlen;
    p += tlen;

    jref.zone = f->zone;
    jref.pid = f->pid;
    jref.file = f->file;
    jref.off = off;

    for (i = 0; i < e->n; i++) {

        if ((size_t) (last - p) < sizeof(ngx_graph_notify_jitem_t)) {
            return NGX_ERROR;
        }

        ngx_memcpy(&ji, p, sizeof(ngx_graph_notify_jitem_t));
        p += sizeof(ngx_graph_notify_jitem_t);

        if ((size_t) (last - p)
            < (size_t) ji.line_len + ji.tenant_len + ji.record_len
            || ji.record_len > NGX_GRAPH_NOTIFY_RECORD_ID_MAX)
        {
            return NGX_ERROR;
        }

        entry.line.data = p;
        entry.line.len = ji.line_len;
        p += ji.line_len;
        entry.tenant.data = p;
        entry.tenant.len = ji.tenant_len;
        p += ji.tenant_len;
        entry.record.data = p;
        entry.record.len = ji.record_len;
        p += ji.record_len;
        entry.kind = ji.kind;

        if (i < f->read_item) {
            continue;
        }

        /* written already: before the checkpoint, or recorded done */

        if (off < f->ck_consumed
            || (off < f->ck_known
                && !ngx_graph_notify_journal_has(&f->pending, ji.seq))
            || ngx_graph_notify_journal_has(&f->done, ji.seq)
            || ngx_graph_notify_journal_has(&f->inzone, ji.seq))
        {
            continue;
        }

        jref.seq = ji.seq;

        if (ngx_graph_notify_queue_requeue(j->queue, &entry, &tokens, &jref,
                                           (time_t) received)
            != NGX_OK)
        {
            f->read_item = i;
            return NGX_BUSY;
        }

        j->recovered++;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_graph_notify_journal_has(ngx_array_t *a, uint64_t seq)
{
    uint64_t    *s;
    ngx_uint_t   lo, hi, mid;

    s = a->elts;
    lo = 0;
    hi = a->nelts;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (s[mid] == seq) {
            return 1;
        }

        if (s[mid] < seq) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return 0;
}


static int ngx_libc_cdecl
ngx_graph_notify_journal_cmp(const void *one, const void *two)
{
    uint64_t  a, b;

    a = *(const uint64_t *) one;
    b = *(const uint64_t *) two;

    return (a > b) - (a < b);
}


static void
ngx_graph_notify_journal_sort(ngx_array_t *a)
{
    if (a->nelts > 1) {
        ngx_qsort(a->elts, a->nelts, sizeof(uint64_t),
                  ngx_graph_notify_journal_cmp);
    }
}


void
ngx_graph_notify_journal_done(ngx_graph_notify_jref_t *jref)
{
    uint64_t                    *seq;
    ngx_graph_notify_jdone_t    *d;
    ngx_graph_notify_jfile_t    *f;
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;

    if (j == NULL || !j->ready || jref->zone == 0) {
        return;
    }

    if (j->ndone == NGX_GRAPH_NOTIFY_JOURNAL_DONE_MAX) {
        ngx_graph_notify_journal_flush();
    }

    d = &j->done[j->ndone++];

    d->zone = jref->zone;
    d->seq = jref->seq;
    d->pid = jref->pid;
    d->file = jref->file;

    /*
     * A recovered item of a file whose old checkpoint still stands: the
     * next checkpoint repeats the old one, so it carries this record.
     */

    if (jref->zone != j->queue->sh->zone_id) {
        f = ngx_graph_notify_journal_file(jref->zone, jref->pid, jref->file);

        if (f && f->read < f->ck_known) {
            seq = ngx_array_push(&f->done);
            if (seq) {
                *seq = jref->seq;
                f->unsorted = 1;
            }
        }
    }

    j->dirty = 1;

    /* written at the latest once the current event is handled */

    if (!j->flush.posted) {
        ngx_post_event(&j->flush, &ngx_posted_events);
    }
}


static void
ngx_graph_notify_journal_flush_handler(ngx_event_t *ev)
{
    ngx_graph_notify_journal_flush();
}


void
ngx_graph_notify_journal_flush(void)
{
    size_t                       len;
    ssize_t                      n;
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;

    if (j == NULL || j->ndone == 0) {
        return;
    }

    if (j->flush.posted) {
        ngx_delete_posted_event(&j->flush);
    }

    /*
     * The output reaches the disk before anything says it was written:
     * items are done only after the sync of their lines (the helper's
     * group commit, or the Graph client's write), so after a power cut an
     * item is written twice rather than never.
     */

    len = j->ndone * sizeof(ngx_graph_notify_jdone_t);
    n = write(j->done_fd, j->done, len);

    if (n > 0) {
        j->done_size += n;
    }

    if (n != (ssize_t) len && !j->failing) {
        ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                      "graph_notify: writing journal.done failed: items "
                      "written may be written again after a restart");
        j->failing = 1;
    }

    j->ndone = 0;

    /*
     * graph_notify_sync: the records reach the disk with the next sync of
     * the output, so that a power cut repeats at most the lines of the
     * last sync or so, not those since the kernel last wrote back.
     */

    if (j->gmcf->sync && n > 0) {
        ngx_graph_notify_journal_sync_done(j);
    }
}


/* the done log goes with the next sync of the output, or the one after */

static void
ngx_graph_notify_journal_sync_done(ngx_graph_notify_journal_t *j)
{
    if (j->done_queued) {
        j->done_again = 1;
        return;
    }

    j->done_queued = 1;
    ngx_graph_notify_commit(j->gmcf->output, &j->done_commit);
}


static void
ngx_graph_notify_journal_done_synced(ngx_graph_notify_commit_t *c,
    ngx_int_t rc)
{
    ngx_graph_notify_journal_t *j = c->data;

    /* records written after that sync began wait for one more */

    j->done_queued = 0;

    if (j->done_again) {
        j->done_again = 0;
        j->done_queued = 1;
        ngx_graph_notify_commit(j->gmcf->output, &j->done_commit);
    }
}


void
ngx_graph_notify_journal_poll(void)
{
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;

    if (j == NULL) {
        return;
    }

    if (!j->ready) {
        if (ngx_graph_notify_journal_open((ngx_cycle_t *) ngx_cycle, j->gmcf)
            != NGX_OK)
        {
            return;
        }

        ngx_log_error(NGX_LOG_NOTICE, j->log, 0,
                      "graph_notify: the journal is ours now");
    }

    ngx_graph_notify_journal_flush();

    (void) ngx_graph_notify_journal_list();
    ngx_graph_notify_journal_closed();

    if (j->backlog) {
        ngx_graph_notify_journal_recover();
    }

    ngx_graph_notify_journal_checkpoint();
}


/*
 * The checkpoint: per file, the offset below which every entry is
 * consumed (W), the offset up to which entries are accounted for (E), the
 * items between them still in the zone, and done records recovered beyond
 * E.  Entries past E are pending unless recorded done.  For a file of the
 * helper's zone, E is its size when the zone is looked at: any item
 * written before then is in the zone or done.
 */

static void
ngx_graph_notify_journal_checkpoint(void)
{
    u_char                      *buf, *p;
    size_t                       len;
    time_t                       oldest;
    uint32_t                     magic, crc;
    uint64_t                    *pend, *done;
    ngx_fd_t                     fd;
    ngx_uint_t                   pending, files;
    ngx_pool_t                  *pool;
    ngx_queue_t                 *qe, *next;
    ngx_file_info_t              fi;
    ngx_graph_notify_jfile_t    *f;
    ngx_graph_notify_jstate_t    st;
    ngx_graph_notify_journal_t  *j;
    off_t                        bytes, known, unread;
    u_char                       name[NGX_MAX_PATH], tmp[NGX_MAX_PATH];

    j = ngx_graph_notify_journal;

    pool = ngx_create_pool(4096, j->log);
    if (pool == NULL) {
        return;
    }

    bytes = 0;
    unread = 0;
    files = 0;

    for (qe = ngx_queue_head(&j->files);
         qe != ngx_queue_sentinel(&j->files);
         qe = ngx_queue_next(qe))
    {
        f = ngx_queue_data(qe, ngx_graph_notify_jfile_t, link);

        f->scan = NULL;

        if (ngx_file_info(f->name, &fi) == NGX_FILE_ERROR) {
            f->size = -1;
            continue;
        }

        f->size = ngx_file_size(&fi);
        bytes += f->size;
        files++;

        if (!f->own && !f->finished) {
            unread += f->size - f->read;
        }
    }

    if (ngx_graph_notify_journal_scan(pool, &pending, &oldest) != NGX_OK) {
        ngx_destroy_pool(pool);
        return;
    }

    j->queue->sh->stats.journal_bytes = (ngx_atomic_uint_t) bytes;
    j->queue->sh->stats.journal_files = files;
    j->queue->sh->stats.journal_pending = pending;
    j->queue->sh->stats.journal_oldest = oldest;
    j->queue->sh->stats.journal_unread = (ngx_atomic_uint_t) unread;

    if (!j->dirty || j->ck_step
        || (j->ck_failing && ngx_time() < j->ck_retry))
    {
        ngx_destroy_pool(pool);
        return;
    }

    /* files fully consumed whose writer is gone are removed first */

    for (qe = ngx_queue_head(&j->files);
         qe != ngx_queue_sentinel(&j->files);
         qe = next)
    {
        next = ngx_queue_next(qe);
        f = ngx_queue_data(qe, ngx_graph_notify_jfile_t, link);

        if (f->size == -1) {
            /* removed by someone else: nothing to recover from it */
            ngx_graph_notify_journal_free(f);
            continue;
        }

        if (!f->closed || f->scan
            || !(f->own || (f->finished && f->read >= f->size)))
        {
            continue;
        }

        if (ngx_delete_file(f->name) == NGX_FILE_ERROR
            && ngx_errno != NGX_ENOENT)
        {
            ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                          "graph_notify: removing the journal \"%s\" "
                          "failed", f->name);
            continue;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, j->log, 0,
                       "graph_notify: journal \"%s\" consumed", f->name);

        ngx_graph_notify_journal_free(f);
    }

    len = 2 * sizeof(uint32_t);

    for (qe = ngx_queue_head(&j->files);
         qe != ngx_queue_sentinel(&j->files);
         qe = ngx_queue_next(qe))
    {
        f = ngx_queue_data(qe, ngx_graph_notify_jfile_t, link);

        len += sizeof(ngx_graph_notify_jstate_t)
               + (f->pending.nelts + (f->scan ? f->scan->nelts : 0)
                  + f->done.nelts) * sizeof(uint64_t);
    }

    buf = ngx_pnalloc(pool, len);
    if (buf == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    magic = NGX_GRAPH_NOTIFY_STATE_MAGIC;
    p = ngx_cpymem(buf, &magic, sizeof(uint32_t));

    for (qe = ngx_queue_head(&j->files);
         qe != ngx_queue_sentinel(&j->files);
         qe = ngx_queue_next(qe))
    {
        f = ngx_queue_data(qe, ngx_graph_notify_jfile_t, link);

        st.zone = f->zone;
        st.pid = f->pid;
        st.file = f->file;
        st.ndone = 0;
        done = NULL;

        if (!f->own && f->read < f->ck_known) {

            /*
             * Recovery has not reached the end of the old checkpoint:
             * it stands, with the done records of this run added.
             */

            st.consumed = (uint64_t) f->ck_consumed;
            st.known = (uint64_t) f->ck_known;
            st.npending = (uint32_t) f->pending.nelts;
            pend = f->pending.elts;

        } else {
            known = f->own ? f->size : f->read;

            st.consumed = (uint64_t) known;
            st.known = (uint64_t) known;
            st.npending = 0;
            pend = NULL;

            if (f->scan) {
                if (f->scan_min < known) {
                    st.consumed = (uint64_t) f->scan_min;
                }

                st.npending = (uint32_t) f->scan->nelts;
                pend = f->scan->elts;
            }
        }

        if (!f->own) {
            st.ndone = (uint32_t) f->done.nelts;
            done = f->done.elts;
        }

        p = ngx_cpymem(p, &st, sizeof(ngx_graph_notify_jstate_t));

        if (st.npending) {
            p = ngx_cpymem(p, pend, st.npending * sizeof(uint64_t));
        }

        if (st.ndone) {
            p = ngx_cpymem(p, done, st.ndone * sizeof(uint64_t));
        }
    }

    crc = ngx_graph_notify_journal_crc(buf, p - buf);
    p = ngx_cpymem(p, &crc, sizeof(uint32_t));

    (void) ngx_sprintf(name, "%V/journal.state%Z", &j->dir);
    (void) ngx_sprintf(tmp, "%V/journal.state.tmp%Z", &j->dir);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE, 0600);

    if (fd == NGX_INVALID_FILE) {
        goto failed;
    }

    if (write(fd, buf, p - buf) != p - buf) {
        (void) ngx_close_file(fd);
        goto failed;
    }

    j->dirty = 0;

    if (j->gmcf->sync) {

        /*
         * The file on disk first, then the rename, then the directory:
         * the done log is cut only once the checkpoint that replaces it
         * survives a power cut (ngx_graph_notify_journal_state_synced()).
         */

        j->ck_step = 1;
        j->ck_done_size = j->done_size;

        ngx_graph_notify_commit_fd(fd, 0, j->log);
        ngx_graph_notify_commit(j->gmcf->output, &j->state_commit);

        ngx_destroy_pool(pool);

        return;
    }

    (void) ngx_close_file(fd);

    if (ngx_rename_file(tmp, name) == NGX_FILE_ERROR) {
        j->dirty = 1;
        goto failed;
    }

    /* everything the done log said is in the checkpoint now */

    ngx_graph_notify_journal_trim(j->done_size);

    ngx_graph_notify_stat_inc(j->queue, journal_checkpoints);

    ngx_destroy_pool(pool);

    return;

failed:

    ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                  "graph_notify: writing the checkpoint \"%s\" failed", tmp);

    ngx_destroy_pool(pool);
}


static void
ngx_graph_notify_journal_state_synced(ngx_graph_notify_commit_t *c,
    ngx_int_t rc)
{
    ngx_graph_notify_journal_t *j = c->data;

    ngx_fd_t  fd;
    u_char    name[NGX_MAX_PATH], tmp[NGX_MAX_PATH], dir[NGX_MAX_PATH];

    (void) ngx_sprintf(name, "%V/journal.state%Z", &j->dir);
    (void) ngx_sprintf(tmp, "%V/journal.state.tmp%Z", &j->dir);
    (void) ngx_sprintf(dir, "%V%Z", &j->dir);

    if (rc != NGX_OK) {
        ngx_set_errno(0);
        goto failed;
    }

    if (j->ck_step == 1) {

        /* the new checkpoint is on disk: it replaces the old one */

        if (ngx_rename_file(tmp, name) == NGX_FILE_ERROR) {
            goto failed;
        }

        fd = ngx_open_file(dir, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
        if (fd == NGX_INVALID_FILE) {
            goto failed;
        }

        j->ck_step = 2;

        ngx_graph_notify_commit_fd(fd, 1, j->log);
        ngx_graph_notify_commit(j->gmcf->output, &j->state_commit);

        return;
    }

    /* the rename is on disk: the done records it covers can go */

    j->ck_step = 0;

    ngx_graph_notify_journal_trim(j->ck_done_size);

    ngx_graph_notify_stat_inc(j->queue, journal_checkpoints);

    if (j->ck_failing) {
        j->ck_failing = 0;
        ngx_log_error(NGX_LOG_NOTICE, j->log, 0,
                      "graph_notify: the checkpoint \"%s\" is synced again",
                      name);
    }

    return;

failed:

    /*
     * Also when the output's sync fails (the same sync carries it): logged
     * once and tried again a minute later; meanwhile the old checkpoint
     * and the whole done log stand, which loses nothing.
     */

    if (!j->ck_failing) {
        j->ck_failing = 1;
        ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                      "graph_notify: syncing the checkpoint \"%s\" failed, "
                      "the previous one stands, next try in a minute", name);
    }

    j->ck_retry = ngx_time() + 60;

    j->ck_step = 0;
    j->dirty = 1;
}


/*
 * The done log without its first "from" bytes (a checkpoint covers them);
 * records written after the checkpoint was taken are written again.
 */

static void
ngx_graph_notify_journal_trim(off_t from)
{
    u_char                      *buf;
    size_t                       len;
    ssize_t                      n;
    ngx_graph_notify_journal_t  *j;

    j = ngx_graph_notify_journal;
    buf = NULL;
    len = 0;

    if (j->done_size > from) {
        len = (size_t) (j->done_size - from);

        buf = ngx_alloc(len, j->log);
        if (buf == NULL) {
            return;
        }

        if (pread(j->done_fd, buf, len, from) != (ssize_t) len) {
            /* kept whole: records already in the checkpoint do no harm */
            ngx_free(buf);
            return;
        }
    }

    if (ftruncate(j->done_fd, 0) == -1) {
        ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                      "graph_notify: truncating journal.done failed");
        ngx_free(buf);
        return;
    }

    j->done_size = 0;

    if (len == 0) {
        return;
    }

    n = write(j->done_fd, buf, len);

    if (n > 0) {
        j->done_size = n;
    }

    if (n != (ssize_t) len) {
        ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                      "graph_notify: writing journal.done failed: items "
                      "written may be written again after a restart");
    }

    ngx_free(buf);

    if (j->gmcf->sync && n > 0) {
        ngx_graph_notify_journal_sync_done(j);
    }
}


static void
ngx_graph_notify_journal_cleanup(void *data)
{
    ngx_graph_notify_journal_t *j = data;

    ngx_queue_t               *qe;
    ngx_graph_notify_jfile_t  *f;

    ngx_graph_notify_journal_flush();

    while (!ngx_queue_empty(&j->files)) {
        qe = ngx_queue_head(&j->files);
        f = ngx_queue_data(qe, ngx_graph_notify_jfile_t, link);
        ngx_graph_notify_journal_free(f);
    }

    /* a new cycle's journal has commits of its own */

    if (j->done_queued) {
        ngx_graph_notify_commit_cancel(&j->done_commit);
    }

    if (j->ck_step) {
        ngx_graph_notify_commit_cancel(&j->state_commit);
    }

    if (j->done_fd != NGX_INVALID_FILE) {
        ngx_graph_notify_commit_every(NGX_INVALID_FILE);
        (void) ngx_close_file(j->done_fd);
    }

    if (j->lock_fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(j->lock_fd);
    }

    if (j->flush.posted) {
        ngx_delete_posted_event(&j->flush);
    }

    if (j->more.posted) {
        ngx_delete_posted_event(&j->more);
    }

    ngx_graph_notify_journal = NULL;
}
