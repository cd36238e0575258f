/*
 * A read-only NBD server for one export: the fixed newstyle handshake,
 * structured replies with holes, the base:allocation metadata context,
 * STARTTLS with mutual certificate checks, one thread per client. What it
 * serves comes from the caller's callbacks (fy_nbd_export_ops): `ferry
 * mount` serves a backup's disk straight from the repository.
 *
 * In transmission a client's thread only reads requests; its workers
 * (fy_nbd_server_opts.workers) serve them, so that a client with many
 * requests in flight (nbdcopy keeps 64) has several reads fetched and
 * decoded at once. Replies go out as they are ready (the protocol allows
 * any order), one chunk at a time under the client's write lock. An
 * export that lends its data (fy_nbd_export_ops.lend) has structured
 * replies sent straight from it, a chunk per loan, with no copy. Under
 * TLS the socket is non-blocking in transmission and every SSL call is
 * made under a lock, since an SSL object is not for two threads at once.
 *
 * Names follow the NBD project's doc/proto.md. Everything a client sends
 * is bounded before it is used: option lengths, strings, request lengths
 * and offsets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "nbd/nbd_int.h"

#define NBD_OPT_LIST 3
#define NBD_OPT_INFO 6
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_CMD_TRIM 4
#define NBD_CMD_CACHE 5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)
#define NBD_FLAG_SEND_CACHE (1u << 10)
#define NBD_EPERM 1
#define NBD_EIO 5
#define NBD_ENOMEM 12
#define NBD_EINVAL 22
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP 95
#define NBD_ESHUTDOWN 108

/* The largest option a client may send: a SET_META_CONTEXT with a few
 * queries is well under it. */
#define MAX_OPTION_LEN (64u << 10)
/* Options before transmission: a client that never chooses is cut off. */
#define MAX_OPTIONS 64
/* Block status descriptors in one reply. */
#define MAX_DESCRIPTORS 1024
#define BASE_ALLOCATION "base:allocation"
#define CONTEXT_ID 1
/* A client silent this long during the handshake is dropped, so that idle
 * connections cannot hold client slots. */
#define HANDSHAKE_TIMEOUT_S 10

struct server {
	const struct fy_nbd_server_opts *opts;
	const struct fy_nbd_export_ops *ops;
	void *opaque;
	SSL_CTX *tls;
	pthread_mutex_t lock;
	pthread_cond_t gone;     /* a client thread ended */
	unsigned clients;
	struct client *list;     /* the connected ones, for the stop */
	volatile sig_atomic_t *stop;
};

/* A stop waits this long for client threads to finish their request. */
#define STOP_WAIT_S 10
/* Requests read and not yet taken by a worker, per client; past it the
 * client's further requests wait in TCP. */
#define QUEUE_MAX 64
/* Workers per client at most, whatever the caller asks. */
#define WORKERS_MAX 16
/* A worker keeps a reply buffer up to this size between requests, and
 * structured replies not sent from loans send reads in data chunks of at
 * most this much; a larger simple reply (up to NBD_MAX_REQUEST, one
 * worker per such client) gets a buffer of its own, freed after. So a
 * client's workers hold at most WORKERS_MAX x 2 MiB = 32 MiB, as much as
 * one largest simple reply. */
#define WORKER_BUF_KEEP (2u << 20)
/* The client thread's buffer: options in the handshake, a write's
 * payload read away. */
#define CLIENT_BUF (MAX_OPTION_LEN + 64)

/* A request handed from the client's thread to its workers. */
struct request {
	uint64_t handle, off;
	uint32_t len;
	uint16_t type, flags;
};

struct client {
	struct client *next, *prev;
	struct server *srv;
	int fd;
	SSL *ssl;
	bool structured, meta, no_zeroes;
	char peer[80];
	uint8_t *buf;            /* CLIENT_BUF bytes */

	/* Transmission. wlock: one reply chunk at a time. ssl_lock: every
	 * SSL call once workers run (taken inside wlock, never around it). */
	pthread_mutex_t wlock, ssl_lock;
	bool nonblocking;        /* TLS in transmission: retry on WANT_* */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;    /* a request queued or taken, the end */
	struct request queue[QUEUE_MAX];
	unsigned q_head, q_len;
	bool q_closed;           /* no more requests come */
	bool broken;             /* a reply could not be sent: drop the rest */
};

/* One of a client's workers, with its reply buffer. */
struct worker {
	struct client *c;
	pthread_t thread;
	uint8_t *buf;
	size_t cap;
};

/* ---- I/O on the plain socket or through TLS ---------------------------- */

/* Waits until the socket is ready for what OpenSSL wants (a non-blocking
 * TLS call said SSL_ERROR_WANT_READ or _WRITE). A stop's shutdown wakes it. */
