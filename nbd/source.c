/*
 * The NBD disk source: fy_source_ops over one or more NBD connections.
 *
 * A call (read, read_batch, extents) becomes a batch of requests. The
 * batch engine keeps up to max_in_flight requests outstanding on its
 * connection and matches replies by cookie in any order. When the
 * connection drops, its requests go back on a queue, the connection is
 * reopened with exponential backoff and the requests are sent again;
 * after reconnect_attempts tries without a completed request the source
 * gives up for good (a sticky error, so a pipeline that keeps calling is
 * not held up again).
 *
 * A server that breaks the protocol (-EPROTO) is not retried: the reply
 * stream can no longer be trusted, the failing batch ends with the
 * parser's message, and the next call starts on a fresh connection.
 *
 * fy_nbd_source_open gives each connection a source of its own when it
 * opens several (multi-conn): a batch is split among them and each part
 * read on a thread of its own (the end of this file), so that receiving
 * runs on every core. Each of those sources drives one connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "nbd/nbd_int.h"

/* Bytes buffered from the socket for headers and small chunks. */
#define NBD_INBUF (64 * 1024)
/* Payload wanted in one piece at least this large goes from the socket
 * straight into the caller's buffer. */
#define NBD_DIRECT_READ (16 * 1024)
/* Merged extents kept from one block status reply; the rest is asked
 * again from where these end. */
#define NBD_STATUS_EXTENTS 4096
/* Range asked in one block status request (a hint to the server). */
#define NBD_STATUS_SPAN (1u << 31)
#define NBD_MAX_BACKOFF_MS 60000

struct nbd_source;
struct batch;

/* One connection and its transmission state. */
struct link {
	struct nbd_source *s;
	struct batch *batch;	/* the batch being run, for callbacks */
	struct nbd_conn *conn;	/* NULL while disconnected */
	struct nbd_rx rx;
	uint8_t *in;		/* NBD_INBUF bytes */
	size_t in_pos, in_len;
	uint8_t *out;		/* unsent request headers */
	size_t out_pos, out_len, out_cap;
	struct nbd_cmd **inflight;
	unsigned ninflight;
	double rx_since;	/* last reply byte, or when it got busy */
	double tx_since;	/* last request byte, or when output queued */
	bool shutdown_seen;	/* the server answered NBD_ESHUTDOWN */
};

/* A request as the engine tracks it. */
struct piece {
	struct nbd_cmd cmd;	/* first: the parser hands back cmd */
	size_t io;		/* READ: index of its fy_io */
	uint8_t *bounce;	/* min_block bytes, allocated when needed */
	bool bounced;		/* the piece reaches outside its io */
};

struct nbd_source {
	struct fy_source base;	/* first, as fy_source requires */
	pthread_mutex_t lock;	/* one caller at a time */
	struct fy_nbd_opts opts;
	char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
	struct nbd_uri uri;
	struct ssl_ctx_st *tls_ctx;
	struct nbd_conn_cfg ccfg;
	struct nbd_export ex;	/* what the first connection agreed */
	uint32_t min_block;	/* requests are multiples of this */
	uint32_t max_request;	/* read split size, a multiple of it */
	/* One connection, driven by the calling thread. Several connections
	 * (multi-conn) are several sources, each read by a thread of its own
	 * (struct nbd_multi below). */
	struct link link;
	struct piece *pool;
	size_t npool;
	struct piece **free_pieces;
	size_t nfree;
	struct piece **retry;
	size_t nretry;
	uint64_t next_cookie;
	int broken;		/* sticky: reconnects ran out */
	char broken_msg[FY_ERR_MAX];
	char lost_msg[FY_ERR_MAX]; /* why the last connection dropped */
	struct fy_nbd_stats stats;
};

struct batch {
	struct nbd_source *s;
	/* reads */
	struct fy_io *ios;
	size_t nios;
	size_t next_io;		/* first io not fully made into pieces */
	bool io_started;
	uint64_t io_end;	/* end of next_io, clipped to the export */
	uint64_t next_pos;	/* where its next piece starts */
	/* block status */
	bool status_mode;	/* the batch is one NBD_CMD_BLOCK_STATUS */
	struct piece *status;
	bool status_sent;
	struct nbd_extent *extents;
	uint64_t status_off;
	uint32_t status_len;

	bool (*produce)(struct batch *b, struct piece *p);
	void (*complete)(struct batch *b, struct piece *p);
	size_t outstanding;	/* pieces in flight on some link */
	unsigned failures;	/* reconnects since a request completed */
	int abort;		/* stop producing: a protocol violation */
	int rc;			/* first failure, and its message */
	char msg[FY_ERR_MAX];
};

static const struct fy_source_ops nbd_ops, nbdssl_ops;
static const struct fy_source_ops multi_nbd_ops, multi_nbdssl_ops;

