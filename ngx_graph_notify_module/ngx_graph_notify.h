
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <jansson.h>
#include <curl/curl.h>


#define NGX_GRAPH_NOTIFY_VERSION          "0.1.0"

/* bounds of what Graph sends: tokens and clientState values */
#define NGX_GRAPH_NOTIFY_TOKEN_MAX        1024
#define NGX_GRAPH_NOTIFY_CLIENT_STATE_MAX 255

/* the share of the zone one tenant may hold while others wait, percent */
#define NGX_GRAPH_NOTIFY_SHARE            50

/* Retry-After of a 503 answered when the queue is full, seconds */
#define NGX_GRAPH_NOTIFY_RETRY_AFTER      10

/* the helper's backstop poll, should an eventfd wake-up be missed */
#define NGX_GRAPH_NOTIFY_POLL             1000


typedef enum {
    NGX_GRAPH_NOTIFY_DROP_MALFORMED = 0,
    NGX_GRAPH_NOTIFY_DROP_CLIENT_STATE,
    NGX_GRAPH_NOTIFY_DROP_TENANT,
    NGX_GRAPH_NOTIFY_DROP_UNKNOWN_KEY,
    NGX_GRAPH_NOTIFY_DROP_THUMBPRINT,
    NGX_GRAPH_NOTIFY_DROP_BASE64,
    NGX_GRAPH_NOTIFY_DROP_DATA_KEY,
    NGX_GRAPH_NOTIFY_DROP_KEY_LENGTH,
    NGX_GRAPH_NOTIFY_DROP_SIGNATURE,
    NGX_GRAPH_NOTIFY_DROP_DECRYPT,
    NGX_GRAPH_NOTIFY_DROP_NOT_JSON,
    NGX_GRAPH_NOTIFY_DROP_DEPTH,
    NGX_GRAPH_NOTIFY_DROP_N
} ngx_graph_notify_drop_e;

/* how Graph answered the helper */
typedef enum {
    NGX_GRAPH_NOTIFY_ANSWER_OK = 0,
    NGX_GRAPH_NOTIFY_ANSWER_NOT_FOUND,
    NGX_GRAPH_NOTIFY_ANSWER_THROTTLED,
    NGX_GRAPH_NOTIFY_ANSWER_UNAUTHORIZED,
    NGX_GRAPH_NOTIFY_ANSWER_SERVER_ERROR,
    NGX_GRAPH_NOTIFY_ANSWER_CLIENT_ERROR,
    NGX_GRAPH_NOTIFY_ANSWER_TRANSPORT,
    NGX_GRAPH_NOTIFY_ANSWER_N
} ngx_graph_notify_answer_e;

/* why a call record was given up */
typedef enum {
    NGX_GRAPH_NOTIFY_RECORD_NOT_FOUND = 0,
    NGX_GRAPH_NOTIFY_RECORD_REJECTED,
    NGX_GRAPH_NOTIFY_RECORD_INVALID,
    NGX_GRAPH_NOTIFY_RECORD_EXPIRED,
    NGX_GRAPH_NOTIFY_RECORD_TENANT,
    NGX_GRAPH_NOTIFY_RECORD_TENANTS,
    NGX_GRAPH_NOTIFY_RECORD_N
} ngx_graph_notify_record_drop_e;

/* what the status page shows of a tenant of the Graph client */
typedef enum {
    NGX_GRAPH_NOTIFY_TENANT_OK = 0,
    NGX_GRAPH_NOTIFY_TENANT_NO_TOKEN,
    NGX_GRAPH_NOTIFY_TENANT_PAUSED
} ngx_graph_notify_tenant_state_e;

#define NGX_GRAPH_NOTIFY_TENANT_VIEWS     8


typedef struct {
    u_char                      id[40];
    ngx_uint_t                  state;
    ngx_uint_t                  records;
    ngx_uint_t                  backlog;
} ngx_graph_notify_tenant_view_t;

/* why the validation tokens of a batch were refused */
typedef enum {
    NGX_GRAPH_NOTIFY_JWT_SIGNATURE = 0,
    NGX_GRAPH_NOTIFY_JWT_EXPIRED,
    NGX_GRAPH_NOTIFY_JWT_AUDIENCE,
    NGX_GRAPH_NOTIFY_JWT_PUBLISHER,
    NGX_GRAPH_NOTIFY_JWT_ISSUER,
    NGX_GRAPH_NOTIFY_JWT_UNKNOWN_KID,
    NGX_GRAPH_NOTIFY_JWT_MALFORMED,
    NGX_GRAPH_NOTIFY_JWT_MISSING,
    NGX_GRAPH_NOTIFY_JWT_N
} ngx_graph_notify_jwt_reason_e;

