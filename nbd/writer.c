/*
 * Writing to an NBD export: one connection, one request at a time
 * (NBD_CMD_WRITE, then NBD_CMD_FLUSH when the server offers it). A
 * restore's writes are large (up to 8 MiB) and come in disk order from
 * one thread, so the wait for each reply costs little next to the data;
 * what matters is that every write is answered before the next, so an
 * error names the write that failed.
 *
 * The reply goes through the same push parser as reads (reply.c): a
 * simple reply, or a structured one (NONE with DONE, or an error chunk),
 * checked against the one request in flight.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "common/common.h"
#include "nbd/nbd_int.h"

struct fy_nbd_writer {
	struct nbd_uri uri;
	struct fy_nbd_opts opts;
	struct nbd_conn_cfg ccfg;
	struct ssl_ctx_st *tls_ctx;
	struct nbd_conn *conn;
	struct nbd_export ex;
	struct nbd_rx rx;
	struct nbd_cmd cmd;
	uint64_t cookie;
	uint32_t max_write;
	char name[256];
	int broken;              /* sticky: the stream is out of step */
	int (*release)(void *, bool); /* fy_nbd_writer_set_release */
	void *release_arg;
};

static struct nbd_cmd *lookup(void *opaque, uint64_t cookie)
{
	struct fy_nbd_writer *w = opaque;

	return cookie == w->cmd.cookie && !w->cmd.done ? &w->cmd : NULL;
}

static void done(void *opaque, struct nbd_cmd *cmd)
{
	(void)opaque;
	(void)cmd;
}

static const struct nbd_rx_ops rx_ops = { lookup, done };

/* Reads until the reply to w->cmd is complete, within the read timeout. */
static int recv_reply(struct fy_nbd_writer *w)
{
	double deadline = nbd_deadline_after(w->opts.read_timeout_ms);
	uint8_t *where;
	size_t want;
	int rc;

	while (!w->cmd.done) {
		want = nbd_rx_want(&w->rx, &where);
		if (!want)
			return fy_err_set(-EPROTO, "nbd: %s: the reply stream "
					  "is broken", w->name);
		rc = nbd_conn_read_full(w->conn, where, want, deadline,
					"in the middle of a request");
		if (rc == 0)
			rc = nbd_rx_got(&w->rx, want);
		if (rc)
			return rc;
	}
	return 0;
}

/* Sends one request (header, then payload from iov) and waits for its
 * reply. The server's error is the request's, with its message. */
static int request(struct fy_nbd_writer *w, uint16_t type, uint64_t off,
		   const struct iovec *iov, int iovcnt, uint32_t len)
{
	uint8_t hdr[NBD_REQUEST_SIZE];
	double deadline;
	int i, rc;

	if (w->broken)
		return fy_err_set(w->broken, "nbd: %s: an earlier request "
				  "failed on the wire", w->name);
	memset(&w->cmd, 0, sizeof(w->cmd));
	w->cmd.cookie = ++w->cookie;
	w->cmd.type = type;
	w->cmd.offset = off;
	w->cmd.length = len;
	nbd_cmd_reset_reply(&w->cmd);
	nbd_encode_request(hdr, 0, type, w->cmd.cookie, off, len);
	deadline = nbd_deadline_after(w->opts.write_timeout_ms);
	rc = nbd_conn_write_full(w->conn, hdr, sizeof(hdr), deadline,
				 "sending a request");
	for (i = 0; rc == 0 && i < iovcnt; i++)
		rc = nbd_conn_write_full(w->conn, iov[i].iov_base,
					 iov[i].iov_len, deadline,
					 "sending a request");
	if (rc == 0)
		rc = recv_reply(w);
	if (rc < 0) {
		w->broken = rc;
		return rc;
	}
	if (w->cmd.error)
		return fy_err_set(w->cmd.error, "nbd: %s: the server refused "
				  "the %s of %" PRIu32 " bytes at %" PRIu64
				  "%s%s", w->name,
				  type == NBD_CMD_WRITE ? "write" : "flush",
				  len, off, w->cmd.message[0] ? ": " : "",
				  w->cmd.message);
	return 0;
}

