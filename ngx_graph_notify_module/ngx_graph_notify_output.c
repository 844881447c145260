
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"


/*
 * Appends whole lines to the NDJSON output.  The file is an NGINX open
 * file (O_APPEND, reopened on "nginx -s reopen"); a short write is cut
 * back so that a reader never sees half a line.  The data must be synced
 * before the caller frees the queue items it came from: here with "sync",
 * else by the caller (the helper's group commit, ngx_graph_notify_commit.c).
 */

ngx_int_t
ngx_graph_notify_output_append(ngx_open_file_t *file, ngx_uint_t sync,
    u_char *buf, size_t len, ngx_log_t *log)
{
    off_t      end;
    ssize_t    n;
    ngx_err_t  err;

    static time_t  logged;

    end = lseek(file->fd, 0, SEEK_END);

    if (end == -1) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "graph_notify: lseek(\"%V\") failed", &file->name);
        return NGX_ERROR;
    }

    n = write(file->fd, buf, len);

    if (n == (ssize_t) len) {

        if (!sync) {
            logged = 0;
            return NGX_OK;
        }

#if (NGX_LINUX)
        if (fdatasync(file->fd) == 0) {
            logged = 0;
            return NGX_OK;
        }
#else
        if (fsync(file->fd) == 0) {
            logged = 0;
            return NGX_OK;
        }
#endif

        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "graph_notify: syncing \"%V\" failed", &file->name);
        return NGX_ERROR;
    }

    err = (n == -1) ? ngx_errno : NGX_ENOSPC;

    /* retried every second: one line a minute is enough while it lasts */

    if (ngx_time() - logged >= 60) {
        logged = ngx_time();
        ngx_log_error(NGX_LOG_CRIT, log, err,
                      "graph_notify: writing %uz bytes to \"%V\" failed, "
                      "items are kept and retried", len, &file->name);
    }

    if (n > 0 && ftruncate(file->fd, end) == -1) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "graph_notify: truncating \"%V\" to %O failed",
                      &file->name, end);
    }

    return NGX_ERROR;
}


/* "2026-11-23T14:39:14.739Z": the time stamps of the output lines */

u_char *
ngx_graph_notify_timestamp(u_char *buf)
{
    ngx_tm_t     tm;
    ngx_time_t  *tp;

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    return ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ%Z",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       tp->msec);
}


uint64_t
ngx_graph_notify_parse_timestamp(const char *s)
{
    int64_t     y, m, d, days, era;
    uint64_t    ms;
    ngx_uint_t  i;
    int         f[7];

    static const int  at[7] = { 0, 5, 8, 11, 14, 17, 20 };
    static const int  len[7] = { 4, 2, 2, 2, 2, 2, 3 };

    /* only the form ngx_graph_notify_timestamp() writes */

    if (s == NULL || ngx_strlen(s) != 24 || s[23] != 'Z') {
        return 0;
    }

    for (i = 0; i < 7; i++) {
        f[i] = ngx_atoi((u_char *) s + at[i], len[i]);

        if (f[i] == NGX_ERROR) {
            return 0;
        }
    }

    /* days from the civil date, proleptic Gregorian */

    y = f[0] - (f[1] <= 2);
    m = f[1];
    d = f[2];
    era = y / 400;

    days = era * 146097
           + (365 * (y - era * 400) + (y - era * 400) / 4
              - (y - era * 400) / 100
              + (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1)
           - 719468;

    ms = (uint64_t) (days * 86400 + f[3] * 3600 + f[4] * 60 + f[5]) * 1000
         + f[6];

    return ms;
}
