
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"
#include "ngx_graph_notify_subscription_status.h"
#include "ngx_graph_notify_jwt.h"


typedef struct {
    ngx_graph_notify_stats_t    stats;
    ngx_uint_t                  pending;
    ngx_uint_t                  inflight;
    size_t                      bytes;
    size_t                      zone_size;
    size_t                      zone_free;
    ngx_uint_t                  max_items;
    ngx_uint_t                  lanes[NGX_GRAPH_NOTIFY_LANES];
    ngx_uint_t                  tenants;
    ngx_uint_t                  sync;
    time_t                      now;
    u_char                      token_error[160];
    u_char                      jwt_error[120];
} ngx_graph_notify_snapshot_t;


static void ngx_graph_notify_snapshot(ngx_graph_notify_queue_t *q,
    ngx_shm_zone_t *zone, ngx_graph_notify_snapshot_t *s);
static u_char *ngx_graph_notify_status_json(u_char *p, u_char *last,
    ngx_graph_notify_snapshot_t *s);
static u_char *ngx_graph_notify_status_prometheus(u_char *p, u_char *last,
    ngx_graph_notify_snapshot_t *s);
static u_char *ngx_graph_notify_status_jwt_json(u_char *p, u_char *last,
    ngx_graph_notify_snapshot_t *s);
static u_char *ngx_graph_notify_status_jwt_prometheus(u_char *p,
    u_char *last, ngx_graph_notify_snapshot_t *s);
static u_char *ngx_graph_notify_status_key_id(u_char *p, u_char *last,
    ngx_graph_notify_snapshot_t *s, ngx_uint_t i);


/*
 * The fixed lines (the Prometheus page's are about 11.5K), then a line of
 * each decryption key shown, its id included.
 */
#define NGX_GRAPH_NOTIFY_STATUS_SIZE                                         \
    (16384 + NGX_GRAPH_NOTIFY_KEYS_USED * (NGX_GRAPH_NOTIFY_KEY_ID_MAX + 128))


ngx_int_t
ngx_graph_notify_status_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_str_t                      format;
    ngx_buf_t                     *b;
    ngx_uint_t                     prometheus;
    ngx_chain_t                    out;
    ngx_graph_notify_snapshot_t    s;
    ngx_graph_notify_main_conf_t  *gmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    prometheus = 0;

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK) {
        if (format.len == 10
            && ngx_strncmp(format.data, "prometheus", 10) == 0)
        {
            prometheus = 1;

        } else if (format.len != 4
                   || ngx_strncmp(format.data, "json", 4) != 0)
        {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "graph_notify: unknown status format, "
                          "use \"json\" or \"prometheus\"");
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_graph_notify_module);

    ngx_graph_notify_snapshot(gmcf->shm_zone->data, gmcf->shm_zone, &s);
    s.max_items = gmcf->max_items;
    s.sync = gmcf->sync;

    b = ngx_create_temp_buf(r->pool, NGX_GRAPH_NOTIFY_STATUS_SIZE
                        + ngx_graph_notify_subscription_status_size(gmcf));
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (prometheus) {
        b->last = ngx_graph_notify_status_prometheus(b->pos, b->end, &s);
        b->last = ngx_graph_notify_subscription_status_prometheus(gmcf,
                                                                  b->last,
                                                                  b->end);
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4; charset=utf-8");

    } else {
        b->last = ngx_graph_notify_status_json(b->pos, b->end, &s);
        b->last = ngx_graph_notify_subscription_status_json(gmcf, b->last,
                                                            b->end);
        b->last = ngx_slprintf(b->last, b->end, "}\n");
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}