int fy_nbd_writer_pwritev(struct fy_nbd_writer *w, const struct iovec *iov,
			  int iovcnt, uint64_t off)
{
	struct iovec part[64];
	size_t total = 0, skip = 0;
	int i, rc;

	for (i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (off > w->ex.size || total > w->ex.size - off)
		return fy_err_set(-EINVAL, "nbd: %s: a write of %zu bytes at "
				  "%" PRIu64 " is past the end (%" PRIu64 ")",
				  w->name, total, off, w->ex.size);
	if ((off | total) % w->ex.min_block)
		return fy_err_set(-EINVAL, "nbd: %s: writes must be whole "
				  "blocks of %" PRIu32 " bytes", w->name,
				  w->ex.min_block);
	/* Requests of at most max_write bytes, of at most 64 pieces. */
	i = 0;
	while (total) {
		uint32_t len = 0;
		int n = 0;

		while (i < iovcnt && n < 64 && len < w->max_write) {
			size_t avail = iov[i].iov_len - skip;
			size_t take = avail;

			if (take > w->max_write - len)
				take = w->max_write - len;
			part[n].iov_base = (uint8_t *)iov[i].iov_base + skip;
			part[n].iov_len = take;
			n++;
			len += (uint32_t)take;
			if (take == avail) {
				i++;
				skip = 0;
			} else {
				skip += take;
			}
		}
		if (len % w->ex.min_block)
			return fy_err_set(-EINVAL, "nbd: %s: a write's pieces "
					  "do not fall on %" PRIu32 "-byte "
					  "blocks", w->name, w->ex.min_block);
		rc = request(w, NBD_CMD_WRITE, off, part, n, len);
		if (rc < 0)
			return rc;
		off += len;
		total -= len;
	}
	return 0;
}

int fy_nbd_writer_flush(struct fy_nbd_writer *w)
{
	if (!(w->ex.flags & NBD_FLAG_SEND_FLUSH))
		return w->broken ? fy_err_set(w->broken, "nbd: %s: an earlier "
					      "request failed on the wire",
					      w->name)
				 : 0;
	return request(w, NBD_CMD_FLUSH, 0, NULL, 0, 0);
}

uint64_t fy_nbd_writer_size(const struct fy_nbd_writer *w)
{
	return w->ex.size;
}

void fy_nbd_writer_set_release(struct fy_nbd_writer *w,
			       int (*release)(void *, bool), void *arg)
{
	w->release = release;
	w->release_arg = arg;
}

int fy_nbd_writer_close(struct fy_nbd_writer *w)
{
	bool clean;
	int rc = 0;

	if (!w)
		return 0;
	/* NBD_CMD_DISC only between requests. */
	clean = !w->broken;
	nbd_conn_close(w->conn, clean);
	nbd_tls_ctx_free(w->tls_ctx);
	if (w->release)
		rc = w->release(w->release_arg, clean);
	free(w);
	return rc;
}

int fy_nbd_writer_open(const char *uri, const struct fy_nbd_opts *opts,
		       struct fy_nbd_writer **out)
{
	struct fy_nbd_writer *w = calloc(1, sizeof(*w));
	uint32_t max;
	int rc;

	*out = NULL;
	if (!w)
		return fy_err_set(-ENOMEM, "nbd: out of memory");
	if (opts)
		w->opts = *opts;
	else
		fy_nbd_opts_default(&w->opts);
	snprintf(w->name, sizeof(w->name), "%s", uri);
	rc = nbd_uri_parse(uri, &w->uri);
	if (rc == 0 && (w->uri.tls || w->opts.tls_required))
		rc = nbd_tls_ctx_new(&w->opts, &w->tls_ctx);
	if (rc < 0)
		goto fail;
	w->ccfg.uri = &w->uri;
	w->ccfg.opts = &w->opts;
	w->ccfg.tls_ctx = w->tls_ctx;
	w->ccfg.label = w->name;
	if (w->opts.tls_server_name)
		w->ccfg.server_name = w->opts.tls_server_name;
	else if (w->uri.tls_hostname[0])
		w->ccfg.server_name = w->uri.tls_hostname;
	else if (!w->uri.unix_socket)
		w->ccfg.server_name = w->uri.host;
	rc = nbd_conn_open(&w->ccfg, &w->conn);
	if (rc < 0)
		goto fail;
	w->ex = *nbd_conn_export(w->conn);
	if (w->ex.flags & NBD_FLAG_READ_ONLY) {
		rc = fy_err_set(-EROFS, "nbd: %s: the export is read-only",
				w->name);
		goto fail;
	}
	max = w->ex.max_payload ? w->ex.max_payload : NBD_MAX_REQUEST;
	if (max > NBD_MAX_REQUEST)
		max = NBD_MAX_REQUEST;
	w->max_write = max - max % w->ex.min_block;
	if (!w->max_write) {
		rc = fy_err_set(-EPROTO, "nbd: %s: no write size fits the "
				"server's block sizes", w->name);
		goto fail;
	}
	nbd_rx_init(&w->rx, &rx_ops, w, w->ex.structured, false, 0);
	*out = w;
	return 0;
fail:
	{
		char msg[FY_ERR_MAX];

		snprintf(msg, sizeof(msg), "%s", fy_err_msg());
		fy_nbd_writer_close(w);
		return fy_err_set(rc, "%s", msg);
	}
}