/* decryption key ids whose last use the status page shows */
#define NGX_GRAPH_NOTIFY_KEYS_USED        32
#define NGX_GRAPH_NOTIFY_KEY_ID_MAX       128

/* reasons from UNKNOWN_KEY on are failures to decrypt a rich item */
#define NGX_GRAPH_NOTIFY_DROP_CRYPTO      NGX_GRAPH_NOTIFY_DROP_UNKNOWN_KEY


typedef struct ngx_graph_notify_dcache_s  ngx_graph_notify_dcache_t;
typedef struct ngx_graph_notify_runs_s    ngx_graph_notify_runs_t;

typedef struct {
    ngx_str_t                   id;
    u_char                      thumbprint[40];
    EVP_PKEY                   *pkey;
    ngx_str_t                   certificate;   /* base64 of DER */
    ngx_atomic_t               *last_used;     /* its slot on the status page */
    ngx_graph_notify_dcache_t  *cache;         /* its decryption contexts */
} ngx_graph_notify_key_t;


typedef struct {
    ngx_str_t                   data;
    ngx_str_t                   data_key;
    ngx_str_t                   data_signature;
    ngx_str_t                   cert_id;
    ngx_str_t                   thumbprint;
} ngx_graph_notify_encrypted_t;


typedef struct {
    ngx_atomic_t                requests;
    ngx_atomic_t                handshakes;
    ngx_atomic_t                rejected;
    ngx_atomic_t                queue_full;
    ngx_atomic_t                items_received;
    ngx_atomic_t                items_accepted;
    ngx_atomic_t                dropped[NGX_GRAPH_NOTIFY_DROP_N];
    ngx_atomic_t                items_written;
    ngx_atomic_t                output_errors;
    ngx_atomic_t                output_syncs;
    ngx_atomic_t                lease_reclaims;
    ngx_atomic_t                helper_pid;
    ngx_atomic_t                helper_starts;
    ngx_atomic_t                helper_heartbeat;

    /* the helper's app-only sign-in, as the status page shows it */
    ngx_atomic_t                token_requests;
    ngx_atomic_t                token_failures;
    ngx_atomic_t                token_failing;
    ngx_atomic_t                token_ok_at;
    ngx_atomic_t                token_expires_at;
    u_char                      token_error[160];

    /* the Graph client */
    ngx_atomic_t                graph_enabled;
    ngx_atomic_t                graph_requests;
    ngx_atomic_t                graph_answers[NGX_GRAPH_NOTIFY_ANSWER_N];
    ngx_atomic_t                records_written;
    ngx_atomic_t                records_unchanged;
    ngx_atomic_t                records_coalesced;
    ngx_atomic_t                records_dropped[NGX_GRAPH_NOTIFY_RECORD_N];
    ngx_atomic_t                records_active;
    ngx_atomic_t                records_waiting;
    ngx_atomic_t                requests_running;
    ngx_atomic_t                tenant_pauses;
    ngx_atomic_t                records_stale;
    ngx_atomic_t                records_backlog;

    /* why the Graph client is not running, if it is not */
    ngx_atomic_t                graph_failing;
    u_char                      graph_error[120];

    /* tenants of the Graph client; those not OK, or the busiest, shown */
    ngx_atomic_t                tenants;
    ngx_atomic_t                tenants_no_token;
    ngx_atomic_t                tenants_paused;
    ngx_uint_t                  tenant_views;
    ngx_graph_notify_tenant_view_t  tenant_view[NGX_GRAPH_NOTIFY_TENANT_VIEWS];

    /* the journal: counters of the workers, gauges of the helper */
    ngx_atomic_t                journal_appends;
    ngx_atomic_t                journal_writes;
    ngx_atomic_t                journal_failures;
    ngx_atomic_t                journal_bytes;
    ngx_atomic_t                journal_files;
    ngx_atomic_t                journal_pending;
    ngx_atomic_t                journal_oldest;
    ngx_atomic_t                journal_unread;
    ngx_atomic_t                journal_recoveries;
    ngx_atomic_t                journal_recovered;
    ngx_atomic_t                journal_torn;
    ngx_atomic_t                journal_checkpoints;
    ngx_atomic_t                journal_fsyncs;
    ngx_atomic_t                journal_fsync_requests;
    ngx_atomic_t                journal_fsync_group_max;
    ngx_atomic_t                journal_recovering;

    /* batches refused as their tenant held more than its share */
    ngx_atomic_t                share_refused;
    /* validation tokens of rich notifications (ngx_graph_notify_jwt.c) */
    ngx_atomic_t                jwt_enabled;
    ngx_atomic_t                jwt_batches;
    ngx_atomic_t                jwt_valid;
    ngx_atomic_t                jwt_dropped[NGX_GRAPH_NOTIFY_JWT_N];
    ngx_atomic_t                jwt_waiting;
    ngx_atomic_t                jwt_keys;
    ngx_atomic_t                jwt_fetched_at;
    ngx_atomic_t                jwt_fetches;
    ngx_atomic_t                jwt_fetch_failures;
    u_char                      jwt_error[120];

    /* when each decryption key id last decrypted an item */
    struct {
        ngx_atomic_t            state;
        ngx_atomic_t            last;
        ngx_atomic_t            len;
        u_char                  id[NGX_GRAPH_NOTIFY_KEY_ID_MAX];
    }                           keys_used[NGX_GRAPH_NOTIFY_KEYS_USED];
} ngx_graph_notify_stats_t;


