
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"


/*
 * Appends whole lines to the NDJSON output.  The file is an NGINX open
 * file (O_APPEND, reopened on "nginx -s reopen"); a short write is cut
 * back so that a reader never sees half a line, and the data is synced
 * before the caller frees the queue items it came from.
 */

ngx_int_t
ngx_graph_notify_output_append(ngx_open_file_t *file, u_char *buf,
    size_t len, ngx_log_t *log)
{
    off_t      end;
    ssize_t    n;
    ngx_err_t  err;

    end = lseek(file->fd, 0, SEEK_END);

    if (end == -1) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "graph_notify: lseek(\"%V\") failed", &file->name);
        return NGX_ERROR;
    }

    n = write(file->fd, buf, len);

    if (n == (ssize_t) len) {

#if (NGX_LINUX)
        if (fdatasync(file->fd) == 0) {
            return NGX_OK;
        }
#else
        if (fsync(file->fd) == 0) {
            return NGX_OK;
        }
#endif

        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "graph_notify: syncing \"%V\" failed", &file->name);
        return NGX_ERROR;
    }

    err = (n == -1) ? ngx_errno : NGX_ENOSPC;

    ngx_log_error(NGX_LOG_CRIT, log, err,
                  "graph_notify: writing %uz bytes to \"%V\" failed, "
                  "items are kept and retried", len, &file->name);

    if (n > 0 && ftruncate(file->fd, end) == -1) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "graph_notify: truncating \"%V\" to %O failed",
                      &file->name, end);
    }

    return NGX_ERROR;
}
