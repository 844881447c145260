
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"

#include <sys/file.h>


/*
 * The index of call records written: (id, version) pairs, so that each
 * version reaches the output once although Graph delivers at least once.
 *
 * It lives in the helper's memory and in "callrecords.index" in the
 * helper's directory, one line per write: "VERSION UNIXTIME ID".  Lines
 * that other helpers (an old one during a reload) append are read back
 * before each decision.  Entries older than Graph's 30-day retention are
 * forgotten; the file is rewritten by the one helper holding the lock.
 */


#define NGX_GRAPH_NOTIFY_INDEX_KEEP   (30 * 24 * 60 * 60)
#define NGX_GRAPH_NOTIFY_INDEX_ID_MAX 128


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     by_time;
    ngx_uint_t                      count;

    ngx_str_t                       name;
    ngx_str_t                       tmp_name;
    ngx_str_t                       lock_name;
    ngx_fd_t                        fd;
    ngx_fd_t                        lock_fd;
    off_t                           offset;
    ngx_uint_t                      lines;
    ngx_uint_t                      locked;
    ngx_log_t                      *log;
} ngx_graph_notify_index_t;


static ngx_int_t ngx_graph_notify_index_read(ngx_graph_notify_index_t *ix);
static void ngx_graph_notify_index_line(ngx_graph_notify_index_t *ix,
    u_char *p, u_char *last);
static ngx_graph_notify_index_node_t *ngx_graph_notify_index_lookup(
    ngx_graph_notify_index_t *ix, ngx_str_t *id, ngx_uint_t create);
static void ngx_graph_notify_index_touch(ngx_graph_notify_index_t *ix,
    ngx_graph_notify_index_node_t *node, int64_t version, time_t written);
static ngx_int_t ngx_graph_notify_index_compact(ngx_graph_notify_index_t *ix);
static void ngx_graph_notify_index_cleanup(void *data);


static ngx_graph_notify_index_t  *ngx_graph_notify_index;