/*
 * What an item is, decided by the worker at intake and kept in the item's
 * header, so that the helper routes it without parsing the line again.
 */
typedef enum {
    NGX_GRAPH_NOTIFY_KIND_OTHER = 0,         /* basic, not a call record */
    NGX_GRAPH_NOTIFY_KIND_CALL_RECORD,       /* communications/callRecords */
    NGX_GRAPH_NOTIFY_KIND_RICH,
    NGX_GRAPH_NOTIFY_KIND_LIFECYCLE
} ngx_graph_notify_kind_e;

/*
 * The lanes of the queue: items that only need writing never wait behind
 * call records waiting for Graph.
 */
#define NGX_GRAPH_NOTIFY_LANE_WRITE       0
#define NGX_GRAPH_NOTIFY_LANE_RECORD      1
#define NGX_GRAPH_NOTIFY_LANES            2


/* the validationTokens of one batch, stored once and shared by its items */
typedef struct {
    ngx_uint_t                  refs;
    size_t                      len;
    u_char                      data[1];
} ngx_graph_notify_tokens_t;


/*
 * Where an item is on disk: its journal file (zone id, writer pid, file
 * number), the offset of its batch entry there, and its journal sequence
 * number, unique within the file.
 */
typedef struct {
    uint64_t                    zone;
    uint64_t                    seq;
    off_t                       off;
    uint32_t                    pid;
    uint32_t                    file;
} ngx_graph_notify_jref_t;


/* a tenant's hold on the zone (items and bytes), for its fair share */
typedef struct {
    ngx_str_node_t              sn;
    ngx_uint_t                  items;
    size_t                      bytes;
    u_char                      data[1];
} ngx_graph_notify_hold_t;


/*
 * A queued notification item: the header, then the JSON object to write
 * (one line, no newline), the tenant id and the call-record id.
 */
typedef struct {
    ngx_queue_t                 queue;
    uint64_t                    seq;
    ngx_pid_t                   owner;
    time_t                      lease_until;
    time_t                      received;
    ngx_uint_t                  attempts;
    ngx_graph_notify_tokens_t  *tokens;
    ngx_graph_notify_hold_t    *hold;
    ngx_graph_notify_jref_t     journal;
    uint32_t                    size;
    uint32_t                    cost;          /* in the slab, its pieces */
    uint32_t                    line_len;
    uint32_t                    tenant_len;
    uint8_t                     record_len;
    uint8_t                     kind;
    uint32_t                    head_len;      /* of data[] */
    uint32_t                    more_len[2];
    u_char                     *more[2];       /* the rest, see queue.c */
    u_char                      data[1];
} ngx_graph_notify_item_t;


