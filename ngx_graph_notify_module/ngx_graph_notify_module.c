
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"
#include "ngx_graph_notify_subscription_conf.h"
#include "ngx_graph_notify_subscription_state.h"
#include "ngx_graph_notify_jwt.h"
#include "ngx_graph_notify_commit.h"
#include "ngx_graph_notify_conf_file.h"

#if (NGX_LINUX)
#include <sys/eventfd.h>
#include <malloc.h>
#endif


#define NGX_GRAPH_NOTIFY_ZONE_NAME    "graph_notify"
#define NGX_GRAPH_NOTIFY_ZONE_SIZE    (16 * 1024 * 1024)
/* the zone's cost of a basic notification (a 700-byte item, in pieces) */
#define NGX_GRAPH_NOTIFY_ITEM_COST    768
#define NGX_GRAPH_NOTIFY_MAX_BATCH    1000
#define NGX_GRAPH_NOTIFY_ITEM_SIZE    (512 * 1024)
#define NGX_GRAPH_NOTIFY_OUTPUT_MODE  0640
/* free heap a process keeps (see ngx_graph_notify_init_process()) */
#define NGX_GRAPH_NOTIFY_TRIM_THRESHOLD  (4 * 1024 * 1024)


static void *ngx_graph_notify_create_main_conf(ngx_conf_t *cf);
static char *ngx_graph_notify_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_graph_notify_create_loc_conf(ngx_conf_t *cf);
static char *ngx_graph_notify_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_graph_notify(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_graph_notify_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_graph_notify_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_graph_notify_path(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_graph_notify_output(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_graph_notify_client_state(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_graph_notify_tenant(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_graph_notify_decryption_key(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_graph_notify_add_zone(ngx_conf_t *cf,
    ngx_graph_notify_main_conf_t *gmcf, ngx_str_t *name, ssize_t size);
static ngx_int_t ngx_graph_notify_add_path(ngx_conf_t *cf,
    ngx_graph_notify_main_conf_t *gmcf, ngx_str_t *name);
static ngx_int_t ngx_graph_notify_default_file(ngx_conf_t *cf,
    ngx_str_t *path, char *compiled, char *name, char *bare);
static ngx_int_t ngx_graph_notify_init_wake(ngx_conf_t *cf,
    ngx_graph_notify_main_conf_t *gmcf);
static void ngx_graph_notify_close_wake(void *data);
static char *ngx_graph_notify_mark_used(ngx_conf_t *cf);
static char *ngx_graph_notify_app_id(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_graph_notify_client_secret(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_graph_notify_client_certificate(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_graph_notify_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_graph_notify_ca_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_graph_notify_check_app(ngx_conf_t *cf,
    ngx_graph_notify_main_conf_t *gmcf);
static char *ngx_graph_notify_output_mode(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_graph_notify_check_sync_interval(ngx_conf_t *cf, void *post,
    void *data);
static ngx_int_t ngx_graph_notify_output_create(ngx_open_file_t *file,
    ngx_uint_t mode, ngx_log_t *log);
static void ngx_graph_notify_output_reopen(ngx_open_file_t *file,
    ngx_log_t *log);
static char *ngx_graph_notify_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_graph_notify_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_graph_notify_init_process(ngx_cycle_t *cycle);


/* Graph allows 1,500 requests per 20 s per app and tenant (protocol 6.3) */

static ngx_conf_num_bounds_t  ngx_graph_notify_concurrency_bounds = {
    ngx_conf_check_num_bounds, 1, 256
};

static ngx_conf_num_bounds_t  ngx_graph_notify_rate_bounds = {
    ngx_conf_check_num_bounds, 1, 75
};

static ngx_conf_num_bounds_t  ngx_graph_notify_tenants_bounds = {
    ngx_conf_check_num_bounds, 1, 1000000
};

static ngx_conf_num_bounds_t  ngx_graph_notify_batch_bounds = {
    ngx_conf_check_num_bounds, 1, 100000
};

static ngx_conf_post_t  ngx_graph_notify_sync_interval_post = {
    ngx_graph_notify_check_sync_interval
};


static ngx_command_t  ngx_graph_notify_commands[] = {

    { ngx_string("graph_notify"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_graph_notify,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_graph_notify_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_graph_notify_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_path"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_graph_notify_path,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_output"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_graph_notify_output,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_output_mode"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_graph_notify_output_mode,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_output_sync_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_graph_notify_main_conf_t, output_sync_interval),
      &ngx_graph_notify_sync_interval_post },

    { ngx_string("graph_notify_max_batch"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_graph_notify_loc_conf_t, max_batch),
      &ngx_graph_notify_batch_bounds },

    { ngx_string("graph_notify_max_item_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_graph_notify_loc_conf_t, max_item_size),
      NULL },

    { ngx_string("graph_notify_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_graph_notify_thread_pool,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_sync"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_graph_notify_main_conf_t, sync),
      NULL },

    { ngx_string("graph_notify_lease"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_graph_notify_main_conf_t, lease),
      NULL },

    { ngx_string("graph_notify_client_state"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_graph_notify_client_state,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_tenant"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_graph_notify_tenant,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_decryption_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE3,
      ngx_graph_notify_decryption_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_app_id"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_graph_notify_app_id,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_client_secret"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_graph_notify_client_secret,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_client_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_graph_notify_client_certificate,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_graph_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_graph_notify_url,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_graph_notify_main_conf_t, graph_url),
      NULL },

    { ngx_string("graph_notify_login_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_graph_notify_url,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_graph_notify_main_conf_t, login_url),
      NULL },

    { ngx_string("graph_notify_ca_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_graph_notify_ca_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_graph_notify_main_conf_t, connect_timeout),
      NULL },

    { ngx_string("graph_notify_request_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_graph_notify_main_conf_t, request_timeout),
      NULL },

    { ngx_string("graph_notify_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_graph_notify_main_conf_t, concurrency),
      &ngx_graph_notify_concurrency_bounds },

    { ngx_string("graph_notify_rate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_graph_notify_main_conf_t, rate),
      &ngx_graph_notify_rate_bounds },

    { ngx_string("graph_notify_record_horizon"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_graph_notify_main_conf_t, record_horizon),
      NULL },

    { ngx_string("graph_notify_max_tenants"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_graph_notify_main_conf_t, max_tenants),
      &ngx_graph_notify_tenants_bounds },

    { ngx_string("graph_notify_subscription"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_graph_notify_subscription,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_subscription_prune"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_graph_notify_subscription_prune,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_backfill"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_graph_notify_backfill,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_validation_tokens"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_graph_notify_jwt_tokens,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("graph_notify_validation_audience"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_graph_notify_jwt_audience,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_graph_notify_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_graph_notify_subscription_postconf, /* postconfiguration */

    ngx_graph_notify_create_main_conf,     /* create main configuration */
    ngx_graph_notify_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_graph_notify_create_loc_conf,      /* create location configuration */
    ngx_graph_notify_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_graph_notify_module = {
    NGX_MODULE_V1,
    &ngx_graph_notify_module_ctx,          /* module context */
    ngx_graph_notify_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_graph_notify_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_graph_notify_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_graph_notify_create_main_conf(ngx_conf_t *cf)
{
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_pcalloc(cf->pool, sizeof(ngx_graph_notify_main_conf_t));
    if (gmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     gmcf->shm_zone = NULL;
     *     gmcf->path = NULL;
     *     gmcf->output = NULL;
     *     gmcf->used_file = { 0, NULL };
     */

    gmcf->max_items = NGX_CONF_UNSET_UINT;
    gmcf->share = NGX_CONF_UNSET_UINT;
    gmcf->output_mode = NGX_CONF_UNSET_UINT;
    gmcf->output_sync_interval = NGX_CONF_UNSET_MSEC;
    gmcf->lease = NGX_CONF_UNSET;
    gmcf->sync = NGX_CONF_UNSET;
    gmcf->wake_fd = NGX_INVALID_FILE;
    gmcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    gmcf->request_timeout = NGX_CONF_UNSET_MSEC;
    gmcf->concurrency = NGX_CONF_UNSET_UINT;
    gmcf->rate = NGX_CONF_UNSET_UINT;
    gmcf->record_horizon = NGX_CONF_UNSET;
    gmcf->max_tenants = NGX_CONF_UNSET_UINT;
    gmcf->jwt_check = NGX_CONF_UNSET;

    return gmcf;
}


static char *
ngx_graph_notify_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    ngx_str_t                  name;
    ngx_graph_notify_queue_t  *q;

    ngx_conf_init_value(gmcf->lease, 60);
    ngx_conf_init_msec_value(gmcf->output_sync_interval, 10);
    ngx_conf_init_value(gmcf->sync, 0);
    ngx_conf_init_msec_value(gmcf->connect_timeout, 10000);
    ngx_conf_init_msec_value(gmcf->request_timeout, 60000);
    ngx_conf_init_uint_value(gmcf->concurrency, 16);
    ngx_conf_init_uint_value(gmcf->rate, 50);
    ngx_conf_init_value(gmcf->record_horizon, 4 * 60 * 60);
    ngx_conf_init_uint_value(gmcf->max_tenants, 10000);

    if (gmcf->graph_url.len == 0) {
        ngx_str_set(&gmcf->graph_url, "https://graph.microsoft.com");
    }

    if (gmcf->login_url.len == 0) {
        ngx_str_set(&gmcf->login_url, "https://login.microsoftonline.com");
    }

    if (ngx_graph_notify_check_app(cf, gmcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_graph_notify_jwt_init_conf(cf, gmcf);

    if (gmcf->used_file.len == 0) {
        /* the module is loaded but not used: no zone, no helper */
        return NGX_CONF_OK;
    }

    if (gmcf->shm_zone == NULL) {
        ngx_str_set(&name, NGX_GRAPH_NOTIFY_ZONE_NAME);

        if (ngx_graph_notify_add_zone(cf, gmcf, &name,
                                      NGX_GRAPH_NOTIFY_ZONE_SIZE)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (gmcf->max_items == NGX_CONF_UNSET_UINT) {
        /* as many as the zone holds: the two limits agree */
        gmcf->max_items = gmcf->shm_zone->shm.size
                          / NGX_GRAPH_NOTIFY_ITEM_COST;
    }

    q = gmcf->shm_zone->data;
    q->max_items = gmcf->max_items;

    ngx_conf_init_uint_value(gmcf->share, NGX_GRAPH_NOTIFY_SHARE);
    q->share = gmcf->share;

    if (gmcf->path == NULL) {
        /* next to the client body temp directory of this build */
        if (ngx_graph_notify_default_file(cf, &name,
                                          NGX_HTTP_CLIENT_TEMP_PATH,
                                          "graph_notify",
                                          "graph_notify_temp")
            != NGX_OK
            || ngx_graph_notify_add_path(cf, gmcf, &name) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (gmcf->output == NULL) {
        /* next to the access log of this build */
        if (ngx_graph_notify_default_file(cf, &name, NGX_HTTP_LOG_PATH,
                                          "graph_notify.ndjson",
                                          "graph_notify.ndjson")
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        gmcf->output = ngx_conf_open_file(cf->cycle, &name);
        if (gmcf->output == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    ngx_conf_init_uint_value(gmcf->output_mode, NGX_GRAPH_NOTIFY_OUTPUT_MODE);

    /*
     * NGINX opens and reopens its files with mode 0644.  The output holds
     * decrypted Teams content, so the module creates it first, with its
     * own mode: now, before NGINX opens the files of this configuration,
     * and before each reopen, from the file's flush callback, which NGINX
     * calls just before it reopens the file.  A file that exists keeps
     * its mode.
     */

    if (gmcf->output->flush == NULL) {
        gmcf->output->flush = ngx_graph_notify_output_reopen;
        gmcf->output->data = gmcf;
    }

    if (ngx_graph_notify_output_create(gmcf->output, gmcf->output_mode,
                                       cf->log)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

#if (NGX_THREADS)

    if (gmcf->thread_pool_name.len == 0) {
        ngx_str_set(&gmcf->thread_pool_name, "default");
    }

    if (ngx_strcmp(gmcf->thread_pool_name.data, "off") != 0) {
        gmcf->thread_pool = ngx_thread_pool_add(cf, &gmcf->thread_pool_name);
        if (gmcf->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
    }

#endif

    /* the fsync of the journal must never run on the event loop */

#if (NGX_THREADS)
    if (gmcf->sync && gmcf->thread_pool == NULL)
#else
    if (gmcf->sync)
#endif
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"graph_notify_sync on\" needs a thread pool, "
                           "and graph_notify_thread_pool is off or NGINX "
                           "was built without threads");
        return NGX_CONF_ERROR;
    }

    if (ngx_graph_notify_init_wake(cf, gmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_graph_notify_create_loc_conf(ngx_conf_t *cf)
{
    ngx_graph_notify_loc_conf_t  *glcf;

    glcf = ngx_pcalloc(cf->pool, sizeof(ngx_graph_notify_loc_conf_t));
    if (glcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     glcf->client_states = NULL;
     *     glcf->tenants = NULL;
     *     glcf->keys = NULL;
     */

    glcf->max_batch = NGX_CONF_UNSET_UINT;
    glcf->max_item_size = NGX_CONF_UNSET_SIZE;

    return glcf;
}


static char *
ngx_graph_notify_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_graph_notify_loc_conf_t *prev = parent;
    ngx_graph_notify_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t      *clcf;
    ngx_graph_notify_main_conf_t  *gmcf;

    /* lists are inherited whole, like add_header */

    if (conf->client_states == NULL) {
        conf->client_states = prev->client_states;
    }

    if (conf->tenants == NULL) {
        conf->tenants = prev->tenants;
    }

    if (conf->keys == NULL) {
        conf->keys = prev->keys;
    }

    ngx_conf_merge_uint_value(conf->max_batch, prev->max_batch,
                              NGX_GRAPH_NOTIFY_MAX_BATCH);
    ngx_conf_merge_size_value(conf->max_item_size, prev->max_item_size,
                              NGX_GRAPH_NOTIFY_ITEM_SIZE);

    if (conf->max_item_size < 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "graph_notify_max_item_size must be at least 1k");
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_graph_notify_handler
        && conf->client_states == NULL)
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "no graph_notify_client_state for this location: "
                           "anyone who knows the URL can post notifications");
    }

    if (clcf->handler == ngx_graph_notify_handler
        && ngx_graph_notify_subscription_location(cf, conf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (clcf->handler == ngx_graph_notify_handler && conf->keys) {
        gmcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_graph_notify_module);

        if (ngx_graph_notify_jwt_check_conf(cf, gmcf) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_graph_notify_mark_used(ngx_conf_t *cf)
{
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_graph_notify_module);

    if (gmcf->used_file.len == 0) {
        gmcf->used_file = cf->conf_file->file.name;
        gmcf->used_line = cf->conf_file->line;
    }

    return NGX_CONF_OK;
}


static char *
ngx_graph_notify(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate or conflicts with another content handler";
    }

    clcf->handler = ngx_graph_notify_handler;

    return ngx_graph_notify_mark_used(cf);
}


static char *
ngx_graph_notify_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate or conflicts with another content handler";
    }

    clcf->handler = ngx_graph_notify_status_handler;

    return ngx_graph_notify_mark_used(cf);
}


static char *
ngx_graph_notify_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    u_char      *p;
    ssize_t      size;
    ngx_str_t   *value, name, s;
    ngx_int_t    n;
    ngx_uint_t   i;

    if (gmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", expected NAME:SIZE",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (64 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small, at least %uzk needed",
                           &value[1], 64 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "max_items=", 10) == 0) {

            n = ngx_atoi(value[i].data + 10, value[i].len - 10);

            if (n == NGX_ERROR || n == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid max_items \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            gmcf->max_items = n;
            continue;
        }

        /* share=N%: the most one tenant holds while others wait */

        if (ngx_strncmp(value[i].data, "share=", 6) == 0) {

            n = NGX_ERROR;

            if (value[i].len > 7 && value[i].data[value[i].len - 1] == '%') {
                n = ngx_atoi(value[i].data + 6, value[i].len - 7);
            }

            if (n == NGX_ERROR || n == 0 || n > 100) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid share \"%V\", expected a "
                                   "percentage from 1%% to 100%%",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            gmcf->share = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (ngx_graph_notify_add_zone(cf, gmcf, &name, size) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_graph_notify_add_zone(ngx_conf_t *cf, ngx_graph_notify_main_conf_t *gmcf,
    ngx_str_t *name, ssize_t size)
{
    ngx_graph_notify_queue_t  *q;

    q = ngx_pcalloc(cf->pool, sizeof(ngx_graph_notify_queue_t));
    if (q == NULL) {
        return NGX_ERROR;
    }

    gmcf->shm_zone = ngx_shared_memory_add(cf, name, size,
                                           &ngx_http_graph_notify_module);
    if (gmcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    if (gmcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", name);
        return NGX_ERROR;
    }

    gmcf->shm_zone->init = ngx_graph_notify_queue_init_zone;
    gmcf->shm_zone->data = q;

    return NGX_OK;
}


static char *
ngx_graph_notify_path(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    ngx_str_t  *value;

    if (gmcf->path) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_graph_notify_add_path(cf, gmcf, &value[1]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_graph_notify_add_path(ngx_conf_t *cf, ngx_graph_notify_main_conf_t *gmcf,
    ngx_str_t *name)
{
    ngx_path_t  *path;

    path = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
    if (path == NULL) {
        return NGX_ERROR;
    }

    path->name = *name;
    path->conf_file = cf->conf_file->file.name.data;
    path->line = cf->conf_file->line;

    if (path->name.len > 1 && path->name.data[path->name.len - 1] == '/') {
        path->name.len--;
    }

    if (ngx_conf_full_name(cf->cycle, &path->name, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * The manager callback makes stock NGINX start and respawn its
     * "cache manager" process, which then hosts the helper.
     */
    path->manager = ngx_graph_notify_helper_manager;
    path->data = gmcf;

    if (ngx_add_path(cf, &path) != NGX_OK) {
        return NGX_ERROR;
    }

    gmcf->path = path;

    return NGX_OK;
}


static ngx_int_t
ngx_graph_notify_default_file(ngx_conf_t *cf, ngx_str_t *path,
    char *compiled, char *name, char *bare)
{
    u_char  *p;
    size_t   dir;

    p = (u_char *) compiled + ngx_strlen(compiled);

    while (p > (u_char *) compiled && p[-1] != '/') {
        p--;
    }

    dir = p - (u_char *) compiled;

    if (dir == 0) {
        /* a relative compiled-in default: the file goes under prefix */
        name = bare;
    }

    /* NUL-terminated: NGINX hands path names to system calls as they are */

    path->len = dir + ngx_strlen(name);
    path->data = ngx_pnalloc(cf->pool, path->len + 1);
    if (path->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(path->data, "%*s%s%Z", dir, compiled, name);

    return NGX_OK;
}


static char *
ngx_graph_notify_output(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    ngx_str_t  *value;

    if (gmcf->output) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "takes a file name";
    }

    /* opened by NGINX itself, so "nginx -s reopen" reopens it */
    gmcf->output = ngx_conf_open_file(cf->cycle, &value[1]);
    if (gmcf->output == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_graph_notify_output_mode(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i, mode;

    if (gmcf->output_mode != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    mode = 0;

    /* octal, as chmod takes it; the owner (the worker user) must write */

    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] < '0' || value[1].data[i] > '7' || i > 3) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid mode \"%V\", expected octal digits "
                               "such as 0640", &value[1]);
            return NGX_CONF_ERROR;
        }

        mode = mode * 8 + value[1].data[i] - '0';
    }

    if (value[1].len == 0 || mode > 0777 || (mode & 0600) != 0600) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid mode \"%V\", the owner needs read and "
                           "write (0600 to 0777)", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (mode & 0002) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "mode \"%V\" lets anyone on this host write the "
                           "output", &value[1]);
    }

    gmcf->output_mode = mode;

    return NGX_CONF_OK;
}


/* items wait for the sync in the queue: a second is as long as is useful */

static char *
ngx_graph_notify_check_sync_interval(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *interval = data;

    if (*interval > 1000) {
        return "must be at most 1s";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_graph_notify_output_create(ngx_open_file_t *file, ngx_uint_t mode,
    ngx_log_t *log)
{
    ngx_fd_t  fd;

    fd = ngx_open_file(file->name.data, NGX_FILE_APPEND,
                       NGX_FILE_CREATE_OR_OPEN|O_EXCL, mode);

    if (fd == NGX_INVALID_FILE) {
        if (ngx_errno == NGX_EEXIST) {
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      ngx_open_file_n " \"%V\" failed", &file->name);
        return NGX_ERROR;
    }

    /* exactly this mode, whatever the umask */

    if (fchmod(fd, (mode_t) mode) == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "fchmod() \"%V\" failed", &file->name);
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", &file->name);
    }

    return NGX_OK;
}


static void
ngx_graph_notify_output_reopen(ngx_open_file_t *file, ngx_log_t *log)
{
    ngx_graph_notify_main_conf_t *gmcf = file->data;

    /* nothing is buffered; lines of the old file still to sync are kept */

    ngx_graph_notify_commit_reopen(file, log);

    (void) ngx_graph_notify_output_create(file, gmcf->output_mode, log);
}


static char *
ngx_graph_notify_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    ngx_str_t  *value;

    if (gmcf->thread_pool_name.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

#if !(NGX_THREADS)

    if (ngx_strcmp(value[1].data, "off") != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "graph_notify_thread_pool \"%V\" needs an NGINX "
                           "built --with-threads; use \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

#endif

    if (value[1].len == 0) {
        return "takes a thread pool name or \"off\"";
    }

    gmcf->thread_pool_name = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_graph_notify_client_state(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_graph_notify_loc_conf_t *glcf = conf;

    ngx_str_t  *value, *cs;

    value = cf->args->elts;

    if (glcf->client_states == NULL) {
        glcf->client_states = ngx_array_create(cf->pool, 2,
                                               sizeof(ngx_str_t));
        if (glcf->client_states == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    cs = ngx_array_push(glcf->client_states);
    if (cs == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_graph_notify_conf_secret(cf, &value[1], cs,
                                        NGX_GRAPH_NOTIFY_CLIENT_STATE_MAX,
                                        "client state");
}


static char *
ngx_graph_notify_tenant(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_graph_notify_loc_conf_t *glcf = conf;

    ngx_str_t   *value, *t;
    ngx_uint_t   i;

    if (glcf->tenants) {
        return "is duplicate";
    }

    value = cf->args->elts;

    glcf->tenants = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                     sizeof(ngx_str_t));
    if (glcf->tenants == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_graph_notify_is_guid(&value[i]) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid tenant id \"%V\", expected a GUID",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        t = ngx_array_push(glcf->tenants);
        if (t == NULL) {
            return NGX_CONF_ERROR;
        }

        *t = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_graph_notify_decryption_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_graph_notify_loc_conf_t *glcf = conf;

    ngx_str_t               *value;
    ngx_uint_t               i;
    ngx_graph_notify_key_t  *key;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > 128) {
        return "needs a certificate id of 1 to 128 characters";
    }

    if (glcf->keys == NULL) {
        glcf->keys = ngx_array_create(cf->pool, 2,
                                      sizeof(ngx_graph_notify_key_t));
        if (glcf->keys == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    key = glcf->keys->elts;

    for (i = 0; i < glcf->keys->nelts; i++) {
        if (key[i].id.len == value[1].len
            && ngx_strncmp(key[i].id.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate certificate id \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    key = ngx_array_push(glcf->keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(key, sizeof(ngx_graph_notify_key_t));
    key->id = value[1];

    return ngx_graph_notify_key_load(cf, key, &value[2], &value[3]);
}


ngx_int_t
ngx_graph_notify_is_guid(ngx_str_t *s)
{
    u_char      c, l;
    ngx_uint_t  k;

    /* 8-4-4-4-12 hex digits (no isxdigit(): a call per byte, per item) */

    if (s->len != 36) {
        return NGX_DECLINED;
    }

    for (k = 0; k < 36; k++) {
        c = s->data[k];

        if (k == 8 || k == 13 || k == 18 || k == 23) {
            if (c != '-') {
                return NGX_DECLINED;
            }

            continue;
        }

        l = (u_char) (c | 0x20);

        if (!((c >= '0' && c <= '9') || (l >= 'a' && l <= 'f'))) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static char *
ngx_graph_notify_app_id(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    ngx_str_t  *value;

    if (gmcf->app.app_id.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_graph_notify_is_guid(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid application (client) id \"%V\", "
                           "expected a GUID", &value[1]);
        return NGX_CONF_ERROR;
    }

    gmcf->app.app_id = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_graph_notify_client_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    ngx_str_t  *value;

    if (gmcf->app.secret.len || gmcf->app.key) {
        return "is duplicate, or a client certificate is set already";
    }

    value = cf->args->elts;

    return ngx_graph_notify_conf_secret(cf, &value[1], &gmcf->app.secret,
                                        1024, "client secret");
}


static char *
ngx_graph_notify_client_certificate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    ngx_str_t  *value;

    if (gmcf->app.secret.len || gmcf->app.key) {
        return "is duplicate, or a client secret is set already";
    }

    value = cf->args->elts;

    gmcf->app.alg = NGX_GRAPH_NOTIFY_ASSERTION_PS256;

    if (cf->args->nelts == 4) {
        if (ngx_strcmp(value[3].data, "alg=RS256") == 0) {
            gmcf->app.alg = NGX_GRAPH_NOTIFY_ASSERTION_RS256;

        } else if (ngx_strcmp(value[3].data, "alg=PS256") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", expected "
                               "\"alg=PS256\" or \"alg=RS256\"", &value[3]);
            return NGX_CONF_ERROR;
        }
    }

    return ngx_graph_notify_app_certificate(cf, &gmcf->app, &value[1],
                                            &value[2]);
}


static char *
ngx_graph_notify_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t  *field, *value;

    field = (ngx_str_t *) (p + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    *field = value[1];

    if (ngx_strncmp(field->data, "https://", 8) != 0
        && ngx_strncmp(field->data, "http://", 7) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid URL \"%V\", expected https://HOST[:PORT]",
                           field);
        return NGX_CONF_ERROR;
    }

    if (ngx_strncmp(field->data, "http://", 7) == 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"%V\" is not HTTPS: use it for tests only",
                           field);
    }

    while (field->len > 8 && field->data[field->len - 1] == '/') {
        field->len--;
    }

    return NGX_CONF_OK;
}


static char *
ngx_graph_notify_ca_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    ngx_str_t         *value;
    ngx_file_info_t    fi;

    if (gmcf->ca_file.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    gmcf->ca_file = value[1];

    if (ngx_conf_full_name(cf->cycle, &gmcf->ca_file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_file_info(gmcf->ca_file.data, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_file_info_n " \"%V\" failed", &gmcf->ca_file);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_graph_notify_check_app(ngx_conf_t *cf, ngx_graph_notify_main_conf_t *gmcf)
{
    ngx_uint_t  credential;

    credential = (gmcf->app.secret.len || gmcf->app.key);

    if (gmcf->app.app_id.len && !credential) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "graph_notify_app_id needs "
                           "graph_notify_client_secret or "
                           "graph_notify_client_certificate");
        return NGX_CONF_ERROR;
    }

    if (credential && gmcf->app.app_id.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "a client credential is set without "
                           "graph_notify_app_id");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_graph_notify_init_wake(ngx_conf_t *cf,
    ngx_graph_notify_main_conf_t *gmcf)
{
#if (NGX_LINUX)

    ngx_pool_cleanup_t  *cln;

    /*
     * Created here, in the master, so that every worker and the helper
     * inherit it; the cycle pool's cleanup closes it once the cycle that
     * made it is gone.
     */

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    gmcf->wake_fd = eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC);

    if (gmcf->wake_fd == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "eventfd() failed");
        return NGX_ERROR;
    }

    cln->handler = ngx_graph_notify_close_wake;
    cln->data = gmcf;

#endif

    return NGX_OK;
}


static void
ngx_graph_notify_close_wake(void *data)
{
    ngx_graph_notify_main_conf_t *gmcf = data;

    if (gmcf->wake_fd != NGX_INVALID_FILE) {
        (void) close(gmcf->wake_fd);
        gmcf->wake_fd = NGX_INVALID_FILE;
    }
}


static ngx_int_t
ngx_graph_notify_init_process(ngx_cycle_t *cycle)
{
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_graph_notify_module);

    if (gmcf == NULL || gmcf->used_file.len == 0) {
        /* loaded but not used: leave the process as it is */
        return NGX_OK;
    }

#if (NGX_LINUX) && defined(M_TRIM_THRESHOLD)

    /*
     * The requests of one turn of the event loop live until the journal's
     * write at its end, all together: with glibc's default threshold
     * (128k) the heap they took is given back to the system after each
     * turn and faulted in again in the next one.  Kept up to 4m instead.
     */

    (void) mallopt(M_TRIM_THRESHOLD, NGX_GRAPH_NOTIFY_TRIM_THRESHOLD);

#endif

    /*
     * With a master process the helper is started by the path manager;
     * without one, the single process runs the helper's work itself.
     * Never fail here: in a helper process that would stop NGINX from
     * ever respawning it.
     */

    if (ngx_process != NGX_PROCESS_SINGLE) {
        return NGX_OK;
    }

    (void) ngx_graph_notify_helper_start(cycle);

    return NGX_OK;
}


static void
ngx_graph_notify_exit_process(ngx_cycle_t *cycle)
{
    /*
     * A single process: the subscription state's save in flight finished
     * and the last state saved, the output's last lines synced, items done.
     */

    ngx_graph_notify_sub_state_exit();
    ngx_graph_notify_commit_exit();
}