static void
ngx_graph_notify_snapshot(ngx_graph_notify_queue_t *q, ngx_shm_zone_t *zone,
    ngx_graph_notify_snapshot_t *s)
{
    u_char        c;
    ngx_uint_t    i;
    ngx_queue_t  *qe;

    ngx_memzero(s, sizeof(ngx_graph_notify_snapshot_t));

    ngx_shmtx_lock(&q->shpool->mutex);

    s->stats = q->sh->stats;
    s->bytes = q->sh->bytes;

    for (qe = ngx_queue_head(&q->sh->inflight);
         qe != ngx_queue_sentinel(&q->sh->inflight);
         qe = ngx_queue_next(qe))
    {
        s->inflight++;
    }

    s->pending = q->sh->count - s->inflight;

    for (i = 0; i < NGX_GRAPH_NOTIFY_LANES; i++) {
        s->lanes[i] = q->sh->lane_count[i];
    }

    s->tenants = q->sh->tenants;

    /* whole free pages: what the queue can still take, and (by the
     * difference) what a queued item costs in the zone */
    s->zone_free = q->shpool->pfree << ngx_pagesize_shift;

    ngx_shmtx_unlock(&q->shpool->mutex);

    /* from the identity platform's answer: only the safe characters */

    for (i = 0; i < sizeof(s->token_error) - 1; i++) {
        c = s->stats.token_error[i];

        if (c == '\0') {
            break;
        }

        s->token_error[i] = (isalnum(c) || c == ' ' || c == '_' || c == '-'
                             || c == '.' || c == ':' || c == '(' || c == ')')
                            ? c : '?';
    }

    s->token_error[i] = '\0';

    /* written sanitized by the helper; cut here for a torn read */

    ngx_memcpy(s->jwt_error, s->stats.jwt_error, sizeof(s->jwt_error));
    s->jwt_error[sizeof(s->jwt_error) - 1] = '\0';

    s->zone_size = zone->shm.size;
    s->now = ngx_time();
}


