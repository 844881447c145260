
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_CRC32C_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_CRC32C_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * CRC-32C (Castagnoli, as in iSCSI and ext4's metadata: reflected
 * polynomial 0x82f63b78, initial value and final xor 0xffffffff; the
 * check value of "123456789" is 0xe3069283).  On x86-64 with SSE 4.2 the
 * processor's crc32 instruction computes it, 8 bytes at a time; elsewhere
 * a table does, a byte at a time.  The first call chooses, once the
 * instruction has given the check value.
 */

uint32_t ngx_graph_notify_crc32c(u_char *p, size_t len);


#endif /* _NGX_GRAPH_NOTIFY_CRC32C_H_INCLUDED_ */