typedef struct {
    ngx_queue_t                 pending[NGX_GRAPH_NOTIFY_LANES];
    ngx_queue_t                 inflight;
    ngx_queue_t                 staged;
    ngx_uint_t                  count;
    ngx_uint_t                  lane_count[NGX_GRAPH_NOTIFY_LANES];
    size_t                      bytes;
    uint64_t                    seq;
    uint64_t                    zone_id;
    ngx_rbtree_t                holds;
    ngx_rbtree_node_t           holds_sentinel;
    ngx_uint_t                  tenants;       /* with items queued */
    ngx_uint_t                  idle_holds;    /* kept empty */
    time_t                      refused_at;
    uint32_t                    refused_tenant;
    ngx_atomic_t                files;
    ngx_atomic_t                journal_refused;
    ngx_atomic_t                journal_logged;
    ngx_atomic_t                wake_pending;
    ngx_graph_notify_stats_t    stats;
} ngx_graph_notify_shctx_t;


/* why a batch could not be staged */
#define NGX_GRAPH_NOTIFY_REFUSED_FULL     1
#define NGX_GRAPH_NOTIFY_REFUSED_SHARE    2


typedef struct {
    ngx_graph_notify_shctx_t   *sh;
    ngx_slab_pool_t            *shpool;
    ngx_uint_t                  max_items;
    ngx_uint_t                  share;         /* percent */
    ngx_uint_t                  refused;       /* of the last stage */
} ngx_graph_notify_queue_t;


/*
 * An item taken by the helper: the routing fields and a private copy of
 * the line; the tokens stay in the zone (ngx_graph_notify_queue_tokens()
 * copies them on demand).  tenant and record point into the copy.
 */
typedef struct {
    ngx_graph_notify_item_t    *shm;
    uint64_t                    seq;
    ngx_graph_notify_kind_e     kind;
    ngx_uint_t                  lane;
    ngx_str_t                   line;
    ngx_str_t                   tenant;
    ngx_str_t                   record;
    time_t                      received;
    ngx_graph_notify_jref_t     journal;
} ngx_graph_notify_job_t;


/* what a worker pushes for one accepted item */
typedef struct {
    ngx_str_t                   line;
    ngx_str_t                   tenant;
    ngx_str_t                   record;      /* call-record id, or empty */
    ngx_graph_notify_kind_e     kind;
} ngx_graph_notify_entry_t;


/* the maximal call-record id the worker accepts as one */
#define NGX_GRAPH_NOTIFY_RECORD_ID_MAX    128


typedef enum {
    NGX_GRAPH_NOTIFY_ASSERTION_PS256 = 0,
    NGX_GRAPH_NOTIFY_ASSERTION_RS256
} ngx_graph_notify_assertion_e;


typedef struct ngx_graph_notify_subs_conf_s  ngx_graph_notify_subs_conf_t;


/* the app registration that the helper signs in as (app-only) */
typedef struct {
    ngx_str_t                   app_id;
    ngx_str_t                   secret;
    EVP_PKEY                   *key;
    ngx_str_t                   x5t;           /* base64url SHA-1 of DER */
    ngx_str_t                   x5t_s256;      /* base64url SHA-256 */
    ngx_graph_notify_assertion_e  alg;
} ngx_graph_notify_app_t;


typedef struct {
    ngx_shm_zone_t             *shm_zone;
    ngx_uint_t                  max_items;
    ngx_uint_t                  share;
    ngx_path_t                 *path;
    ngx_open_file_t            *output;
    ngx_uint_t                  output_mode;
    ngx_msec_t                  output_sync_interval;
    time_t                      lease;
    ngx_fd_t                    wake_fd;

    /* graph_notify_sync: the 202 waits for the journal's fsync */
    ngx_flag_t                  sync;

    /* the Graph client of the helper; off unless app_id is set */
    ngx_graph_notify_app_t      app;
    ngx_str_t                   graph_url;
    ngx_str_t                   login_url;
    ngx_str_t                   ca_file;
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  request_timeout;
    ngx_uint_t                  concurrency;
    ngx_uint_t                  rate;
    time_t                      record_horizon;
    ngx_uint_t                  max_tenants;

    /* subscriptions the helper keeps alive */
    ngx_graph_notify_subs_conf_t  *subscriptions;

    /* rich items are decrypted there; NULL: on the event loop */
    ngx_str_t                   thread_pool_name;
#if (NGX_THREADS)
    ngx_thread_pool_t          *thread_pool;

    /* the worker's decryption tasks in it (ngx_graph_notify_handler.c) */
    ngx_graph_notify_runs_t    *runs;
#endif

    /* validation tokens of rich notifications (ngx_graph_notify_jwt.c) */
    ngx_flag_t                  jwt_check;
    ngx_array_t                *jwt_audiences;
    ngx_uint_t                  rich;

    /* where "graph_notify" was first used, for configuration errors */
    ngx_str_t                   used_file;
    ngx_uint_t                  used_line;
} ngx_graph_notify_main_conf_t;