static u_char *
ngx_graph_notify_status_json(u_char *p, u_char *last,
    ngx_graph_notify_snapshot_t *s)
{
    ngx_uint_t                 i, failures;
    ngx_graph_notify_stats_t  *st;

    st = &s->stats;

    failures = 0;

    for (i = NGX_GRAPH_NOTIFY_DROP_CRYPTO; i < NGX_GRAPH_NOTIFY_DROP_N; i++) {
        failures += st->dropped[i];
    }

    p = ngx_slprintf(p, last,
                     "{\"version\":\"" NGX_GRAPH_NOTIFY_VERSION "\","
                     "\"requests\":%uA,\"handshakes\":%uA,"
                     "\"rejected\":%uA,\"queueFull\":%uA,"
                     "\"items\":{\"received\":%uA,\"accepted\":%uA,"
                     "\"written\":%uA,\"decryptFailures\":%ui,"
                     "\"dropped\":{",
                     st->requests, st->handshakes, st->rejected,
                     st->queue_full, st->items_received,
                     st->items_accepted, st->items_written, failures);

    for (i = 0; i < NGX_GRAPH_NOTIFY_DROP_N; i++) {
        p = ngx_slprintf(p, last, "%s\"%V\":%uA", i ? "," : "",
                         &ngx_graph_notify_drop_names[i], st->dropped[i]);
    }

    p = ngx_slprintf(p, last,
                     "}},\"queue\":{\"items\":%ui,\"pending\":%ui,"
                     "\"inflight\":%ui,\"bytes\":%uz,\"maxItems\":%ui,"
                     "\"zoneSize\":%uz,\"zoneFree\":%uz,\"lanes\":{\"write\":%ui,"
                     "\"record\":%ui},\"tenants\":%ui,"
                     "\"shareRefused\":%uA},"
                     "\"helper\":{\"pid\":%uA,\"starts\":%uA,"
                     "\"heartbeatAge\":%T,\"leaseReclaims\":%uA,"
                     "\"outputErrors\":%uA,\"outputSyncs\":%uA},",
                     s->pending + s->inflight, s->pending, s->inflight,
                     s->bytes, s->max_items, s->zone_size, s->zone_free,
                     s->lanes[NGX_GRAPH_NOTIFY_LANE_WRITE],
                     s->lanes[NGX_GRAPH_NOTIFY_LANE_RECORD],
                     s->tenants, st->share_refused,
                     st->helper_pid, st->helper_starts,
                     st->helper_heartbeat
                         ? s->now - (time_t) st->helper_heartbeat : -1,
                     st->lease_reclaims, st->output_errors,
                     st->output_syncs);

    p = ngx_slprintf(p, last,
                     "\"graph\":{\"enabled\":%s,\"failing\":%s,"
                     "\"error\":\"%s\",\"requests\":%uA,"
                     "\"running\":%uA,\"tenantPauses\":%uA,",
                     st->graph_enabled ? "true" : "false",
                     st->graph_failing ? "true" : "false",
                     st->graph_failing ? st->graph_error : (u_char *) "",
                     st->graph_requests, st->requests_running,
                     st->tenant_pauses);

    /* tenant ids are GUIDs, checked before the helper keeps them */

    p = ngx_slprintf(p, last,
                     "\"tenants\":{\"known\":%uA,\"noToken\":%uA,"
                     "\"paused\":%uA,\"shown\":[",
                     st->tenants, st->tenants_no_token, st->tenants_paused);

    for (i = 0; i < st->tenant_views && i < NGX_GRAPH_NOTIFY_TENANT_VIEWS;
         i++)
    {
        p = ngx_slprintf(p, last,
                         "%s{\"id\":\"%s\",\"state\":\"%s\","
                         "\"records\":%ui,\"backlog\":%ui}",
                         i ? "," : "", st->tenant_view[i].id,
                         st->tenant_view[i].state
                             == NGX_GRAPH_NOTIFY_TENANT_PAUSED ? "paused"
                         : st->tenant_view[i].state
                             == NGX_GRAPH_NOTIFY_TENANT_NO_TOKEN ? "no_token"
                         : "ok",
                         st->tenant_view[i].records,
                         st->tenant_view[i].backlog);
    }

    p = ngx_slprintf(p, last, "]},\"answers\":{");

    for (i = 0; i < NGX_GRAPH_NOTIFY_ANSWER_N; i++) {
        p = ngx_slprintf(p, last, "%s\"%V\":%uA", i ? "," : "",
                         &ngx_graph_notify_answer_names[i],
                         st->graph_answers[i]);
    }

    p = ngx_slprintf(p, last,
                     "},\"token\":{\"requests\":%uA,\"failures\":%uA,"
                     "\"failing\":%s,\"lastError\":\"%s\","
                     "\"expiresIn\":%T}},",
                     st->token_requests, st->token_failures,
                     st->token_failing ? "true" : "false", s->token_error,
                     st->token_expires_at
                         ? (time_t) st->token_expires_at - s->now : -1);

    p = ngx_slprintf(p, last,
                     "\"callRecords\":{\"written\":%uA,\"unchanged\":%uA,"
                     "\"staleReads\":%uA,"
                     "\"coalesced\":%uA,\"active\":%uA,\"waiting\":%uA,"
                     "\"backlog\":%uA,\"dropped\":{",
                     st->records_written, st->records_unchanged,
                     st->records_stale,
                     st->records_coalesced, st->records_active,
                     st->records_waiting, st->records_backlog);

    for (i = 0; i < NGX_GRAPH_NOTIFY_RECORD_N; i++) {
        p = ngx_slprintf(p, last, "%s\"%V\":%uA", i ? "," : "",
                         &ngx_graph_notify_record_drop_names[i],
                         st->records_dropped[i]);
    }

    p = ngx_slprintf(p, last, "}},");

    p = ngx_slprintf(p, last,
                     "\"journal\":{\"sync\":%s,\"bytes\":%uA,"
                     "\"files\":%uA,\"pending\":%uA,"
                     "\"oldestPendingAge\":%T,\"unreadBytes\":%uA,"
                     "\"appends\":%uA,\"writes\":%uA,\"failures\":%uA,"
                     "\"recoveries\":%uA,\"recovered\":%uA,\"torn\":%uA,"
                     "\"checkpoints\":%uA,\"fsyncs\":%uA,"
                     "\"fsyncRequests\":%uA,\"fsyncGroupMax\":%uA,"
                     "\"recovering\":%s}",
                     s->sync ? "true" : "false",
                     st->journal_bytes, st->journal_files,
                     st->journal_pending,
                     st->journal_oldest
                         ? s->now - (time_t) st->journal_oldest : 0,
                     st->journal_unread, st->journal_appends,
                     st->journal_writes, st->journal_failures,
                     st->journal_recoveries, st->journal_recovered,
                     st->journal_torn,
                     st->journal_checkpoints, st->journal_fsyncs,
                     st->journal_fsync_requests,
                     st->journal_fsync_group_max,
                     st->journal_recovering ? "true" : "false");

    return ngx_graph_notify_status_jwt_json(p, last, s);
}