__attribute__((format(printf, 3, 4)))
static void nbd_log(const struct nbd_source *s, int level, const char *fmt,
		    ...)
{
	char buf[FY_ERR_MAX];
	va_list ap;

	if (level > s->opts.log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fy_log(level, "%s", buf);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static uint64_t round_down(uint64_t v, uint64_t align)
{
	return v - v % align;
}

/* Records the first failure of a batch; the message is taken from the
 * thread's current error. */
static void batch_fail(struct batch *b, int rc)
{
	if (b->rc)
		return;
	b->rc = rc;
	snprintf(b->msg, sizeof(b->msg), "%s", fy_err_msg());
}

/* ---- pieces ------------------------------------------------------------ */

static struct piece *piece_get(struct nbd_source *s)
{
	return s->nfree ? s->free_pieces[--s->nfree] : NULL;
}

static void piece_put(struct nbd_source *s, struct piece *p)
{
	s->free_pieces[s->nfree++] = p;
}

/* ---- links ------------------------------------------------------------- */

static struct nbd_cmd *link_lookup(void *opaque, uint64_t cookie)
{
	struct link *l = opaque;
	unsigned i;

	for (i = 0; i < l->ninflight; i++)
		if (l->inflight[i]->cookie == cookie)
			return l->inflight[i];
	return NULL;
}

static void link_done(void *opaque, struct nbd_cmd *cmd)
{
	struct link *l = opaque;
	struct batch *b = l->batch;
	struct piece *p = (struct piece *)cmd;
	unsigned i;

	for (i = 0; i < l->ninflight; i++) {
		if (l->inflight[i] == cmd) {
			l->inflight[i] = l->inflight[--l->ninflight];
			break;
		}
	}
	b->outstanding--;
	/* The server is going away: send it again elsewhere, and close
	 * this connection politely once the pump returns. */
	if (cmd->error == -ESHUTDOWN) {
		l->shutdown_seen = true;
		b->s->retry[b->s->nretry++] = p;
		return;
	}
	b->failures = 0;
	b->complete(b, p);
}

static const struct nbd_rx_ops link_rx_ops = {
	.lookup = link_lookup,
	.done = link_done,
};

static void fold_counters(struct nbd_source *s, struct link *l)
{
	s->stats.data_bytes += l->rx.data_bytes;
	s->stats.hole_bytes += l->rx.hole_bytes;
	l->rx.data_bytes = 0;
	l->rx.hole_bytes = 0;
}

static void link_attach(struct link *l, struct nbd_conn *c)
{
	const struct nbd_export *ex = nbd_conn_export(c);

	fold_counters(l->s, l);
	l->conn = c;
	nbd_rx_init(&l->rx, &link_rx_ops, l, ex->structured, ex->has_meta,
		    ex->meta_id);
	l->in_pos = l->in_len = 0;
	l->out_pos = l->out_len = 0;
	l->ninflight = 0;
	l->shutdown_seen = false;
	l->s->stats.connections++;
}

static int link_alloc(struct link *l, struct nbd_source *s)
{
	l->s = s;
	l->in = malloc(NBD_INBUF);
	l->out_cap = (size_t)s->opts.max_in_flight * NBD_REQUEST_SIZE;
	l->out = malloc(l->out_cap);
	l->inflight = calloc(s->opts.max_in_flight, sizeof(*l->inflight));
	if (!l->in || !l->out || !l->inflight)
		return fy_err_set(-ENOMEM, "nbd: out of memory");
	return 0;
}

static void link_release(struct link *l)
{
	free(l->in);
	free(l->out);
	free(l->inflight);
}

static bool retryable(int rc)
{
	return rc != -EPROTO && rc != -ENOMEM && rc != -EINVAL;
}

/* The connection of l is unusable: close it and deal with what it had
 * in flight. The message explaining rc is the thread's current error. */
static void link_fail(struct batch *b, struct link *l, int rc)
{
	struct nbd_source *s = b->s;
	struct piece *p;
	unsigned i, n = l->ninflight;

	snprintf(s->lost_msg, sizeof(s->lost_msg), "%s", fy_err_msg());
	fold_counters(s, l);
	nbd_conn_close(l->conn, rc == -ESHUTDOWN && nbd_rx_idle(&l->rx));
	l->conn = NULL;
	s->stats.connections--;
	if (!retryable(rc)) {
		/* The reply stream cannot be trusted any more: fail what
		 * was in flight with this message and stop the batch. */
		batch_fail(b, rc);
		b->abort = rc;
	}
	for (i = 0; i < n; i++) {
		p = (struct piece *)l->inflight[i];
		if (retryable(rc)) {
			s->retry[s->nretry++] = p;
		} else {
			p->cmd.error = rc;
			p->cmd.done = true;
			b->complete(b, p);
		}
	}
	b->outstanding -= n;
	l->ninflight = 0;
	l->in_pos = l->in_len = 0;
	l->out_pos = l->out_len = 0;
	if (retryable(rc))
		nbd_log(s, FY_LOG_WARN, "%s%s", s->lost_msg,
			n && s->opts.reconnect_attempts
				? "; its requests will be sent again"
				: "");
}

static int link_flush(struct link *l)
{
	long n;

	while (l->out_pos < l->out_len) {
		n = nbd_conn_send(l->conn, l->out + l->out_pos,
				  l->out_len - l->out_pos);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0)
			return n ? (int)n : -EPIPE;
		l->out_pos += (size_t)n;
		l->tx_since = fy_now();
	}
	l->out_pos = l->out_len = 0;
	return 0;
}

/* Moves bytes from the socket into the parser until the socket has no
 * more. Small wants are served from a buffer; large payloads are read
 * straight to where the parser points. */
static int link_pump(struct link *l)
{
	struct nbd_source *s = l->s;
	uint8_t *where;
	size_t want, n;
	long got;
	int rc;

	for (;;) {
		want = nbd_rx_want(&l->rx, &where);
		if (!want)
			return -EPROTO;
		if (l->in_pos < l->in_len) {
			n = l->in_len - l->in_pos;
			if (n > want)
				n = want;
			memcpy(where, l->in + l->in_pos, n);
			l->in_pos += n;
			rc = nbd_rx_got(&l->rx, n);
			if (rc)
				return rc;
			continue;
		}
		if (want >= NBD_DIRECT_READ)
			got = nbd_conn_recv(l->conn, where, want);
		else
			got = nbd_conn_recv(l->conn, l->in, NBD_INBUF);
		if (got == -EAGAIN)
			return 0;
		if (got == 0)
			return fy_err_set(-ECONNRESET,
					  "nbd: %s: the server closed the "
					  "connection%s",
					  s->base.name,
					  l->ninflight ? " in the middle of "
							 "a request"
						       : "");
		if (got < 0)
			return (int)got;
		l->rx_since = fy_now();
		s->stats.wire_bytes += (uint64_t)got;
		if (want >= NBD_DIRECT_READ) {
			rc = nbd_rx_got(&l->rx, (size_t)got);
			if (rc)
				return rc;
		} else {
			l->in_pos = 0;
			l->in_len = (size_t)got;
		}
	}
}

static void link_send(struct link *l, struct piece *p)
{
	struct nbd_source *s = l->s;
	struct nbd_cmd *cmd = &p->cmd;
	double now = fy_now();

	cmd->cookie = ++s->next_cookie;
	nbd_cmd_reset_reply(cmd);
	/* Unsent bytes belong to requests in flight, so after moving them
	 * to the front there is room for one more. */
	if (l->out_pos) {
		memmove(l->out, l->out + l->out_pos, l->out_len - l->out_pos);
		l->out_len -= l->out_pos;
		l->out_pos = 0;
	}
	if (l->out_len == 0)
		l->tx_since = now;
	if (l->ninflight == 0)
		l->rx_since = now;
	nbd_encode_request(l->out + l->out_len, 0, cmd->type, cmd->cookie,
			   cmd->offset, cmd->length);
	l->out_len += NBD_REQUEST_SIZE;
	l->inflight[l->ninflight++] = cmd;
	l->batch->outstanding++;
	if (cmd->type == NBD_CMD_READ)
		s->stats.read_requests++;
	else
		s->stats.block_status_calls++;
}

/* ---- reconnecting ------------------------------------------------------ */

/* A reopened connection must show the same export: a different size or
 * stricter block sizes would make the requests queued so far wrong. */
static int check_same_export(struct nbd_source *s, struct nbd_conn *c)
{
	const struct nbd_export *ex = nbd_conn_export(c);
	uint32_t max = ex->max_payload ? ex->max_payload : NBD_MAX_REQUEST;

	if (ex->size != s->ex.size)
		return fy_err_set(-EIO, "nbd: %s: the export's size changed "
				  "from %" PRIu64 " to %" PRIu64
				  " across a reconnect",
				  s->base.name, s->ex.size, ex->size);
	if (ex->min_block > s->min_block || max < s->max_request ||
	    ex->structured != s->ex.structured ||
	    (s->ex.has_meta && !ex->has_meta))
		return fy_err_set(-EIO, "nbd: %s: the export's block sizes "
				  "or features changed across a reconnect",
				  s->base.name);
	return 0;
}

static int open_one(struct nbd_source *s, struct link *l)
{
	struct nbd_conn *c;
	int rc;

	rc = nbd_conn_open(&s->ccfg, &c);
	if (!rc)
		rc = check_same_export(s, c);
	if (rc) {
		nbd_conn_close(c, true);
		return rc;
	}
	link_attach(l, c);
	return 0;
}

/* Reopens l with exponential backoff, counting attempts in the batch so
 * a server that accepts and drops again cannot keep us forever. */
static int reconnect(struct batch *b, struct link *l)
{
	struct nbd_source *s = b->s;
	unsigned max = s->opts.reconnect_attempts, delay, i;
	char last[FY_ERR_MAX] = "";
	int rc;

	while (b->failures < max) {
		delay = s->opts.reconnect_base_ms;
		for (i = 0; i < b->failures && delay < NBD_MAX_BACKOFF_MS; i++)
			delay *= 2;
		if (delay > NBD_MAX_BACKOFF_MS)
			delay = NBD_MAX_BACKOFF_MS;
		sleep_ms(delay);
		b->failures++;
		rc = open_one(s, l);
		if (!rc) {
			s->stats.reconnects++;
			nbd_log(s, FY_LOG_INFO, "nbd: %s: reconnected (attempt "
				"%u of %u)", s->base.name, b->failures, max);
			return 0;
		}
		snprintf(last, sizeof(last), "%s", fy_err_msg());
		nbd_log(s, FY_LOG_WARN, "nbd: reconnect attempt %u of %u "
			"failed: %s", b->failures, max, last);
	}
	s->broken = max ? -EIO : -ECONNRESET;
	if (max && last[0])
		fy_err_set(s->broken, "%s; gave up after %u reconnect "
			   "attempt%s (last: %s)", s->lost_msg, max,
			   max == 1 ? "" : "s", last);
	else if (max)
		fy_err_set(s->broken, "%s; gave up after %u reconnect "
			   "attempt%s", s->lost_msg, max, max == 1 ? "" : "s");
	else
		fy_err_set(s->broken, "%s; reconnecting is disabled",
			   s->lost_msg);
	snprintf(s->broken_msg, sizeof(s->broken_msg), "%s", fy_err_msg());
	return s->broken;
}

/* There is work to send: make sure the connection is up. */
static int ensure_link(struct batch *b)
{
	struct link *l = &b->s->link;
	int rc;

	if (l->conn)
		return 0;
	rc = reconnect(b, l);
	if (rc)
		return rc;
	/* Time spent connecting is nobody's reply being late. */
	l->rx_since = l->tx_since = fy_now();
	return 0;
}

/* ---- the batch engine -------------------------------------------------- */

static struct piece *next_piece(struct batch *b)
{
	struct nbd_source *s = b->s;
	struct piece *p;

	if (b->abort)
		return NULL;
	if (s->nretry)
		return s->retry[--s->nretry];
	p = piece_get(s);
	if (p && !b->produce(b, p)) {
		piece_put(s, p);
		p = NULL;
	}
	return p;
}

static bool more_work(struct batch *b)
{
	struct nbd_source *s = b->s;

	if (b->abort)
		return false;
	if (s->nretry)
		return true;
	if (b->status_mode)
		return !b->status_sent;
	return b->next_io < b->nios;
}

/* Sends pieces up to the connection's limit of requests in flight. */
static void fill(struct batch *b)
{
	struct nbd_source *s = b->s;
	struct link *l = &s->link;
	struct piece *p;
	int rc;

	if (!l->conn)
		return;
	while (l->ninflight < s->opts.max_in_flight && (p = next_piece(b)))
		link_send(l, p);
	rc = link_flush(l);
	if (rc)
		link_fail(b, l, rc);
}

/* Waits for the connection to move, if it has work; a connection silent
 * past its timeout is failed. */
static int wait_and_pump(struct batch *b)
{
	struct nbd_source *s = b->s;
	struct link *l = &s->link;
	bool sending = l->out_pos < l->out_len;
	struct pollfd pfd;
	double now = fy_now(), due = 0;
	int timeout = -1, rc;

	if (!l->conn || (!l->ninflight && !sending))
		return 0;
	if (l->ninflight && s->opts.read_timeout_ms)
		due = l->rx_since + s->opts.read_timeout_ms / 1000.0;
	if (sending && s->opts.write_timeout_ms &&
	    (!due || l->tx_since + s->opts.write_timeout_ms / 1000.0 < due))
		due = l->tx_since + s->opts.write_timeout_ms / 1000.0;
	if (due && due <= now) {
		rc = fy_err_set(-ETIMEDOUT, "nbd: %s: %s for %u ms",
				s->base.name,
				sending ? "could not send a request"
					: "no reply from the server",
				sending ? s->opts.write_timeout_ms
					: s->opts.read_timeout_ms);
		link_fail(b, l, rc);
		return 0;
	}
	if (due)
		timeout = (int)((due - now) * 1000) + 1;
	pfd.fd = nbd_conn_fd(l->conn);
	pfd.events = nbd_conn_events(l->conn, sending);
	pfd.revents = 0;
	rc = poll(&pfd, 1, timeout);
	if (rc < 0) {
		if (errno == EINTR)
			return 0;
		return fy_err_set(-errno, "nbd: poll: %s", strerror(errno));
	}
	if (!pfd.revents)
		return 0;
	rc = link_flush(l);
	if (!rc) {
		rc = link_pump(l);
		/* The parser knows the bytes, not where they came from. */
		if (rc == -EPROTO)
			fy_err_wrap(rc, "nbd: %s", s->base.name);
	}
	if (!rc && l->shutdown_seen)
		rc = fy_err_set(-ESHUTDOWN, "nbd: %s: the server is shutting "
				"down", s->base.name);
	if (rc)
		link_fail(b, l, rc);
	return 0;
}

static int run(struct batch *b)
{
	struct nbd_source *s = b->s;
	struct piece *p;
	int rc;

	s->link.batch = b;
	for (;;) {
		if (more_work(b)) {
			rc = ensure_link(b);
			if (rc) {
				batch_fail(b, rc);
				b->abort = rc;
			}
		}
		fill(b);
		if (!b->outstanding && !more_work(b))
			break;
		rc = wait_and_pump(b);
		if (rc) {
			batch_fail(b, rc);
			b->abort = rc;
			if (s->link.conn)
				link_fail(b, &s->link, -EPROTO);
		}
	}
	/* Requests never sent again after a failure end with it. */
	while (s->nretry) {
		p = s->retry[--s->nretry];
		p->cmd.error = b->abort ? b->abort : -EIO;
		b->complete(b, p);
	}
	s->link.batch = NULL;
	return b->rc;
}

/* ---- reads ------------------------------------------------------------- */

static bool produce_read(struct batch *b, struct piece *p)
{
	struct nbd_source *s = b->s;
	uint64_t mb = s->min_block, size = s->base.size, ps, pe, len, from;
	struct fy_io *io;

	while (b->next_io < b->nios) {
		io = &b->ios[b->next_io];
		if (!b->io_started) {
			b->io_started = true;
			io->result = 0;
			if (io->len && (!io->buf ||
					io->offset + io->len < io->offset)) {
				io->result = fy_err_set(-EINVAL,
							"nbd: bad read of %zu "
							"bytes at %" PRIu64,
							io->len, io->offset);
				batch_fail(b, io->result);
				b->io_end = 0;
				b->next_pos = 0;
				goto next_io;
			}
			/* Past the end reads as zeros, as for a file. */
			b->io_end = io->offset + io->len;
			if (b->io_end > size) {
				from = io->offset > size ? io->offset : size;
				memset((uint8_t *)io->buf + (from - io->offset),
				       0, b->io_end - from);
				b->io_end = size;
			}
			b->next_pos = round_down(io->offset, mb);
		}
		if (b->next_pos >= b->io_end || io->offset >= b->io_end)
			goto next_io;

		ps = b->next_pos;
		if (ps < io->offset || ps + mb > b->io_end) {
			/* A block only partly wanted: read all of it aside,
			 * as the server's minimum block size demands. */
			if (!p->bounce)
				p->bounce = malloc(mb);
			if (!p->bounce) {
				io->result = fy_err_set(-ENOMEM, "nbd: out of "
							"memory");
				batch_fail(b, io->result);
				goto next_io;
			}
			pe = ps + mb < size ? ps + mb : size;
			p->bounced = true;
			p->cmd.buf = p->bounce;
		} else {
			len = round_down(b->io_end - ps, mb);
			if (len > s->max_request)
				len = s->max_request;
			pe = ps + len;
			p->bounced = false;
			p->cmd.buf = (uint8_t *)io->buf + (ps - io->offset);
		}
		p->cmd.type = NBD_CMD_READ;
		p->cmd.offset = ps;
		p->cmd.length = (uint32_t)(pe - ps);
		p->io = b->next_io;
		b->next_pos = pe;
		return true;
next_io:
		b->next_io++;
		b->io_started = false;
	}
	return false;
}

static void complete_read(struct batch *b, struct piece *p)
{
	struct nbd_source *s = b->s;
	struct fy_io *io = &b->ios[p->io];
	uint64_t end, lo, hi;
	int rc;

	if (p->cmd.error) {
		if (!io->result)
			io->result = p->cmd.error;
		if (!b->rc) {
			rc = fy_err_set(p->cmd.error,
					"nbd: %s: read of %" PRIu32
					" bytes at offset %" PRIu64
					" failed: %s%s%s",
					s->base.name, p->cmd.length,
					p->cmd.offset,
					strerror(-p->cmd.error),
					p->cmd.message[0] ? ": " : "",
					p->cmd.message);
			batch_fail(b, rc);
		}
	} else if (p->bounced) {
		end = io->offset + io->len;
		if (end > s->base.size)
			end = s->base.size;
		lo = p->cmd.offset > io->offset ? p->cmd.offset : io->offset;
		hi = p->cmd.offset + p->cmd.length < end
			     ? p->cmd.offset + p->cmd.length
			     : end;
		if (hi > lo)
			memcpy((uint8_t *)io->buf + (lo - io->offset),
			       p->bounce + (lo - p->cmd.offset), hi - lo);
	}
	piece_put(s, p);
}

static int check_usable(struct nbd_source *s)
{
	if (s->broken)
		return fy_err_set(s->broken, "%s", s->broken_msg);
	return 0;
}

static int nbd_read_batch(struct fy_source *src, struct fy_io *ios, size_t n)
{
	struct nbd_source *s = (struct nbd_source *)src;
	struct batch b = {
		.s = s,
		.ios = ios,
		.nios = n,
		.produce = produce_read,
		.complete = complete_read,
	};
	size_t i;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = check_usable(s);
	if (rc) {
		for (i = 0; i < n; i++)
			ios[i].result = rc;
		goto out;
	}
	rc = run(&b);
	/* ios not (fully) turned into requests share the batch's failure;
	 * after a clean run there are none. */
	for (i = b.next_io; i < n; i++)
		if (i > b.next_io || !b.io_started || !ios[i].result)
			ios[i].result = rc ? rc : -EIO;
	if (rc)
		fy_err_set(rc, "%s", b.msg);
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int nbd_read(struct fy_source *src, void *buf, size_t len,
		    uint64_t offset)
{
	struct fy_io io = { .buf = buf, .len = len, .offset = offset };

	return nbd_read_batch(src, &io, 1);
}

/* ---- extents ----------------------------------------------------------- */

static bool produce_status(struct batch *b, struct piece *p)
{
	if (b->status_sent)
		return false;
	b->status_sent = true;
	b->status = p;
	p->cmd.type = NBD_CMD_BLOCK_STATUS;
	p->cmd.offset = b->status_off;
	p->cmd.length = b->status_len;
	p->cmd.buf = NULL;
	p->cmd.extents = b->extents;
	p->cmd.extents_cap = NBD_STATUS_EXTENTS;
	return true;
}

static void complete_status(struct batch *b, struct piece *p)
{
	struct nbd_source *s = b->s;
	int rc;

	if (p->cmd.error && !b->rc) {
		rc = fy_err_set(p->cmd.error,
				"nbd: %s: block status of %" PRIu32
				" bytes at offset %" PRIu64 " failed: %s%s%s",
				s->base.name, p->cmd.length, p->cmd.offset,
				strerror(-p->cmd.error),
				p->cmd.message[0] ? ": " : "",
				p->cmd.message);
		batch_fail(b, rc);
	}
	/* Results are read by the caller; the piece stays valid. */
	piece_put(s, p);
}

/* One NBD_CMD_BLOCK_STATUS from cur (inside [.., end)): fills ext and
 * tells how far the answer reached. Called with the lock held. */
static int status_once(struct nbd_source *s, uint64_t cur, uint64_t end,
		       struct nbd_extent *ext, size_t *n, uint64_t *reached)
{
	uint64_t mb = s->min_block, start = round_down(cur, mb), len;
	struct batch b = {
		.s = s,
		.extents = ext,
		.produce = produce_status,
		.complete = complete_status,
		.status_mode = true,
		.status_off = start,
	};
	struct piece *p;
	int rc;

	rc = check_usable(s);
	if (rc)
		return rc;
	len = end - start;
	if (len % mb)
		len += mb - len % mb;
	if (len > s->base.size - start)
		len = s->base.size - start;
	if (len > NBD_STATUS_SPAN)
		len = NBD_STATUS_SPAN;
	b.status_len = (uint32_t)len;
	rc = run(&b);
	if (rc)
		return fy_err_set(rc, "%s", b.msg);
	p = b.status;
	if (!p)
		return fy_err_set(-EIO, "nbd: %s: block status was not sent",
				  s->base.name);
	*n = p->cmd.nextents;
	*reached = p->cmd.status_end;
	if (*reached <= cur)
		return fy_err_set(-EPROTO, "nbd: %s: block status at %" PRIu64
				  " made no progress", s->base.name, cur);
	return 0;
}

struct run_acc {
	fy_extent_cb cb;
	void *opaque;
	bool have;
	uint64_t off, len;
	enum fy_extent_kind kind;
};

/* Merges neighbouring extents of one kind before calling back. */
static int deliver(struct run_acc *a, uint64_t off, uint64_t len,
		   enum fy_extent_kind kind)
{
	int rc = 0;

	if (a->have && a->kind == kind && a->off + a->len == off) {
		a->len += len;
		return 0;
	}
	if (a->have)
		rc = a->cb(a->opaque, a->off, a->len, a->kind);
	a->have = true;
	a->off = off;
	a->len = len;
	a->kind = kind;
	return rc;
}

static int nbd_extents(struct fy_source *src, uint64_t offset,
		       uint64_t length, fy_extent_cb cb, void *opaque)
{
	struct nbd_source *s = (struct nbd_source *)src;
	struct run_acc acc = { .cb = cb, .opaque = opaque };
	struct nbd_extent *ext;
	uint64_t end, cur = offset, reached, lo, hi;
	size_t n, i;
	int rc = 0;

	if (!s->ex.has_meta)
		return fy_err_set(-ENOTSUP, "nbd: %s: the server did not "
				  "agree to base:allocation, so allocation "
				  "is unknown", s->base.name);
	end = offset + length < offset ? UINT64_MAX : offset + length;
	if (end > s->base.size)
		end = s->base.size;
	if (cur >= end)
		return 0;
	ext = malloc(NBD_STATUS_EXTENTS * sizeof(*ext));
	if (!ext)
		return fy_err_set(-ENOMEM, "nbd: out of memory");
	while (cur < end) {
		pthread_mutex_lock(&s->lock);
		rc = status_once(s, cur, end, ext, &n, &reached);
		pthread_mutex_unlock(&s->lock);
		if (rc)
			goto out;
		/* The callback runs unlocked: it may well read the data. */
		for (i = 0; i < n; i++) {
			lo = ext[i].offset > cur ? ext[i].offset : cur;
			hi = ext[i].offset + ext[i].length;
			if (hi > end)
				hi = end;
			if (hi <= lo)
				continue;
			/* Only NBD_STATE_ZERO promises zeros; a hole without
			 * it has undefined contents and must be read. */
			rc = deliver(&acc, lo, hi - lo,
				     ext[i].flags & NBD_STATE_ZERO
					     ? FY_EXTENT_ZERO
					     : FY_EXTENT_DATA);
			if (rc)
				goto out;
		}
		cur = reached < end ? reached : end;
	}
	if (acc.have)
		rc = cb(opaque, acc.off, acc.len, acc.kind);
out:
	free(ext);
	return rc;
}

/* ---- open, close, stats ------------------------------------------------ */

static void nbd_close(struct fy_source *src)
{
	struct nbd_source *s = (struct nbd_source *)src;
	struct link *l;
	size_t p;

	if (!s)
		return;
	l = &s->link;
	nbd_conn_close(l->conn, l->ninflight == 0 && nbd_rx_idle(&l->rx));
	link_release(l);
	for (p = 0; s->pool && p < s->npool; p++)
		free(s->pool[p].bounce);
	free(s->pool);
	free(s->free_pieces);
	free(s->retry);
	nbd_tls_ctx_free(s->tls_ctx);
	free(s->tls_ca);
	free(s->tls_cert);
	free(s->tls_key);
	free(s->tls_server_name);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int multi_stats(struct fy_source *src, struct fy_nbd_stats *out);

int fy_nbd_stats(struct fy_source *src, struct fy_nbd_stats *out)
{
	struct nbd_source *s = (struct nbd_source *)src;

	if (src && (src->ops == &multi_nbd_ops ||
		    src->ops == &multi_nbdssl_ops))
		return multi_stats(src, out);
	if (!src || (src->ops != &nbd_ops && src->ops != &nbdssl_ops))
		return fy_err_set(-EINVAL, "nbd: not an NBD source");
	pthread_mutex_lock(&s->lock);
	fold_counters(s, &s->link);
	*out = s->stats;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int dup_opt(const char *in, char **copy, const char **field)
{
	if (!in)
		return 0;
	*copy = strdup(in);
	if (!*copy)
		return fy_err_set(-ENOMEM, "nbd: out of memory");
	*field = *copy;
	return 0;
}

static int setup_opts(struct nbd_source *s, const struct fy_nbd_opts *opts)
{
	struct fy_nbd_opts *o = &s->opts;
	int rc;

	if (opts)
		*o = *opts;
	else
		fy_nbd_opts_default(o);
	if (!o->max_in_flight)
		o->max_in_flight = 16;
	if (o->max_in_flight > FY_NBD_MAX_IN_FLIGHT)
		o->max_in_flight = FY_NBD_MAX_IN_FLIGHT;
	if (!o->max_connections)
		o->max_connections = 1;
	if (o->max_connections > FY_NBD_MAX_CONNECTIONS)
		o->max_connections = FY_NBD_MAX_CONNECTIONS;
	if (o->reconnect_attempts > FY_NBD_MAX_RECONNECTS)
		o->reconnect_attempts = FY_NBD_MAX_RECONNECTS;
	if (o->reconnect_base_ms > NBD_MAX_BACKOFF_MS)
		o->reconnect_base_ms = NBD_MAX_BACKOFF_MS;
	o->tls_ca = o->tls_cert = o->tls_key = o->tls_server_name = NULL;
	rc = dup_opt(opts ? opts->tls_ca : NULL, &s->tls_ca, &o->tls_ca);
	if (!rc)
		rc = dup_opt(opts ? opts->tls_cert : NULL, &s->tls_cert,
			     &o->tls_cert);
	if (!rc)
		rc = dup_opt(opts ? opts->tls_key : NULL, &s->tls_key,
			     &o->tls_key);
	if (!rc)
		rc = dup_opt(opts ? opts->tls_server_name : NULL,
			     &s->tls_server_name, &o->tls_server_name);
	return rc;
}

static int setup_pool(struct nbd_source *s)
{
	size_t i;

	s->npool = s->opts.max_in_flight;
	s->pool = calloc(s->npool, sizeof(*s->pool));
	s->free_pieces = calloc(s->npool, sizeof(*s->free_pieces));
	s->retry = calloc(s->npool, sizeof(*s->retry));
	if (!s->pool || !s->free_pieces || !s->retry)
		return fy_err_set(-ENOMEM, "nbd: out of memory");
	for (i = 0; i < s->npool; i++)
		piece_put(s, &s->pool[s->npool - 1 - i]);
	return 0;
}

/* One source: one connection, driven by the calling thread. */
static int open_single(const char *uri, const struct fy_nbd_opts *opts,
		       struct fy_source **out)
{
	struct nbd_source *s;
	struct nbd_conn *c = NULL;
	uint32_t max, pref;
	int rc;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return fy_err_set(-ENOMEM, "nbd: out of memory");
	pthread_mutex_init(&s->lock, NULL);
	s->base.ops = &nbd_ops;
	rc = setup_opts(s, opts);
	if (rc)
		goto out;
	rc = link_alloc(&s->link, s);
	if (rc)
		goto out;
	rc = nbd_uri_parse(uri, &s->uri);
	if (rc)
		goto out;
	snprintf(s->base.name, sizeof(s->base.name), "%s", uri);

	if (s->uri.tls || s->opts.tls_required) {
		rc = nbd_tls_ctx_new(&s->opts, &s->tls_ctx);
		if (rc)
			goto out;
		/* The transport name users see, as VDDK reports it. */
		s->base.ops = &nbdssl_ops;
	}
	s->ccfg.uri = &s->uri;
	s->ccfg.opts = &s->opts;
	s->ccfg.tls_ctx = s->tls_ctx;
	s->ccfg.label = s->base.name;
	if (s->opts.tls_server_name)
		s->ccfg.server_name = s->opts.tls_server_name;
	else if (s->uri.tls_hostname[0])
		s->ccfg.server_name = s->uri.tls_hostname;
	else if (!s->uri.unix_socket)
		s->ccfg.server_name = s->uri.host;

	rc = nbd_conn_open(&s->ccfg, &c);
	if (rc)
		goto out;
	s->ex = *nbd_conn_export(c);
	s->base.size = s->ex.size;
	/* Callers may read at any offset: pieces are aligned to the
	 * server's minimum block here, partial blocks read aside. */
	s->base.align = 1;
	s->min_block = s->ex.min_block;
	max = s->ex.max_payload ? s->ex.max_payload : NBD_MAX_REQUEST;
	if (max > NBD_MAX_REQUEST)
		max = NBD_MAX_REQUEST;
	/* Whole preferred blocks where they fit: the spec's "efficient
	 * I/O" size; it is a power of 2 and so a multiple of min_block. */
	pref = s->ex.preferred_block;
	if (pref && !(pref & (pref - 1)) && pref >= s->ex.min_block &&
	    pref <= max)
		max = (uint32_t)round_down(max, pref);
	s->max_request = (uint32_t)round_down(max, s->ex.min_block);
	link_attach(&s->link, c);
	rc = setup_pool(s);
	if (rc)
		goto out;

	s->stats.size = s->ex.size;
	s->stats.min_block = s->ex.min_block;
	s->stats.preferred_block = s->ex.preferred_block;
	s->stats.max_payload = s->max_request;
	s->stats.tls = s->ex.tls;
	s->stats.structured_replies = s->ex.structured;
	s->stats.base_allocation = s->ex.has_meta;
	s->stats.multi_conn = s->ex.flags & NBD_FLAG_CAN_MULTI_CONN;
	nbd_log(s, FY_LOG_INFO,
		"nbd: %s: %" PRIu64 " bytes, %s, %s replies, %s, blocks "
		"%" PRIu32 "/%" PRIu32 "/%" PRIu32,
		s->base.name, s->ex.size, s->ex.tls ? "TLS" : "plain text",
		s->ex.structured ? "structured" : "simple",
		s->ex.has_meta ? "base:allocation" : "no extents",
		s->ex.min_block, s->ex.preferred_block, s->max_request);
	*out = &s->base;
	s = NULL;
out:
	nbd_close(s ? &s->base : NULL);
	return rc;
}

static const struct fy_source_ops nbd_ops = {
	.name = "nbd",
	.read = nbd_read,
	.read_batch = nbd_read_batch,
	.extents = nbd_extents,
	.close = nbd_close,
};

/* The same over TLS: only the name differs. */
static const struct fy_source_ops nbdssl_ops = {
	.name = "nbdssl",
	.read = nbd_read,
	.read_batch = nbd_read_batch,
	.extents = nbd_extents,
	.close = nbd_close,
};

/* ---- several connections, a thread each -------------------------------- */

/*
 * With max_connections > 1 and a server that allows it (CAN_MULTI_CONN),
 * the source is that many single-connection sources, and a batch is split
 * among them in contiguous parts, each read on a thread of its own: the
 * receiving, TLS decryption above all, then runs on every core (one
 * thread driving every connection was the bottleneck bench/nbd found in
 * nbdcopy's shape over TLS). Each connection reconnects on its own; a
 * part that fails fails the batch with its message. Block status goes to
 * the first connection.
 */
struct nbd_multi {
	struct fy_source base;
	struct fy_source *sub[FY_NBD_MAX_CONNECTIONS];
	unsigned n;
};

struct multi_part {
	struct fy_source *src;
	struct fy_io *ios;
	size_t n;
	int rc;
	char msg[FY_ERR_MAX];
	pthread_t thread;
	bool started;
};

static void *multi_part_main(void *arg)
{
	struct multi_part *p = arg;

	p->rc = fy_source_read_batch(p->src, p->ios, p->n);
	if (p->rc)
		snprintf(p->msg, sizeof(p->msg), "%s", fy_err_msg());
	return NULL;
}

static int multi_read_batch(struct fy_source *src, struct fy_io *ios, size_t n)
{
	struct nbd_multi *m = (struct nbd_multi *)src;
	struct multi_part part[FY_NBD_MAX_CONNECTIONS];
	unsigned k, np = n < m->n ? (unsigned)n : m->n;
	size_t at = 0;
	int rc = 0;

	if (np <= 1)
		return fy_source_read_batch(m->sub[0], ios, n);
	memset(part, 0, sizeof(part));
	for (k = 0; k < np; k++) {
		part[k].src = m->sub[k];
		part[k].ios = ios + at;
		part[k].n = n / np + (k < n % np);
		at += part[k].n;
	}
	for (k = 1; k < np; k++)
		part[k].started = pthread_create(&part[k].thread, NULL,
						 multi_part_main,
						 &part[k]) == 0;
	multi_part_main(&part[0]);
	for (k = 1; k < np; k++) {
		if (part[k].started)
			pthread_join(part[k].thread, NULL);
		else
			multi_part_main(&part[k]); /* no thread: here */
	}
	for (k = 0; k < np; k++)
		if (part[k].rc) {
			rc = fy_err_set(part[k].rc, "%s", part[k].msg);
			break;
		}
	return rc;
}

static int multi_read(struct fy_source *src, void *buf, size_t len,
		      uint64_t offset)
{
	struct nbd_multi *m = (struct nbd_multi *)src;

	return fy_source_read(m->sub[0], buf, len, offset);
}

static int multi_extents(struct fy_source *src, uint64_t offset,
			 uint64_t length, fy_extent_cb cb, void *opaque)
{
	struct nbd_multi *m = (struct nbd_multi *)src;

	return fy_source_extents(m->sub[0], offset, length, cb, opaque);
}

static void multi_close(struct fy_source *src)
{
	struct nbd_multi *m = (struct nbd_multi *)src;
	unsigned k;

	if (!m)
		return;
	for (k = 0; k < m->n; k++)
		fy_source_close(m->sub[k]);
	free(m);
}

/* The first connection's, with the counters of all of them. */
static int multi_stats(struct fy_source *src, struct fy_nbd_stats *out)
{
	struct nbd_multi *m = (struct nbd_multi *)src;
	struct fy_nbd_stats st;
	unsigned k;
	int rc = fy_nbd_stats(m->sub[0], out);

	for (k = 1; rc == 0 && k < m->n; k++) {
		rc = fy_nbd_stats(m->sub[k], &st);
		if (rc)
			break;
		out->wire_bytes += st.wire_bytes;
		out->data_bytes += st.data_bytes;
		out->hole_bytes += st.hole_bytes;
		out->read_requests += st.read_requests;
		out->block_status_calls += st.block_status_calls;
		out->reconnects += st.reconnects;
		out->connections += st.connections;
	}
	return rc;
}

int fy_nbd_source_open(const char *uri, const struct fy_nbd_opts *opts,
		       struct fy_source **out)
{
	struct fy_nbd_opts one;
	struct fy_nbd_stats st;
	struct fy_source *first = NULL;
	struct nbd_multi *m;
	unsigned want, k;
	int rc;

	*out = NULL;
	if (!opts || opts->max_connections <= 1)
		return open_single(uri, opts, out);
	one = *opts;
	one.max_connections = 1;
	want = opts->max_connections < FY_NBD_MAX_CONNECTIONS
		       ? opts->max_connections
		       : FY_NBD_MAX_CONNECTIONS;
	rc = open_single(uri, &one, &first);
	if (rc)
		return rc;
	/* Without multi-conn, one connection, as the spec asks. */
	if (fy_nbd_stats(first, &st) || !st.multi_conn) {
		*out = first;
		return 0;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		fy_source_close(first);
		return fy_err_set(-ENOMEM, "nbd: out of memory");
	}
	m->sub[0] = first;
	m->n = 1;
	m->base = *first;
	m->base.ops = first->ops == &nbdssl_ops ? &multi_nbdssl_ops
						: &multi_nbd_ops;
	/* More connections where they open and show the same export; the
	 * ones that do not are only fewer threads. */
	for (k = 1; k < want; k++) {
		struct fy_source *sub = NULL;

		if (open_single(uri, &one, &sub)) {
			fy_warn("nbd: %s: connection %u of %u: %s; reading on "
				"%u", uri, k + 1, want, fy_err_msg(), m->n);
			break;
		}
		if (sub->size != first->size) {
			fy_warn("nbd: %s: connection %u shows another export "
				"size; reading on %u", uri, k + 1, m->n);
			fy_source_close(sub);
			break;
		}
		m->sub[m->n++] = sub;
	}
	*out = &m->base;
	return 0;
}

static const struct fy_source_ops multi_nbd_ops = {
	.name = "nbd",
	.read = multi_read,
	.read_batch = multi_read_batch,
	.extents = multi_extents,
	.close = multi_close,
};

static const struct fy_source_ops multi_nbdssl_ops = {
	.name = "nbdssl",
	.read = multi_read,
	.read_batch = multi_read_batch,
	.extents = multi_extents,
	.close = multi_close,
};