static int wait_ready(struct client *c, int want)
{
	struct pollfd pfd = {
		.fd = c->fd,
		.events = want == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN,
	};

	while (poll(&pfd, 1, -1) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

/* One SSL_read or SSL_write; > 0 bytes, 0 to try again (after waiting), or
 * -errno. Under ssl_lock once the socket is non-blocking. */
static int tls_io(struct client *c, void *rbuf, const void *wbuf, size_t len)
{
	int n = len > INT32_MAX ? INT32_MAX : (int)len;
	int r, e;

	if (c->nonblocking)
		pthread_mutex_lock(&c->ssl_lock);
	errno = 0;
	r = rbuf ? SSL_read(c->ssl, rbuf, n) : SSL_write(c->ssl, wbuf, n);
	e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
	/* The write buffer (start_tls) does not pass the socket's "try
	 * again" up when a flush inside OpenSSL meets a full socket (as
	 * when a held KeyUpdate reply goes out): that reads as a system
	 * call error with EAGAIN, and is a wait for POLLOUT. A read that
	 * would block says WANT_READ itself. */
	if (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))
		e = SSL_ERROR_WANT_WRITE;
	if (r <= 0)
		ERR_clear_error();
	if (c->nonblocking)
		pthread_mutex_unlock(&c->ssl_lock);
	if (r > 0)
		return r;
	if (c->nonblocking &&
	    (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)) {
		int rc = wait_ready(c, e);

		return rc < 0 ? rc : 0;
	}
	return e == SSL_ERROR_ZERO_RETURN ? -ECONNRESET : -EIO;
}

static int io_read(struct client *c, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n;

		if (c->ssl) {
			int r = tls_io(c, p, NULL, len);

			if (r < 0)
				return r;
			n = r;
			if (!r)
				continue;
		} else {
			n = read(c->fd, p, len);
			if (n == 0)
				errno = ECONNRESET;
		}
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Sends what the TLS write buffer holds (start_tls). */
static int tls_flush(struct client *c)
{
	BIO *b = SSL_get_wbio(c->ssl);

	for (;;) {
		int r, retry;

		if (c->nonblocking)
			pthread_mutex_lock(&c->ssl_lock);
		errno = 0;
		r = BIO_flush(b);
		retry = r <= 0 && (BIO_should_retry(b) || errno == EAGAIN ||
				   errno == EWOULDBLOCK);
		if (c->nonblocking)
			pthread_mutex_unlock(&c->ssl_lock);
		if (r == 1)
			return 0;
		if (!retry || !c->nonblocking)
			return -EIO;
		r = wait_ready(c, SSL_ERROR_WANT_WRITE);
		if (r < 0)
			return r;
	}
}

/* len bytes to the socket, or into the TLS write buffer (io_write flushes
 * it; send_parts once for a whole reply). */
static int io_write_part(struct client *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n;

		if (c->ssl) {
			int r = tls_io(c, NULL, p, len);

			if (r < 0)
				return r;
			n = r;
			if (!r)
				continue;
		} else {
			n = send(c->fd, p, len, MSG_NOSIGNAL);
		}
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int io_write(struct client *c, const void *buf, size_t len)
{
	int rc = io_write_part(c, buf, len);

	return rc == 0 && c->ssl ? tls_flush(c) : rc;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* ---- the handshake ----------------------------------------------------- */

static int option_reply(struct client *c, uint32_t opt, uint32_t type,
			const void *data, uint32_t len)
{
	uint8_t h[NBD_OPTION_REPLY_SIZE];
	int rc;

	put64(h, NBD_REP_MAGIC);
	put32(h + 8, opt);
	put32(h + 12, type);
	put32(h + 16, len);
	rc = io_write(c, h, sizeof(h));
	if (rc == 0 && len)
		rc = io_write(c, data, len);
	return rc;
}

static int option_error(struct client *c, uint32_t opt, uint32_t type,
			const char *msg)
{
	return option_reply(c, opt, type, msg, (uint32_t)strlen(msg));
}

static uint16_t transmission_flags(void)
{
	/* Read-only, so several connections see the same bytes: nbdcopy
	 * and qemu may open more than one. */
	return NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY |
	       NBD_FLAG_CAN_MULTI_CONN;
}

/* NBD_REP_INFO replies for GO/INFO: the export, and the block sizes when
 * asked (and always for GO, as the spec recommends). */
static int send_info(struct client *c, uint32_t opt)
{
	uint8_t info[14];
	int rc;

	put16(info, NBD_INFO_EXPORT);
	put64(info + 2, c->srv->opts->size);
	put16(info + 10, transmission_flags());
	rc = option_reply(c, opt, NBD_REP_INFO, info, 12);
	if (rc == 0) {
		uint8_t bs[14];

		put16(bs, NBD_INFO_BLOCK_SIZE);
		put32(bs + 2, 1);
		put32(bs + 6, 4096);
		put32(bs + 10, NBD_MAX_REQUEST);
		rc = option_reply(c, opt, NBD_REP_INFO, bs, 14);
	}
	return rc;
}

/* Checks the export name in a GO/INFO/META_CONTEXT option: only "" (and
 * the configured name) exist. data holds len bytes from the name length. */
static bool export_name_ok(struct client *c, const uint8_t *name,
			   uint32_t nlen)
{
	const char *want = c->srv->opts->export_name;

	if (nlen == 0)
		return true;
	return want && strlen(want) == nlen && !memcmp(want, name, nlen);
}

static int meta_context(struct client *c, uint32_t opt, const uint8_t *d,
			uint32_t len)
{
	uint32_t nlen, nq, i, off;
	bool list = opt == NBD_OPT_LIST_META_CONTEXT, chosen = false;

	if (!c->structured && !list)
		return option_error(c, opt, NBD_REP_ERR_INVALID,
				    "structured replies first");
	if (len < 8 || (nlen = get32(d)) > len - 8 ||
	    (nq = get32(d + 4 + nlen)) > 1024)
		return option_error(c, opt, NBD_REP_ERR_INVALID,
				    "malformed meta context option");
	if (!export_name_ok(c, d + 4, nlen))
		return option_error(c, opt, NBD_REP_ERR_UNKNOWN,
				    "no such export");
	off = 8 + nlen;
	if (!list)
		c->meta = false;
	if (nq == 0 && list)
		chosen = true; /* list everything: ours is all there is */
	for (i = 0; i < nq; i++) {
		uint32_t qlen;

		if (len - off < 4 || (qlen = get32(d + off)) > len - off - 4 ||
		    qlen > NBD_MAX_STRING)
			return option_error(c, opt, NBD_REP_ERR_INVALID,
					    "malformed meta context query");
		if ((qlen == strlen(BASE_ALLOCATION) &&
		     !memcmp(d + off + 4, BASE_ALLOCATION, qlen)) ||
		    (list && qlen == 5 && !memcmp(d + off + 4, "base:", 5)))
			chosen = true;
		off += 4 + qlen;
	}
	if (chosen) {
		uint8_t r[4 + sizeof(BASE_ALLOCATION) - 1];
		int rc;

		put32(r, CONTEXT_ID);
		memcpy(r + 4, BASE_ALLOCATION, sizeof(BASE_ALLOCATION) - 1);
		rc = option_reply(c, opt, NBD_REP_META_CONTEXT, r, sizeof(r));
		if (rc < 0)
			return rc;
		if (!list)
			c->meta = true;
	}
	return option_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

/* After the handshake: a buffer between the record layer and the socket
 * (fy_ssl_buffer_writes), so that a read's reply goes out in writes of
 * TLS_WRITE_BUFFER rather than one per 16 KiB record (a 4 MiB chunk was
 * 256 system calls, each under ssl_lock). Every write path ends with
 * tls_flush. */
#define TLS_WRITE_BUFFER (256u << 10)

static int start_tls(struct client *c)
{
	int rc;

	c->ssl = SSL_new(c->srv->tls);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
		return -ENOMEM;
	rc = SSL_accept(c->ssl);
	if (rc != 1) {
		unsigned long e = ERR_get_error();
		char why[256] = "handshake failed";

		if (e)
			ERR_error_string_n(e, why, sizeof(why));
		ERR_clear_error();
		fy_warn("nbd: TLS from %s refused: %s", c->peer, why);
		SSL_free(c->ssl);
		c->ssl = NULL;
		return -EPERM;
	}
	return fy_ssl_buffer_writes(c->ssl, TLS_WRITE_BUFFER);
}

/* 1: transmission starts; 0: the client is done; -errno: dropped. */
static int handshake(struct client *c)
{
	struct server *srv = c->srv;
	uint8_t greet[18], h[16];
	uint32_t cflags;
	unsigned n;
	int rc;

	put64(greet, NBD_INIT_MAGIC);
	put64(greet + 8, NBD_OPTS_MAGIC);
	put16(greet + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	rc = io_write(c, greet, sizeof(greet));
	if (rc == 0)
		rc = io_read(c, h, 4);
	if (rc < 0)
		return rc;
	cflags = get32(h);
	if (!(cflags & NBD_FLAG_C_FIXED_NEWSTYLE))
		return -EPROTO; /* old clients cannot be told why */
	c->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;
	for (n = 0; n < MAX_OPTIONS; n++) {
		uint32_t opt, len;
		uint8_t *d = c->buf;

		rc = io_read(c, h, 16);
		if (rc < 0)
			return rc;
		if (get64(h) != NBD_OPTS_MAGIC)
			return -EPROTO;
		opt = get32(h + 8);
		len = get32(h + 12);
		if (len > MAX_OPTION_LEN) {
			/* Drop without reading: the spec allows it. */
			return -EPROTO;
		}
		rc = len ? io_read(c, d, len) : 0;
		if (rc < 0)
			return rc;
		if (srv->tls && !c->ssl && opt != NBD_OPT_STARTTLS &&
		    opt != NBD_OPT_ABORT) {
			if (opt == NBD_OPT_EXPORT_NAME)
				return -EPERM;
			rc = option_error(c, opt, NBD_REP_ERR_TLS_REQD,
					  "this export needs TLS");
			if (rc < 0)
				return rc;
			continue;
		}
		switch (opt) {
		case NBD_OPT_ABORT:
			option_reply(c, opt, NBD_REP_ACK, NULL, 0);
			return 0;
		case NBD_OPT_STARTTLS:
			if (!srv->tls || c->ssl || len) {
				rc = option_error(c, opt, c->ssl ?
							  NBD_REP_ERR_INVALID :
							  NBD_REP_ERR_POLICY,
						  srv->tls ? "TLS is on already"
							   : "no TLS here");
				break;
			}
			rc = option_reply(c, opt, NBD_REP_ACK, NULL, 0);
			if (rc == 0)
				rc = start_tls(c);
			if (rc < 0)
				return rc;
			break;
		case NBD_OPT_LIST: {
			const char *name = srv->opts->export_name
						   ? srv->opts->export_name
						   : "";
			uint8_t r[4 + NBD_MAX_STRING];
			uint32_t nl = (uint32_t)strnlen(name, NBD_MAX_STRING);

			put32(r, nl);
			memcpy(r + 4, name, nl);
			rc = option_reply(c, opt, NBD_REP_SERVER, r, 4 + nl);
			if (rc == 0)
				rc = option_reply(c, opt, NBD_REP_ACK, NULL, 0);
			break;
		}
		case NBD_OPT_STRUCTURED_REPLY:
			if (len) {
				rc = option_error(c, opt, NBD_REP_ERR_INVALID,
						  "no data expected");
				break;
			}
			c->structured = true;
			rc = option_reply(c, opt, NBD_REP_ACK, NULL, 0);
			break;
		case NBD_OPT_LIST_META_CONTEXT:
		case NBD_OPT_SET_META_CONTEXT:
			rc = meta_context(c, opt, d, len);
			break;
		case NBD_OPT_EXPORT_NAME: {
			uint8_t r[10 + 124] = { 0 };

			if (!export_name_ok(c, d, len))
				return -ENOENT;
			put64(r, srv->opts->size);
			put16(r + 8, transmission_flags());
			rc = io_write(c, r, c->no_zeroes ? 10 : sizeof(r));
			return rc < 0 ? rc : 1;
		}
		case NBD_OPT_INFO:
		case NBD_OPT_GO: {
			uint32_t nlen;
			uint16_t nreq;

			if (len < 6 || (nlen = get32(d)) > len - 6 ||
			    (nreq = get16(d + 4 + nlen),
			     len != 6 + nlen + 2u * nreq)) {
				rc = option_error(c, opt, NBD_REP_ERR_INVALID,
						  "malformed GO/INFO");
				break;
			}
			if (!export_name_ok(c, d + 4, nlen)) {
				rc = option_error(c, opt, NBD_REP_ERR_UNKNOWN,
						  "no such export");
				break;
			}
			rc = send_info(c, opt);
			if (rc == 0)
				rc = option_reply(c, opt, NBD_REP_ACK, NULL, 0);
			if (rc == 0 && opt == NBD_OPT_GO)
				return 1;
			break;
		}
		default:
			rc = option_error(c, opt, NBD_REP_ERR_UNSUP,
					  "option not supported");
		}
		if (rc < 0)
			return rc;
	}
	return -EPROTO;
}

/* ---- transmission ------------------------------------------------------ */

/* Sends parts[0..n) as one unit under the write lock: a reply or a chunk
 * is never cut into by another worker's. Plain sockets get one sendmsg
 * for the lot (as many as it takes). */
static int send_parts(struct client *c, struct iovec *iov, int n)
{
	int i, rc = 0;

	pthread_mutex_lock(&c->wlock);
	if (c->ssl) {
		for (i = 0; rc == 0 && i < n; i++)
			if (iov[i].iov_len)
				rc = io_write_part(c, iov[i].iov_base,
						   iov[i].iov_len);
		if (rc == 0)
			rc = tls_flush(c);
	} else {
		while (rc == 0 && n > 0) {
			struct msghdr mh = { .msg_iov = iov,
					     .msg_iovlen = (size_t)n };
			ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);

			if (w < 0) {
				if (errno != EINTR)
					rc = -errno;
				continue;
			}
			while (n > 0 && (size_t)w >= iov->iov_len) {
				w -= (ssize_t)iov->iov_len;
				iov++;
				n--;
			}
			if (n > 0) {
				iov->iov_base = (uint8_t *)iov->iov_base + w;
				iov->iov_len -= (size_t)w;
			}
		}
	}
	pthread_mutex_unlock(&c->wlock);
	return rc;
}

static int simple_reply(struct client *c, uint64_t handle, uint32_t error,
			const void *data, uint32_t len)
{
	uint8_t h[NBD_SIMPLE_REPLY_SIZE];
	struct iovec iov[2] = {
		{ h, sizeof(h) },
		{ (void *)data, len && !error ? len : 0 },
	};

	put32(h, NBD_SIMPLE_REPLY_MAGIC);
	put32(h + 4, error);
	put64(h + 8, handle);
	return send_parts(c, iov, 2);
}

static int chunk(struct client *c, uint64_t handle, uint16_t flags,
		 uint16_t type, const void *payload, uint32_t len,
		 const void *data, uint32_t dlen)
{
	uint8_t h[NBD_STRUCTURED_REPLY_SIZE];
	struct iovec iov[3] = {
		{ h, sizeof(h) },
		{ (void *)payload, len },
		{ (void *)data, dlen },
	};

	put32(h, NBD_STRUCTURED_REPLY_MAGIC);
	put16(h + 4, flags);
	put16(h + 6, type);
	put64(h + 8, handle);
	put32(h + 16, len + dlen);
	return send_parts(c, iov, 3);
}

static uint32_t wire_error(int rc)
{
	switch (-rc) {
	case EPERM:
	case EROFS:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
		return NBD_ENOTSUP;
	default:
		return NBD_EIO;
	}
}

static int error_reply(struct client *c, uint64_t handle, uint32_t err,
		       const char *msg)
{
	uint8_t p[6 + 256];
	uint16_t mlen = (uint16_t)strnlen(msg, 256);

	if (!c->structured)
		return simple_reply(c, handle, err, NULL, 0);
	put32(p, err);
	put16(p + 4, mlen);
	memcpy(p + 6, msg, mlen);
	return chunk(c, handle, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, p,
		     6u + mlen, NULL, 0);
}

/* The buffer a request's reply is built in: the worker's own, grown up
 * to WORKER_BUF_KEEP, or one for this request alone. NULL: no memory. */
static uint8_t *worker_buf(struct worker *w, size_t need, bool *temp)
{
	*temp = false;
	if (need <= w->cap)
		return w->buf;
	if (need > WORKER_BUF_KEEP) {
		*temp = true;
		return malloc(need);
	}
	free(w->buf);
	w->buf = malloc(WORKER_BUF_KEEP);
	w->cap = w->buf ? WORKER_BUF_KEEP : 0;
	return w->buf;
}

/* A read: structured, holes go as OFFSET_HOLE chunks and data as
 * OFFSET_DATA; simple, everything as bytes. A simple reply is read into
 * the worker's buffer whole. A structured one sends each data run from
 * the export's loan when it lends one, else reads it into the worker's
 * buffer in runs of at most WORKER_BUF_KEEP bytes (the buffer is taken
 * only then). */
static int do_read(struct worker *w, uint64_t handle, uint64_t off,
		   uint32_t len)
{
	struct client *c = w->c;
	const struct fy_nbd_export_ops *ops = c->srv->ops;
	uint64_t pos = off, end = off + len;
	size_t cap = c->structured && len > WORKER_BUF_KEEP ? WORKER_BUF_KEEP
							    : len;
	uint8_t *buf = NULL;
	bool temp = false;
	int rc = 0;

	if (!c->structured) {
		buf = worker_buf(w, cap, &temp);
		if (!buf)
			return error_reply(c, handle, NBD_ENOMEM,
					   "out of memory");
		rc = ops->read(c->srv->opaque, off, len, buf);
		rc = rc < 0 ? simple_reply(c, handle, wire_error(rc), NULL, 0)
			    : simple_reply(c, handle, 0, buf, len);
		goto out;
	}
	while (pos < end) {
		const uint8_t *data = NULL;
		uint32_t lent = 0;
		void *token = NULL;
		uint64_t run = 0;
		bool hole = false;
		uint8_t p[12];

		rc = ops->extent(c->srv->opaque, pos, end - pos, &hole, &run);
		if (rc < 0 || run == 0 || run > end - pos) {
			rc = error_reply(c, handle, NBD_EIO,
					 rc < 0 ? fy_err_msg() : "bad extent");
			goto out;
		}
		put64(p, pos);
		if (hole) {
			put32(p + 8, (uint32_t)run);
			rc = chunk(c, handle,
				   pos + run == end ? NBD_REPLY_FLAG_DONE : 0,
				   NBD_REPLY_TYPE_OFFSET_HOLE, p, 12, NULL, 0);
			goto next;
		}
		if (ops->lend) {
			rc = ops->lend(c->srv->opaque, pos, (uint32_t)run,
				       &data, &lent, &token);
			if (rc == 0 && lent > run) {
				ops->release(c->srv->opaque, token);
				rc = fy_err_set(-EIO, "a loan past the read");
			}
		}
		if (rc == 0 && lent) {
			run = lent;
			rc = chunk(c, handle,
				   pos + run == end ? NBD_REPLY_FLAG_DONE : 0,
				   NBD_REPLY_TYPE_OFFSET_DATA, p, 8, data, lent);
			ops->release(c->srv->opaque, token);
			goto next;
		}
		if (rc == 0 && !buf) {
			buf = worker_buf(w, cap, &temp);
			if (!buf) {
				rc = error_reply(c, handle, NBD_ENOMEM,
						 "out of memory");
				goto out;
			}
		}
		if (run > cap)
			run = cap;
		if (rc == 0)
			rc = ops->read(c->srv->opaque, pos, (uint32_t)run, buf);
		if (rc < 0) {
			char msg[256];

			snprintf(msg, sizeof(msg), "%s", fy_err_msg());
			rc = error_reply(c, handle, wire_error(rc), msg);
			goto out;
		}
		rc = chunk(c, handle, pos + run == end ? NBD_REPLY_FLAG_DONE : 0,
			   NBD_REPLY_TYPE_OFFSET_DATA, p, 8, buf, (uint32_t)run);
next:
		if (rc < 0)
			goto out;
		pos += run;
	}
out:
	if (temp)
		free(buf);
	return rc;
}

static int do_block_status(struct client *c, uint8_t *p, uint64_t handle,
			   uint16_t flags, uint64_t off, uint32_t len)
{
	uint64_t pos = off, end = off + len;
	uint32_t n = 0;

	if (!c->meta)
		return error_reply(c, handle, NBD_EINVAL,
				   "no metadata context negotiated");
	put32(p, CONTEXT_ID);
	while (pos < end && n < MAX_DESCRIPTORS) {
		uint64_t run = 0;
		bool hole = false;
		int rc = c->srv->ops->extent(c->srv->opaque, pos, end - pos,
					     &hole, &run);

		if (rc < 0 || run == 0 || run > end - pos)
			return error_reply(c, handle, NBD_EIO, "bad extent");
		put32(p + 4 + 8 * n, (uint32_t)run);
		put32(p + 8 + 8 * n, hole ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0);
		n++;
		pos += run;
		if (flags & NBD_CMD_FLAG_REQ_ONE)
			break;
	}
	return chunk(c, handle, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS,
		     p, 4 + 8 * n, NULL, 0);
}

static int serve(struct worker *w, const struct request *r)
{
	uint8_t p[4 + 8 * MAX_DESCRIPTORS];

	if (r->type == NBD_CMD_READ)
		return do_read(w, r->handle, r->off, r->len);
	return do_block_status(w->c, p, r->handle, r->flags, r->off, r->len);
}

/* Takes requests until the queue is closed and empty. After a failed
 * reply the connection is cut (the client thread's read fails) and what is
 * queued is dropped. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct client *c = w->c;

	for (;;) {
		struct request r;
		bool drop;
		int rc;

		pthread_mutex_lock(&c->qlock);
		while (!c->q_len && !c->q_closed)
			pthread_cond_wait(&c->qcond, &c->qlock);
		if (!c->q_len) {
			pthread_mutex_unlock(&c->qlock);
			break;
		}
		r = c->queue[c->q_head];
		c->q_head = (c->q_head + 1) % QUEUE_MAX;
		c->q_len--;
		drop = c->broken;
		pthread_cond_broadcast(&c->qcond);
		pthread_mutex_unlock(&c->qlock);
		if (drop)
			continue;
		rc = serve(w, &r);
		if (rc < 0) {
			pthread_mutex_lock(&c->qlock);
			if (!c->broken)
				fy_warn("nbd: client %s: reply failed: %s",
					c->peer, strerror(-rc));
			c->broken = true;
			pthread_cond_broadcast(&c->qcond);
			pthread_mutex_unlock(&c->qlock);
			shutdown(c->fd, SHUT_RDWR);
		}
	}
	free(w->buf);
	return NULL;
}

/* Queues a read or block status for the workers; waits while the queue is
 * full. -EPIPE once a reply failed. */
static int enqueue(struct client *c, const struct request *r)
{
	int rc = 0;

	pthread_mutex_lock(&c->qlock);
	while (c->q_len == QUEUE_MAX && !c->broken)
		pthread_cond_wait(&c->qcond, &c->qlock);
	if (c->broken) {
		rc = -EPIPE;
	} else {
		c->queue[(c->q_head + c->q_len) % QUEUE_MAX] = *r;
		c->q_len++;
		pthread_cond_broadcast(&c->qcond);
	}
	pthread_mutex_unlock(&c->qlock);
	return rc;
}

/* Reads requests: reads and block status go to the workers, the rest is
 * answered here. Returns at NBD_CMD_DISC (0), a broken stream or a failed
 * reply (-errno). */
static int read_requests(struct client *c)
{
	uint64_t size = c->srv->opts->size;
	uint8_t r[NBD_REQUEST_SIZE];

	for (;;) {
		struct request q;
		int rc = io_read(c, r, sizeof(r));

		if (rc < 0)
			return rc;
		if (get32(r) != NBD_REQUEST_MAGIC)
			return -EPROTO;
		q.flags = get16(r + 4);
		q.type = get16(r + 6);
		q.handle = get64(r + 8);
		q.off = get64(r + 16);
		q.len = get32(r + 24);
		if (q.type == NBD_CMD_DISC)
			return 0;
		if (q.type == NBD_CMD_WRITE) {
			/* The payload follows: read it away, then refuse. */
			uint32_t left = q.len;

			while (left) {
				uint32_t n = left < CLIENT_BUF ? left
							       : CLIENT_BUF;

				rc = io_read(c, c->buf, n);
				if (rc < 0)
					return rc;
				left -= n;
			}
			rc = error_reply(c, q.handle, NBD_EPERM,
					 "the export is read-only");
		} else if (q.type == NBD_CMD_TRIM ||
			   q.type == NBD_CMD_WRITE_ZEROES ||
			   q.type == NBD_CMD_FLUSH) {
			rc = error_reply(c, q.handle, NBD_EPERM,
					 "the export is read-only");
		} else if (q.type != NBD_CMD_READ &&
			   q.type != NBD_CMD_BLOCK_STATUS) {
			rc = error_reply(c, q.handle, NBD_EINVAL,
					 "command not supported");
		} else if (q.len == 0 || q.off > size || q.len > size - q.off ||
			   (q.type == NBD_CMD_READ &&
			    q.len > NBD_MAX_REQUEST)) {
			rc = error_reply(c, q.handle, NBD_EINVAL,
					 "request outside the export");
		} else {
			rc = enqueue(c, &q);
		}
		if (rc < 0)
			return rc;
	}
}

/* Transmission: this thread reads, the workers serve. At the end (a
 * disconnect, EOF or an error) the requests already queued are served
 * unless a reply failed, and every worker is waited for. */
static int transmission(struct client *c)
{
	unsigned want = c->srv->opts->workers, n, i;
	struct worker *w;
	int rc;

	want = want < 1 ? 1 : want > WORKERS_MAX ? WORKERS_MAX : want;
	/* A simple reply is built whole (up to 32 MiB): a client without
	 * structured replies gets one worker, so it holds one such buffer. */
	if (!c->structured)
		want = 1;
	w = calloc(want, sizeof(*w));
	if (!w)
		return -ENOMEM;
	if (c->ssl) {
		int fl = fcntl(c->fd, F_GETFL);

		if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
			free(w);
			return -errno;
		}
		c->nonblocking = true;
	}
	for (n = 0; n < want; n++) {
		w[n].c = c;
		if (pthread_create(&w[n].thread, NULL, worker_main, &w[n]))
			break;
	}
	if (!n) {
		free(w);
		return -EAGAIN;
	}
	rc = read_requests(c);
	pthread_mutex_lock(&c->qlock);
	c->q_closed = true;
	if (rc < 0 && rc != -EPIPE) {
		/* Nobody reads the replies of a broken stream. */
		c->broken = true;
	}
	pthread_cond_broadcast(&c->qcond);
	pthread_mutex_unlock(&c->qlock);
	for (i = 0; i < n; i++)
		pthread_join(w[i].thread, NULL);
	free(w);
	return rc == -EPIPE ? -EIO : rc;
}

static void client_free(struct client *c)
{
	pthread_cond_destroy(&c->qcond);
	pthread_mutex_destroy(&c->qlock);
	pthread_mutex_destroy(&c->ssl_lock);
	pthread_mutex_destroy(&c->wlock);
	free(c->buf);
	free(c);
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	struct server *srv = c->srv;
	struct timeval tv = { .tv_sec = HANDSHAKE_TIMEOUT_S };
	int rc;

	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	rc = handshake(c);
	if (rc == 1) {
		/* Transmission: a client may pause as long as it likes. */
		tv.tv_sec = 0;
		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		fy_info("nbd: %s: serving the export%s", c->peer,
			c->ssl ? " over TLS" : "");
		rc = transmission(c);
	}
	if (rc < 0 && rc != -ECONNRESET)
		fy_warn("nbd: client %s dropped: %s", c->peer, strerror(-rc));
	if (c->ssl) {
		if (SSL_shutdown(c->ssl) >= 0)
			(void)BIO_flush(SSL_get_wbio(c->ssl));
		SSL_free(c->ssl);
	}
	pthread_mutex_lock(&srv->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->list = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);
	srv->clients--;
	pthread_cond_broadcast(&srv->gone);
	pthread_mutex_unlock(&srv->lock);
	client_free(c);
	return NULL;
}

/* ---- listening --------------------------------------------------------- */

static int listen_tcp(const char *hostport, char *bound, size_t blen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE };
	struct addrinfo *res;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256], port[32], h[INET6_ADDRSTRLEN], p[16];
	int fd, one = 1, rc;

	rc = fy_split_hostport(hostport, host, sizeof(host), port, sizeof(port));
	if (rc < 0)
		return rc;
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc)
		return fy_err_set(-EINVAL, "cannot resolve %s: %s", hostport,
				  gai_strerror(rc));
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		rc = -errno;
		freeaddrinfo(res);
		if (fd >= 0)
			close(fd);
		return fy_err_set(rc, "cannot listen on %s: %s", hostport,
				  strerror(-rc));
	}
	freeaddrinfo(res);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
			NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(bound, blen, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
			 h, p);
	return fd;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return fy_err_set(-ENAMETOOLONG, "socket path %s is longer than "
				  "%zu bytes", path, sizeof(sa.sun_path) - 1);
	strcpy(sa.sun_path, path);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return fy_err_set(rc, "cannot listen on %s: %s", path,
				  strerror(-rc));
	}
	return fd;
}