static u_char *
ngx_graph_notify_metric(u_char *p, u_char *last, const char *name,
    const char *type, const char *help)
{
    return ngx_slprintf(p, last, "# HELP graph_notify_%s %s\n"
                                 "# TYPE graph_notify_%s %s\n",
                        name, help, name, type);
}


static u_char *
ngx_graph_notify_status_prometheus(u_char *p, u_char *last,
    ngx_graph_notify_snapshot_t *s)
{
    ngx_uint_t                 i;
    ngx_graph_notify_stats_t  *st;

    st = &s->stats;

    p = ngx_graph_notify_metric(p, last, "requests_total", "counter",
                                "Notification POSTs received.");
    p = ngx_slprintf(p, last, "graph_notify_requests_total %uA\n",
                     st->requests);

    p = ngx_graph_notify_metric(p, last, "handshakes_total", "counter",
                                "Validation handshakes answered.");
    p = ngx_slprintf(p, last, "graph_notify_handshakes_total %uA\n",
                     st->handshakes);

    p = ngx_graph_notify_metric(p, last, "rejected_total", "counter",
                                "Requests answered with a 4xx status.");
    p = ngx_slprintf(p, last, "graph_notify_rejected_total %uA\n",
                     st->rejected);

    p = ngx_graph_notify_metric(p, last, "queue_full_total", "counter",
                                "Requests answered 503 as the queue was "
                                "full.");
    p = ngx_slprintf(p, last, "graph_notify_queue_full_total %uA\n",
                     st->queue_full);

    p = ngx_graph_notify_metric(p, last, "items_received_total", "counter",
                                "Notification items received.");
    p = ngx_slprintf(p, last, "graph_notify_items_received_total %uA\n",
                     st->items_received);

    p = ngx_graph_notify_metric(p, last, "items_accepted_total", "counter",
                                "Notification items queued.");
    p = ngx_slprintf(p, last, "graph_notify_items_accepted_total %uA\n",
                     st->items_accepted);

    p = ngx_graph_notify_metric(p, last, "items_written_total", "counter",
                                "Items written to the output.");
    p = ngx_slprintf(p, last, "graph_notify_items_written_total %uA\n",
                     st->items_written);

    p = ngx_graph_notify_metric(p, last, "items_dropped_total", "counter",
                                "Items dropped, by reason.");

    for (i = 0; i < NGX_GRAPH_NOTIFY_DROP_N; i++) {
        p = ngx_slprintf(p, last,
                         "graph_notify_items_dropped_total{reason=\"%V\"} "
                         "%uA\n", &ngx_graph_notify_drop_names[i],
                         st->dropped[i]);
    }

    p = ngx_graph_notify_metric(p, last, "queue_items", "gauge",
                                "Items in the queue, by state.");
    p = ngx_slprintf(p, last,
                     "graph_notify_queue_items{state=\"pending\"} %ui\n"
                     "graph_notify_queue_items{state=\"inflight\"} %ui\n",
                     s->pending, s->inflight);

    p = ngx_graph_notify_metric(p, last, "queue_bytes", "gauge",
                                "Bytes of queued items.");
    p = ngx_slprintf(p, last, "graph_notify_queue_bytes %uz\n", s->bytes);

    p = ngx_graph_notify_metric(p, last, "zone_size_bytes", "gauge",
                                "Size of the zone, in bytes.");
    p = ngx_slprintf(p, last, "graph_notify_zone_size_bytes %uz\n",
                     s->zone_size);

    p = ngx_graph_notify_metric(p, last, "zone_free_bytes", "gauge",
                                "Free whole pages of the zone, in bytes.");
    p = ngx_slprintf(p, last, "graph_notify_zone_free_bytes %uz\n",
                     s->zone_free);

    p = ngx_graph_notify_metric(p, last, "queue_max_items", "gauge",
                                "Item capacity of the queue.");
    p = ngx_slprintf(p, last, "graph_notify_queue_max_items %ui\n",
                     s->max_items);

    p = ngx_graph_notify_metric(p, last, "output_errors_total", "counter",
                                "Failed writes to the output.");
    p = ngx_slprintf(p, last, "graph_notify_output_errors_total %uA\n",
                     st->output_errors);

    p = ngx_graph_notify_metric(p, last, "output_syncs_total", "counter",
                                "Syncs of the output begun (group commit).");
    p = ngx_slprintf(p, last, "graph_notify_output_syncs_total %uA\n",
                     st->output_syncs);

    p = ngx_graph_notify_metric(p, last, "lease_reclaims_total", "counter",
                                "Items taken back from a helper that "
                                "stopped.");
    p = ngx_slprintf(p, last, "graph_notify_lease_reclaims_total %uA\n",
                     st->lease_reclaims);

    p = ngx_graph_notify_metric(p, last, "helper_starts_total", "counter",
                                "Helper process starts.");
    p = ngx_slprintf(p, last, "graph_notify_helper_starts_total %uA\n",
                     st->helper_starts);

    p = ngx_graph_notify_metric(p, last, "helper_heartbeat_seconds",
                                "gauge", "Unix time of the helper's last "
                                "heartbeat.");
    p = ngx_slprintf(p, last, "graph_notify_helper_heartbeat_seconds %uA\n",
                     st->helper_heartbeat);

    p = ngx_graph_notify_metric(p, last, "graph_requests_total", "counter",
                                "Requests sent to Graph.");
    p = ngx_slprintf(p, last, "graph_notify_graph_requests_total %uA\n",
                     st->graph_requests);

    p = ngx_graph_notify_metric(p, last, "graph_answers_total", "counter",
                                "Graph's answers, by kind.");

    for (i = 0; i < NGX_GRAPH_NOTIFY_ANSWER_N; i++) {
        p = ngx_slprintf(p, last,
                         "graph_notify_graph_answers_total{answer=\"%V\"} "
                         "%uA\n", &ngx_graph_notify_answer_names[i],
                         st->graph_answers[i]);
    }

    p = ngx_graph_notify_metric(p, last, "graph_requests_running", "gauge",
                                "Requests to Graph in flight.");
    p = ngx_slprintf(p, last, "graph_notify_graph_requests_running %uA\n",
                     st->requests_running);

    p = ngx_graph_notify_metric(p, last, "tenant_pauses_total", "counter",
                                "Pauses of a tenant after throttling.");
    p = ngx_slprintf(p, last, "graph_notify_tenant_pauses_total %uA\n",
                     st->tenant_pauses);

    p = ngx_graph_notify_metric(p, last, "token_requests_total", "counter",
                                "App-only token requests.");
    p = ngx_slprintf(p, last, "graph_notify_token_requests_total %uA\n",
                     st->token_requests);

    p = ngx_graph_notify_metric(p, last, "token_failures_total", "counter",
                                "Failed app-only token requests.");
    p = ngx_slprintf(p, last, "graph_notify_token_failures_total %uA\n",
                     st->token_failures);

    p = ngx_graph_notify_metric(p, last, "token_failing", "gauge",
                                "1 while the last token request failed.");
    p = ngx_slprintf(p, last, "graph_notify_token_failing %uA\n",
                     st->token_failing);

    p = ngx_graph_notify_metric(p, last, "call_records_total", "counter",
                                "Call records fetched, by outcome.");
    p = ngx_slprintf(p, last,
                     "graph_notify_call_records_total{outcome=\"written\"} "
                     "%uA\n"
                     "graph_notify_call_records_total{outcome=\"unchanged\"} "
                     "%uA\n",
                     st->records_written, st->records_unchanged);

    for (i = 0; i < NGX_GRAPH_NOTIFY_RECORD_N; i++) {
        p = ngx_slprintf(p, last,
                         "graph_notify_call_records_total{outcome=\"dropped\","
                         "reason=\"%V\"} %uA\n",
                         &ngx_graph_notify_record_drop_names[i],
                         st->records_dropped[i]);
    }

    p = ngx_graph_notify_metric(p, last, "notifications_coalesced_total",
                                "counter", "Call-record notifications "
                                "answered by a shared fetch.");
    p = ngx_slprintf(p, last,
                     "graph_notify_notifications_coalesced_total %uA\n",
                     st->records_coalesced);

    p = ngx_graph_notify_metric(p, last, "call_records_active", "gauge",
                                "Call records being fetched or waiting.");
    p = ngx_slprintf(p, last,
                     "graph_notify_call_records_active %uA\n"
                     "graph_notify_call_records_waiting %uA\n",
                     st->records_active, st->records_waiting);

    p = ngx_graph_notify_metric(p, last, "queue_lane_items", "gauge",
                                "Pending items, by lane.");
    p = ngx_slprintf(p, last,
                     "graph_notify_queue_lane_items{lane=\"write\"} %ui\n"
                     "graph_notify_queue_lane_items{lane=\"record\"} %ui\n",
                     s->lanes[NGX_GRAPH_NOTIFY_LANE_WRITE],
                     s->lanes[NGX_GRAPH_NOTIFY_LANE_RECORD]);

    p = ngx_graph_notify_metric(p, last, "share_refused_total", "counter",
                                "Batches refused with 503 as their tenant "
                                "held its share of the queue.");
    p = ngx_slprintf(p, last, "graph_notify_share_refused_total %uA\n",
                     st->share_refused);

    p = ngx_graph_notify_metric(p, last, "journal_bytes", "gauge",
                                "Bytes of journal files on disk.");
    p = ngx_slprintf(p, last, "graph_notify_journal_bytes %uA\n",
                     st->journal_bytes);

    p = ngx_graph_notify_metric(p, last, "journal_pending", "gauge",
                                "Journaled items not written yet.");
    p = ngx_slprintf(p, last, "graph_notify_journal_pending %uA\n",
                     st->journal_pending);

    p = ngx_graph_notify_metric(p, last, "journal_oldest_pending_seconds",
                                "gauge", "Age of the oldest journaled item "
                                "not written yet.");
    p = ngx_slprintf(p, last,
                     "graph_notify_journal_oldest_pending_seconds %T\n",
                     st->journal_oldest
                         ? s->now - (time_t) st->journal_oldest : 0);

    p = ngx_graph_notify_metric(p, last, "journal_unread_bytes", "gauge",
                                "Bytes of journals being recovered, not "
                                "read yet.");
    p = ngx_slprintf(p, last, "graph_notify_journal_unread_bytes %uA\n",
                     st->journal_unread);

    p = ngx_graph_notify_metric(p, last, "journal_appends_total", "counter",
                                "Batches journaled.");
    p = ngx_slprintf(p, last, "graph_notify_journal_appends_total %uA\n",
                     st->journal_appends);

    p = ngx_graph_notify_metric(p, last, "journal_writes_total", "counter",
                                "write() calls to journals: the batches of "
                                "one turn of a worker's loop take one.");
    p = ngx_slprintf(p, last, "graph_notify_journal_writes_total %uA\n",
                     st->journal_writes);

    p = ngx_graph_notify_metric(p, last, "journal_failures_total", "counter",
                                "Batches refused with 503 as the journal "
                                "could not be written.");
    p = ngx_slprintf(p, last, "graph_notify_journal_failures_total %uA\n",
                     st->journal_failures);

    p = ngx_graph_notify_metric(p, last, "journal_recoveries_total",
                                "counter", "Helper starts that recovered "
                                "journals of another zone.");
    p = ngx_slprintf(p, last, "graph_notify_journal_recoveries_total %uA\n",
                     st->journal_recoveries);

    p = ngx_graph_notify_metric(p, last, "journal_recovered_total",
                                "counter", "Items queued again from "
                                "journals.");
    p = ngx_slprintf(p, last, "graph_notify_journal_recovered_total %uA\n",
                     st->journal_recovered);

    p = ngx_graph_notify_metric(p, last, "journal_recovering", "gauge",
                                "1 while the helper reads journals of a "
                                "previous run back into the queue.");
    p = ngx_slprintf(p, last, "graph_notify_journal_recovering %d\n",
                     st->journal_recovering ? 1 : 0);

    p = ngx_graph_notify_metric(p, last, "journal_torn_total", "counter",
                                "Torn journal entries skipped.");
    p = ngx_slprintf(p, last, "graph_notify_journal_torn_total %uA\n",
                     st->journal_torn);

    p = ngx_graph_notify_metric(p, last, "journal_fsyncs_total", "counter",
                                "Journal fsyncs (graph_notify_sync on).");
    p = ngx_slprintf(p, last, "graph_notify_journal_fsyncs_total %uA\n",
                     st->journal_fsyncs);

    p = ngx_graph_notify_metric(p, last, "journal_fsync_requests_total",
                                "counter", "Requests answered after a "
                                "journal fsync; divided by fsyncs, the "
                                "group size.");
    p = ngx_slprintf(p, last,
                     "graph_notify_journal_fsync_requests_total %uA\n",
                     st->journal_fsync_requests);

    p = ngx_graph_notify_metric(p, last, "journal_fsync_group_max", "gauge",
                                "The largest fsync group.");
    p = ngx_slprintf(p, last, "graph_notify_journal_fsync_group_max %uA\n",
                     st->journal_fsync_group_max);

    p = ngx_graph_notify_metric(p, last, "call_record_backlog", "gauge",
                                "Call-record notifications waiting for "
                                "their tenant's turn.");
    p = ngx_slprintf(p, last, "graph_notify_call_record_backlog %uA\n",
                     st->records_backlog);

    p = ngx_graph_notify_metric(p, last, "call_record_stale_reads_total",
                                "counter", "Fetches asked again after "
                                "\"updated\" returned a written version.");
    p = ngx_slprintf(p, last,
                     "graph_notify_call_record_stale_reads_total %uA\n",
                     st->records_stale);

    p = ngx_graph_notify_metric(p, last, "tenants", "gauge",
                                "Tenants of the Graph client, by state.");
    p = ngx_slprintf(p, last,
                     "graph_notify_tenants{state=\"known\"} %uA\n"
                     "graph_notify_tenants{state=\"no_token\"} %uA\n"
                     "graph_notify_tenants{state=\"paused\"} %uA\n",
                     st->tenants, st->tenants_no_token, st->tenants_paused);

    p = ngx_graph_notify_metric(p, last, "graph_client_failing", "gauge",
                                "1 while the Graph client cannot start.");
    p = ngx_slprintf(p, last, "graph_notify_graph_client_failing %uA\n",
                     st->graph_failing);

    return ngx_graph_notify_status_jwt_prometheus(p, last, s);
}