typedef struct {
    ngx_array_t                *client_states;
    ngx_array_t                *tenants;
    ngx_array_t                *keys;
    ngx_uint_t                  max_batch;
    size_t                      max_item_size;
} ngx_graph_notify_loc_conf_t;


extern ngx_module_t  ngx_http_graph_notify_module;
extern ngx_str_t     ngx_graph_notify_drop_names[];
extern ngx_str_t     ngx_graph_notify_answer_names[];
extern ngx_str_t     ngx_graph_notify_record_drop_names[];


/* ngx_graph_notify_module.c */
ngx_int_t ngx_graph_notify_is_guid(ngx_str_t *s);

/* ngx_graph_notify_handler.c */
ngx_int_t ngx_graph_notify_handler(ngx_http_request_t *r);
ngx_int_t ngx_graph_notify_form_decode(ngx_str_t *src, ngx_str_t *dst);

/* ngx_graph_notify_status.c */
ngx_int_t ngx_graph_notify_status_handler(ngx_http_request_t *r);

/* ngx_graph_notify_crypto.c */
char *ngx_graph_notify_key_pair(ngx_conf_t *cf, ngx_str_t *cert_file,
    ngx_str_t *key_file, const char *what, X509 **x509, EVP_PKEY **pkey);
const char *ngx_graph_notify_ssl_reason(void);
char *ngx_graph_notify_key_load(ngx_conf_t *cf, ngx_graph_notify_key_t *key,
    ngx_str_t *cert_file, ngx_str_t *key_file);
ngx_uint_t ngx_graph_notify_secret_match(ngx_str_t *value,
    ngx_array_t *secrets);

/* ngx_graph_notify_queue.c */
ngx_int_t ngx_graph_notify_queue_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_int_t ngx_graph_notify_record_id(ngx_str_t *resource, ngx_str_t *id);
ngx_graph_notify_item_t *ngx_graph_notify_queue_stage(
    ngx_graph_notify_queue_t *q, ngx_graph_notify_entry_t *entries,
    ngx_uint_t n, ngx_str_t *tokens, ngx_graph_notify_jref_t *jref);
void ngx_graph_notify_queue_publish(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_item_t *first, ngx_uint_t n);
void ngx_graph_notify_queue_unstage(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_item_t *first, ngx_uint_t n);
ngx_int_t ngx_graph_notify_queue_push(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_entry_t *entries, ngx_uint_t n, ngx_str_t *tokens);
ngx_int_t ngx_graph_notify_queue_requeue(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_entry_t *entry, ngx_str_t *tokens,
    ngx_graph_notify_jref_t *jref, time_t received);
ngx_int_t ngx_graph_notify_queue_take(ngx_graph_notify_queue_t *q,
    ngx_uint_t lane, time_t lease, ngx_pool_t *pool,
    ngx_graph_notify_job_t *job);
ngx_int_t ngx_graph_notify_queue_tokens(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_job_t *job, ngx_pool_t *pool, ngx_str_t *tokens);
void ngx_graph_notify_queue_done(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_job_t *job);
void ngx_graph_notify_queue_release(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_job_t *job);
ngx_int_t ngx_graph_notify_queue_read(ngx_graph_notify_queue_t *q,
    ngx_graph_notify_job_t *job, ngx_pool_t *pool);
uint64_t ngx_graph_notify_queue_last_seq(ngx_graph_notify_queue_t *q);
void ngx_graph_notify_queue_renew(ngx_graph_notify_queue_t *q,
    time_t lease);
ngx_uint_t ngx_graph_notify_queue_reclaim(ngx_graph_notify_queue_t *q);
void ngx_graph_notify_queue_wake(ngx_graph_notify_queue_t *q, ngx_fd_t fd,
    ngx_log_t *log);
void ngx_graph_notify_queue_awake(ngx_graph_notify_queue_t *q);

/* ngx_graph_notify_helper.c */
ngx_msec_t ngx_graph_notify_helper_manager(void *data);
ngx_int_t ngx_graph_notify_helper_start(ngx_cycle_t *cycle);
void ngx_graph_notify_helper_kick(void);