static int tls_context(const struct fy_nbd_server_opts *o, SSL_CTX **out)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	unsigned long e;
	char why[256] = "";

	if (!ctx)
		return fy_err_set(-ENOMEM, "TLS: out of memory");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* A TLS 1.2 renegotiation would make a worker's write wait for a
	 * read the client thread may take first: refused outright. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, o->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL) != 1) {
		e = ERR_get_error();
		if (e)
			ERR_error_string_n(e, why, sizeof(why));
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return fy_err_set(-EINVAL, "TLS: cannot load %s, %s or %s: %s",
				  o->tls_cert, o->tls_key, o->tls_ca, why);
	}
	/* Mutual: a client must show a certificate of the Ferry CA. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
				SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_num_tickets(ctx, 0);
	*out = ctx;
	return 0;
}

/* Cuts every connection (a client thread in a read or write fails out of
 * it) and waits for their threads. 0 when all ended: the server is freed
 * and nothing of the caller's is in use any more; -EBUSY when one still
 * runs after STOP_WAIT_S (busy in the export's read): the server is left
 * to it, and the caller must keep what the export uses. */
static int stop_clients(struct server *sp)
{
	struct timespec until;
	struct client *c;
	unsigned left;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += STOP_WAIT_S;
	pthread_mutex_lock(&sp->lock);
	for (c = sp->list; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	while (sp->clients &&
	       pthread_cond_timedwait(&sp->gone, &sp->lock, &until) == 0)
		;
	left = sp->clients;
	pthread_mutex_unlock(&sp->lock);
	if (left)
		return fy_err_set(-EBUSY, "nbd: %u clients still busy %d s "
				  "after the stop", left, STOP_WAIT_S);
	SSL_CTX_free(sp->tls);
	pthread_cond_destroy(&sp->gone);
	pthread_mutex_destroy(&sp->lock);
	free(sp);
	return 0;
}

int fy_nbd_serve(const struct fy_nbd_server_opts *o,
		 const struct fy_nbd_export_ops *ops, void *opaque,
		 volatile sig_atomic_t *stop)
{
	/* On the heap: client threads use it until they end, which a stop
	 * waits for (and if one does not end, it is left to them). */
	struct server *sp = calloc(1, sizeof(*sp));
	char bound[128] = "";
	int lfd, rc = 0;

	if (!sp)
		return fy_err_set(-ENOMEM, "out of memory");
	sp->opts = o;
	sp->ops = ops;
	sp->opaque = opaque;
	sp->stop = stop;
	if (!!o->listen == !!o->socket) {
		free(sp);
		return fy_err_set(-EINVAL, "nbd: a TCP address or a Unix "
				  "socket, one of them");
	}
	if (!ops->read || !ops->extent || !ops->lend != !ops->release) {
		free(sp);
		return fy_err_set(-EINVAL, "nbd: an export needs read and "
				  "extent, and lend only with release");
	}
	if (o->tls_cert && (rc = tls_context(o, &sp->tls)) < 0) {
		free(sp);
		return rc;
	}
	lfd = o->listen ? listen_tcp(o->listen, bound, sizeof(bound))
			: listen_unix(o->socket);
	if (lfd < 0) {
		SSL_CTX_free(sp->tls);
		free(sp);
		return lfd;
	}
	if (o->socket)
		snprintf(bound, sizeof(bound), "%s", o->socket);
	pthread_mutex_init(&sp->lock, NULL);
	pthread_cond_init(&sp->gone, NULL);
	if (o->on_ready)
		o->on_ready(o->ready_opaque, bound);
	while (!*stop) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };
		struct client *c;
		pthread_attr_t attr;
		pthread_t t;
		int fd;

		if (poll(&pfd, 1, 250) <= 0)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&sp->lock);
		if (sp->clients >= o->max_clients) {
			pthread_mutex_unlock(&sp->lock);
			fy_warn("nbd: refusing a client: %u connected already",
				o->max_clients);
			close(fd);
			continue;
		}
		sp->clients++;
		pthread_mutex_unlock(&sp->lock);
		c = calloc(1, sizeof(*c));
		if (c)
			c->buf = malloc(CLIENT_BUF);
		if (!c || !c->buf) {
			if (c)
				free(c);
			close(fd);
			pthread_mutex_lock(&sp->lock);
			sp->clients--;
			pthread_mutex_unlock(&sp->lock);
			continue;
		}
		c->srv = sp;
		c->fd = fd;
		pthread_mutex_init(&c->wlock, NULL);
		pthread_mutex_init(&c->ssl_lock, NULL);
		pthread_mutex_init(&c->qlock, NULL);
		pthread_cond_init(&c->qcond, NULL);
		/* Listed before its thread runs, which unlists it. */
		pthread_mutex_lock(&sp->lock);
		c->next = sp->list;
		if (sp->list)
			sp->list->prev = c;
		sp->list = c;
		pthread_mutex_unlock(&sp->lock);
		{
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			char h[INET6_ADDRSTRLEN] = "local", p[16] = "";
			int one = 1;

			if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
			    ss.ss_family != AF_UNIX) {
				getnameinfo((struct sockaddr *)&ss, sl, h,
					    sizeof(h), p, sizeof(p),
					    NI_NUMERICHOST | NI_NUMERICSERV);
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
					   sizeof(one));
			}
			snprintf(c->peer, sizeof(c->peer), "%s%s%s", h,
				 p[0] ? ":" : "", p);
		}
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, client_main, c) != 0) {
			pthread_mutex_lock(&sp->lock);
			sp->list = c->next;
			if (c->next)
				c->next->prev = NULL;
			sp->clients--;
			pthread_mutex_unlock(&sp->lock);
			close(fd);
			client_free(c);
		}
		pthread_attr_destroy(&attr);
	}
	close(lfd);
	if (o->socket)
		unlink(o->socket);
	return stop_clients(sp);
}