ngx_int_t
ngx_graph_notify_index_open(ngx_cycle_t *cycle, ngx_str_t *dir)
{
    u_char                    *p;
    size_t                     len;
    ngx_pool_cleanup_t        *cln;
    ngx_graph_notify_index_t  *ix;

    ix = ngx_pcalloc(cycle->pool, sizeof(ngx_graph_notify_index_t));
    if (ix == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_graph_notify_index_cleanup;
    cln->data = ix;

    ngx_rbtree_init(&ix->rbtree, &ix->sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ix->by_time);
    ix->log = cycle->log;
    ix->fd = NGX_INVALID_FILE;
    ix->lock_fd = NGX_INVALID_FILE;

    len = dir->len + sizeof("/callrecords.index.tmp");

    p = ngx_pnalloc(cycle->pool, 3 * len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ix->name.data = p;
    ix->name.len = ngx_sprintf(p, "%V/callrecords.index%Z", dir) - p - 1;

    p += len;
    ix->tmp_name.data = p;
    ix->tmp_name.len = ngx_sprintf(p, "%V/callrecords.index.tmp%Z", dir)
                       - p - 1;

    p += len;
    ix->lock_name.data = p;
    ix->lock_name.len = ngx_sprintf(p, "%V/callrecords.lock%Z", dir) - p - 1;

    ix->fd = ngx_open_file(ix->name.data, O_RDWR | O_APPEND,
                           NGX_FILE_CREATE_OR_OPEN, NGX_FILE_DEFAULT_ACCESS);

    if (ix->fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, ix->log, ngx_errno,
                      "graph_notify: " ngx_open_file_n " \"%V\" failed, "
                      "call records may be written more than once",
                      &ix->name);
        return NGX_ERROR;
    }

    ix->lock_fd = ngx_open_file(ix->lock_name.data, NGX_FILE_RDWR,
                                NGX_FILE_CREATE_OR_OPEN,
                                NGX_FILE_DEFAULT_ACCESS);

    ngx_graph_notify_index = ix;

    if (ngx_graph_notify_index_read(ix) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, ix->log, 0,
                  "graph_notify: index \"%V\": %ui call record(s) known",
                  &ix->name, ix->count);

    ngx_graph_notify_index_maintain();

    return NGX_OK;
}


void
ngx_graph_notify_index_sync(void)
{
    ngx_file_info_t            fi;
    ngx_graph_notify_index_t  *ix;

    ix = ngx_graph_notify_index;

    if (ix == NULL) {
        return;
    }

    /* lines another helper appended since we last looked */

    if (ngx_fd_info(ix->fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) <= ix->offset)
    {
        return;
    }

    (void) ngx_graph_notify_index_read(ix);
}


static ngx_int_t
ngx_graph_notify_index_read(ngx_graph_notify_index_t *ix)
{
    u_char   *p, *last, *start;
    ssize_t   n;
    size_t    len;
    u_char    buf[65536];

    len = 0;

    for ( ;; ) {
        n = pread(ix->fd, buf + len, sizeof(buf) - len, ix->offset + len);

        if (n == -1) {
            ngx_log_error(NGX_LOG_CRIT, ix->log, ngx_errno,
                          "graph_notify: reading \"%V\" failed", &ix->name);
            return NGX_ERROR;
        }

        if (n == 0) {
            return NGX_OK;
        }

        last = buf + len + n;
        start = buf;

        for (p = buf; p < last; p++) {
            if (*p == LF) {
                ngx_graph_notify_index_line(ix, start, p);
                start = p + 1;
            }
        }

        /* only whole lines count; a partial one is read again later */

        ix->offset += start - buf;
        len = last - start;

        if (len == sizeof(buf)) {
            /* a line longer than any we write: skip it */
            ix->offset += len;
            len = 0;
        }

        ngx_memmove(buf, start, len);
    }
}


static void
ngx_graph_notify_index_line(ngx_graph_notify_index_t *ix, u_char *p,
    u_char *last)
{
    u_char                         *sp1, *sp2;
    time_t                          written;
    int64_t                         version;
    ngx_str_t                       id;
    ngx_graph_notify_index_node_t  *node;

    ix->lines++;

    sp1 = ngx_strlchr(p, last, ' ');
    sp2 = sp1 ? ngx_strlchr(sp1 + 1, last, ' ') : NULL;

    if (sp2 == NULL) {
        return;
    }

    version = ngx_atoof(p, sp1 - p);
    written = ngx_atotm(sp1 + 1, sp2 - sp1 - 1);

    id.data = sp2 + 1;
    id.len = last - id.data;

    if (version <= 0 || written == NGX_ERROR || id.len == 0
        || id.len > NGX_GRAPH_NOTIFY_INDEX_ID_MAX
        || written < ngx_time() - NGX_GRAPH_NOTIFY_INDEX_KEEP)
    {
        return;
    }

    node = ngx_graph_notify_index_lookup(ix, &id, 1);

    if (node && version > node->version) {
        ngx_graph_notify_index_touch(ix, node, version, written);
    }
}


ngx_graph_notify_index_node_t *
ngx_graph_notify_index_get(ngx_str_t *id)
{
    if (ngx_graph_notify_index == NULL) {
        return NULL;
    }

    return ngx_graph_notify_index_lookup(ngx_graph_notify_index, id, 1);
}


static ngx_graph_notify_index_node_t *
ngx_graph_notify_index_lookup(ngx_graph_notify_index_t *ix, ngx_str_t *id,
    ngx_uint_t create)
{
    uint32_t                        hash;
    ngx_graph_notify_index_node_t  *node;

    hash = ngx_crc32_short(id->data, id->len);

    node = (ngx_graph_notify_index_node_t *)
               ngx_str_rbtree_lookup(&ix->rbtree, id, hash);

    if (node || !create) {
        return node;
    }

    node = ngx_alloc(sizeof(ngx_graph_notify_index_node_t) + id->len,
                     ix->log);
    if (node == NULL) {
        return NULL;
    }

    ngx_memzero(node, sizeof(ngx_graph_notify_index_node_t));

    node->sn.node.key = hash;
    node->sn.str.data = (u_char *) node + sizeof(*node);
    node->sn.str.len = id->len;
    ngx_memcpy(node->sn.str.data, id->data, id->len);

    ngx_rbtree_insert(&ix->rbtree, &node->sn.node);
    ngx_queue_init(&node->by_time);

    ix->count++;

    return node;
}


static void
ngx_graph_notify_index_touch(ngx_graph_notify_index_t *ix,
    ngx_graph_notify_index_node_t *node, int64_t version, time_t written)
{
    node->version = version;
    node->written = written;

    /* the queue stays in write order: the oldest first */

    if (!ngx_queue_empty(&node->by_time)) {
        ngx_queue_remove(&node->by_time);
    }

    ngx_queue_insert_tail(&ix->by_time, &node->by_time);
}


ngx_int_t
ngx_graph_notify_index_written(ngx_graph_notify_index_node_t *node,
    int64_t version)
{
    u_char                    *p;
    ssize_t                    n;
    ngx_graph_notify_index_t  *ix;
    u_char                     line[NGX_INT64_LEN + NGX_TIME_T_LEN
                                    + NGX_GRAPH_NOTIFY_INDEX_ID_MAX + 3];

    ix = ngx_graph_notify_index;

    ngx_graph_notify_index_touch(ix, node, version, ngx_time());

    if (node->sn.str.len > NGX_GRAPH_NOTIFY_INDEX_ID_MAX) {
        return NGX_OK;
    }

    p = ngx_sprintf(line, "%L %T %V\n", version, node->written,
                    &node->sn.str);

    n = write(ix->fd, line, p - line);

    if (n != p - line) {
        ngx_log_error(NGX_LOG_CRIT, ix->log, ngx_errno,
                      "graph_notify: writing to \"%V\" failed, this version "
                      "may be written again after a restart", &ix->name);
        return NGX_ERROR;
    }

    ix->lines++;

    /* our own line need not be read back */
    if (ix->offset == lseek(ix->fd, 0, SEEK_CUR) - (p - line)) {
        ix->offset += p - line;
    }

    return NGX_OK;
}


void
ngx_graph_notify_index_release(ngx_graph_notify_index_node_t *node)
{
    ngx_graph_notify_index_t  *ix;

    /* a record never written, e.g. dropped: nothing to remember */

    ix = ngx_graph_notify_index;

    if (node->version || node->active) {
        return;
    }

    ngx_rbtree_delete(&ix->rbtree, &node->sn.node);
    ix->count--;
    ngx_free(node);
}


void
ngx_graph_notify_index_maintain(void)
{
    time_t                          old;
    ngx_queue_t                    *qe;
    ngx_graph_notify_index_t       *ix;
    ngx_graph_notify_index_node_t  *node;

    ix = ngx_graph_notify_index;

    if (ix == NULL) {
        return;
    }

    old = ngx_time() - NGX_GRAPH_NOTIFY_INDEX_KEEP;

    while (!ngx_queue_empty(&ix->by_time)) {
        qe = ngx_queue_head(&ix->by_time);
        node = ngx_queue_data(qe, ngx_graph_notify_index_node_t, by_time);

        if (node->written >= old) {
            break;
        }

        ngx_queue_remove(qe);
        ngx_queue_init(qe);

        node->version = 0;
        ngx_graph_notify_index_release(node);
    }

    /*
     * Only the helper holding the lock rewrites the file, so that two
     * helpers (during a reload) never race on it.
     */

    if (!ix->locked && ix->lock_fd != NGX_INVALID_FILE
        && flock(ix->lock_fd, LOCK_EX | LOCK_NB) == 0)
    {
        ix->locked = 1;
    }

    if (ix->locked && ix->lines > 2 * ix->count + 1024) {
        (void) ngx_graph_notify_index_compact(ix);
    }
}


static ngx_int_t
ngx_graph_notify_index_compact(ngx_graph_notify_index_t *ix)
{
    u_char                         *p, *last;
    ngx_fd_t                        fd;
    ngx_uint_t                      lines;
    ngx_queue_t                    *qe;
    ngx_graph_notify_index_node_t  *node;
    u_char                          buf[65536];

    ngx_graph_notify_index_sync();

    fd = ngx_open_file(ix->tmp_name.data, O_RDWR | O_APPEND,
                       NGX_FILE_TRUNCATE, NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, ix->log, ngx_errno,
                      "graph_notify: " ngx_open_file_n " \"%V\" failed",
                      &ix->tmp_name);
        return NGX_ERROR;
    }

    p = buf;
    last = buf + sizeof(buf);
    lines = 0;

    for (qe = ngx_queue_head(&ix->by_time);
         qe != ngx_queue_sentinel(&ix->by_time);
         qe = ngx_queue_next(qe))
    {
        node = ngx_queue_data(qe, ngx_graph_notify_index_node_t, by_time);

        if ((size_t) (last - p) < NGX_INT64_LEN + NGX_TIME_T_LEN
                                  + NGX_GRAPH_NOTIFY_INDEX_ID_MAX + 3)
        {
            if (write(fd, buf, p - buf) != p - buf) {
                goto failed;
            }

            p = buf;
        }

        p = ngx_sprintf(p, "%L %T %V\n", node->version, node->written,
                        &node->sn.str);
        lines++;
    }

    if ((p > buf && write(fd, buf, p - buf) != p - buf) || fsync(fd) == -1) {
        goto failed;
    }

    if (ngx_rename_file(ix->tmp_name.data, ix->name.data) == NGX_FILE_ERROR) {
        goto failed;
    }

    (void) ngx_close_file(ix->fd);

    ix->fd = fd;
    ix->offset = lseek(fd, 0, SEEK_END);
    ix->lines = lines;

    ngx_log_error(NGX_LOG_INFO, ix->log, 0,
                  "graph_notify: index \"%V\" rewritten, %ui line(s)",
                  &ix->name, lines);

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_ERR, ix->log, ngx_errno,
                  "graph_notify: rewriting \"%V\" failed", &ix->name);

    (void) ngx_close_file(fd);
    (void) ngx_delete_file(ix->tmp_name.data);

    return NGX_ERROR;
}


static void
ngx_graph_notify_index_cleanup(void *data)
{
    ngx_graph_notify_index_t *ix = data;

    ngx_rbtree_node_t  *node;

    while (ix->rbtree.root != ix->rbtree.sentinel) {
        node = ngx_rbtree_min(ix->rbtree.root, ix->rbtree.sentinel);
        ngx_rbtree_delete(&ix->rbtree, node);
        ngx_free(node);
    }

    if (ix->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(ix->fd);
    }

    if (ix->lock_fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(ix->lock_fd);
    }

    if (ngx_graph_notify_index == ix) {
        ngx_graph_notify_index = NULL;
    }
}