/* ngx_graph_notify_http.c: libcurl's multi interface on the event loop */

typedef struct ngx_graph_notify_http_s  ngx_graph_notify_http_t;

typedef void (*ngx_graph_notify_http_done_pt)(ngx_graph_notify_http_t *req);

struct ngx_graph_notify_http_s {
    CURL                           *easy;
    struct curl_slist              *headers;
    ngx_pool_t                     *pool;
    ngx_log_t                      *log;

    /* the answer, valid in the handler */
    CURLcode                        result;
    long                            status;
    ngx_str_t                       body;
    time_t                          retry_after;
    char                            error[CURL_ERROR_SIZE];

    ngx_graph_notify_http_done_pt   handler;
    void                           *data;

    size_t                          max_body;
    ngx_uint_t                      running;
};

ngx_int_t ngx_graph_notify_http_init(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf);
ngx_graph_notify_http_t *ngx_graph_notify_http_create(ngx_pool_t *pool,
    ngx_log_t *log, const char *method, ngx_str_t *url);
ngx_int_t ngx_graph_notify_http_header(ngx_graph_notify_http_t *req,
    ngx_str_t *name, ngx_str_t *value);
ngx_int_t ngx_graph_notify_http_body(ngx_graph_notify_http_t *req,
    ngx_str_t *body, const char *content_type);
ngx_int_t ngx_graph_notify_http_start(ngx_graph_notify_http_t *req);
void ngx_graph_notify_http_abort(ngx_graph_notify_http_t *req);
ngx_uint_t ngx_graph_notify_http_running(void);

/* ngx_graph_notify_token.c: app-only tokens, one per tenant */

typedef void (*ngx_graph_notify_token_ready_pt)(void *data);

char *ngx_graph_notify_app_certificate(ngx_conf_t *cf,
    ngx_graph_notify_app_t *app, ngx_str_t *cert_file, ngx_str_t *key_file);
ngx_int_t ngx_graph_notify_token_init(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf,
    ngx_graph_notify_token_ready_pt ready, void *data);
ngx_int_t ngx_graph_notify_token_get(ngx_str_t *tenant, ngx_str_t *bearer);
void ngx_graph_notify_token_invalidate(ngx_str_t *tenant,
    ngx_str_t *bearer);
void ngx_graph_notify_token_forget(ngx_str_t *tenant);

/* ngx_graph_notify_index.c: call-record versions written */

typedef struct {
    ngx_str_node_t              sn;
    ngx_queue_t                 by_time;
    int64_t                     version;
    time_t                      written;
    uint64_t                    answered;      /* queue seq, see graph.c */
    void                       *active;
} ngx_graph_notify_index_node_t;

ngx_int_t ngx_graph_notify_index_open(ngx_cycle_t *cycle, ngx_str_t *dir);
ngx_graph_notify_index_node_t *ngx_graph_notify_index_get(ngx_str_t *id);
ngx_int_t ngx_graph_notify_index_written(ngx_graph_notify_index_node_t *node,
    int64_t version);
void ngx_graph_notify_index_release(ngx_graph_notify_index_node_t *node);
void ngx_graph_notify_index_sync(void);
void ngx_graph_notify_index_maintain(void);

/* ngx_graph_notify_graph.c: call records fetched from Graph */
ngx_int_t ngx_graph_notify_graph_init(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf);
ngx_int_t ngx_graph_notify_graph_submit(ngx_graph_notify_job_t *job);
ngx_uint_t ngx_graph_notify_graph_busy(void);
void ngx_graph_notify_graph_poll(void);

/* ngx_graph_notify_output.c */
ngx_int_t ngx_graph_notify_output_append(ngx_open_file_t *file,
    ngx_uint_t sync, u_char *buf, size_t len, ngx_log_t *log);
u_char *ngx_graph_notify_timestamp(u_char *buf);
uint64_t ngx_graph_notify_parse_timestamp(const char *s);


#define ngx_graph_notify_stat_inc(q, field)                                   \
    (void) ngx_atomic_fetch_add(&(q)->sh->stats.field, 1)

#define ngx_graph_notify_stat_add(q, field, n)                                \
    (void) ngx_atomic_fetch_add(&(q)->sh->stats.field, n)


#endif /* _NGX_GRAPH_NOTIFY_H_INCLUDED_ */
