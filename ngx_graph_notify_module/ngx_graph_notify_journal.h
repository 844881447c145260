
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_JOURNAL_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_JOURNAL_H_INCLUDED_


#include "ngx_graph_notify.h"


/*
 * The journal: disk is the source of truth, the zone is the hand-off.
 *
 * Workers append every accepted batch, whole, to a journal file of their
 * own in the helper's directory before they answer 202 (the batches of
 * one turn of the event loop with one write()):
 * "journal.<zone id>.<pid>.<n>".  An entry is
 *
 *     magic, payload length, CRC of the payload, item count (4 x 32 bit)
 *     payload: received time (64 bit), validationTokens length (32 bit),
 *              the tokens once, then per item its journal sequence number,
 *              line, tenant and record-id lengths and kind, and the bytes.
 *
 * The magic "GNJ2" says the CRC is CRC-32C; entries of "GNJ1", written by
 * earlier versions, have zlib's CRC-32 and are read as well.
 *
 * The helper alone consumes journals (an flock on "journal.lock"):
 *
 *   - "journal.done" gets one record per item written (or dropped), right
 *     after the output write;
 *   - "journal.state" (written to a temporary file, then renamed) is the
 *     checkpoint: per journal file, the offset below which everything is
 *     consumed, the offset up to which entries are accounted for, the items
 *     still pending between the two, and done items recovered beyond them;
 *     the done log restarts empty after each checkpoint;
 *   - files of the helper's own zone need no recovery: their items are in
 *     the zone until written.  Files of any other zone (a crash, a zone
 *     resized or renamed, a binary upgrade) are read and every item not
 *     written yet is queued again, also while their writers still run;
 *   - fully consumed files whose writer is gone are removed.
 */


/*
 * worker: journal the batch and queue it, or nothing.  The batches of one
 * turn of the event loop are written together at its end, with one
 * write(): NGX_AGAIN, and handler(r, rc) is called then, rc NGX_OK (the
 * batch is journaled and queued) or NGX_DECLINED (the journal could not
 * take it: nothing kept); the caller keeps the request (r->main->count++)
 * until then.  At once: NGX_OK in a build without the journal's writes;
 * NGX_BUSY when the zone is full; NGX_ABORT when a tenant of the batch
 * holds its share of the zone while others wait; NGX_DECLINED when the
 * journal cannot be opened; NGX_ERROR.  All but NGX_OK and NGX_AGAIN keep
 * nothing.
 */
typedef void (*ngx_graph_notify_journal_synced_pt)(ngx_http_request_t *r,
    ngx_int_t rc);

ngx_int_t ngx_graph_notify_journal_append(ngx_http_request_t *r,
    ngx_graph_notify_entry_t *entries, ngx_uint_t n, ngx_str_t *tokens,
    ngx_graph_notify_journal_synced_pt handler);

/*
 * worker, after a successful append: NGX_OK when there is nothing to wait
 * for (graph_notify_sync off), NGX_AGAIN when handler(r, rc) will be called
 * once the journal is on disk (rc NGX_OK) or could not be (NGX_ERROR):
 * the caller keeps the request (r->main->count++) and answers then.
 */
ngx_int_t ngx_graph_notify_journal_sync(ngx_http_request_t *r,
    ngx_graph_notify_journal_synced_pt handler);

/* helper: take the lock and recover; NGX_AGAIN while another holds it */
ngx_int_t ngx_graph_notify_journal_open(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf);
ngx_uint_t ngx_graph_notify_journal_ready(void);

/* helper: recovery, checkpoint and clean-up, on the helper's poll */
void ngx_graph_notify_journal_poll(void);

/* helper: queue more recovered items if the zone has room */
void ngx_graph_notify_journal_recover(void);

/* helper: an item left the queue for good (called by queue_done) */
void ngx_graph_notify_journal_done(ngx_graph_notify_jref_t *jref);

/* helper: write the done records of the items just written */
void ngx_graph_notify_journal_flush(void);


#endif /* _NGX_GRAPH_NOTIFY_JOURNAL_H_INCLUDED_ */