static u_char *
ngx_graph_notify_status_jwt_json(u_char *p, u_char *last,
    ngx_graph_notify_snapshot_t *s)
{
    ngx_uint_t                 i, n;
    ngx_graph_notify_stats_t  *st;

    st = &s->stats;

    p = ngx_slprintf(p, last,
                     ",\"validationTokens\":{\"enabled\":%s,"
                     "\"batches\":%uA,\"valid\":%uA,\"waiting\":%uA,"
                     "\"keys\":%uA,\"keysAge\":%T,\"fetches\":%uA,"
                     "\"fetchFailures\":%uA,\"lastError\":\"%s\","
                     "\"dropped\":{",
                     st->jwt_enabled ? "true" : "false",
                     st->jwt_batches, st->jwt_valid, st->jwt_waiting,
                     st->jwt_keys,
                     st->jwt_fetched_at
                         ? s->now - (time_t) st->jwt_fetched_at : -1,
                     st->jwt_fetches, st->jwt_fetch_failures,
                     s->jwt_error);

    for (i = 0; i < NGX_GRAPH_NOTIFY_JWT_N; i++) {
        p = ngx_slprintf(p, last, "%s\"%V\":%uA", i ? "," : "",
                         &ngx_graph_notify_jwt_reason_names[i],
                         st->jwt_dropped[i]);
    }

    p = ngx_slprintf(p, last, "}},\"decryptionKeys\":[");

    n = 0;

    for (i = 0; i < NGX_GRAPH_NOTIFY_KEYS_USED; i++) {
        if (st->keys_used[i].state != 2) {
            continue;
        }

        p = ngx_slprintf(p, last, "%s{\"id\":\"", n++ ? "," : "");
        p = ngx_graph_notify_status_key_id(p, last, s, i);
        p = ngx_slprintf(p, last, "\",\"lastDecrypt\":%uA,"
                         "\"lastDecryptAge\":%T}",
                         st->keys_used[i].last,
                         s->now - (time_t) st->keys_used[i].last);
    }

    return ngx_slprintf(p, last, "]");
}


static u_char *
ngx_graph_notify_status_key_id(u_char *p, u_char *last,
    ngx_graph_notify_snapshot_t *s, ngx_uint_t i)
{
    u_char      c;
    ngx_uint_t  k, len;

    /* ids come from nginx.conf; quotes and the like are shown as "?" */

    len = ngx_min(s->stats.keys_used[i].len, NGX_GRAPH_NOTIFY_KEY_ID_MAX);

    for (k = 0; k < len && p < last; k++) {
        c = s->stats.keys_used[i].id[k];
        *p++ = (c > 0x20 && c < 0x7f && c != '"' && c != '\\') ? c : '?';
    }

    return p;
}


static u_char *
ngx_graph_notify_status_jwt_prometheus(u_char *p, u_char *last,
    ngx_graph_notify_snapshot_t *s)
{
    ngx_uint_t                 i;
    ngx_graph_notify_stats_t  *st;

    st = &s->stats;

    p = ngx_graph_notify_metric(p, last, "validation_batches_total",
                                "counter", "Batches whose validation "
                                "tokens were checked, by outcome.");
    p = ngx_slprintf(p, last,
                     "graph_notify_validation_batches_total"
                     "{outcome=\"valid\"} %uA\n"
                     "graph_notify_validation_batches_total"
                     "{outcome=\"checked\"} %uA\n",
                     st->jwt_valid, st->jwt_batches);

    p = ngx_graph_notify_metric(p, last, "validation_dropped_total",
                                "counter", "Items dropped as their validation "
                                "tokens were refused, by reason.");

    for (i = 0; i < NGX_GRAPH_NOTIFY_JWT_N; i++) {
        p = ngx_slprintf(p, last,
                         "graph_notify_validation_dropped_total"
                         "{reason=\"%V\"} %uA\n",
                         &ngx_graph_notify_jwt_reason_names[i],
                         st->jwt_dropped[i]);
    }

    p = ngx_graph_notify_metric(p, last, "validation_waiting", "gauge",
                                "Rich items waiting for the key set.");
    p = ngx_slprintf(p, last, "graph_notify_validation_waiting %uA\n",
                     st->jwt_waiting);

    p = ngx_graph_notify_metric(p, last, "validation_keys", "gauge",
                                "Signing keys of the identity platform "
                                "known.");
    p = ngx_slprintf(p, last, "graph_notify_validation_keys %uA\n",
                     st->jwt_keys);

    p = ngx_graph_notify_metric(p, last, "validation_keys_fetched_seconds",
                                "gauge", "Unix time of the key set's fetch.");
    p = ngx_slprintf(p, last,
                     "graph_notify_validation_keys_fetched_seconds %uA\n",
                     st->jwt_fetched_at);

    p = ngx_graph_notify_metric(p, last, "validation_key_fetches_total",
                                "counter", "Key set fetches, by outcome.");
    p = ngx_slprintf(p, last,
                     "graph_notify_validation_key_fetches_total"
                     "{outcome=\"started\"} %uA\n"
                     "graph_notify_validation_key_fetches_total"
                     "{outcome=\"failed\"} %uA\n",
                     st->jwt_fetches, st->jwt_fetch_failures);

    p = ngx_graph_notify_metric(p, last, "decryption_key_last_used_seconds",
                                "gauge", "Unix time a decryption key last "
                                "decrypted an item.");

    for (i = 0; i < NGX_GRAPH_NOTIFY_KEYS_USED; i++) {
        if (st->keys_used[i].state != 2) {
            continue;
        }

        p = ngx_slprintf(p, last,
                         "graph_notify_decryption_key_last_used_seconds"
                         "{id=\"");
        p = ngx_graph_notify_status_key_id(p, last, s, i);
        p = ngx_slprintf(p, last, "\"} %uA\n", st->keys_used[i].last);
    }

    return p;
}
