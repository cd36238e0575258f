/*
 * One NBD connection: the socket (TCP or Unix), TLS through OpenSSL, and
 * the fixed newstyle handshake up to the transmission phase.
 *
 * Sockets are non-blocking from the start; every wait is a poll() with
 * the deadline of the phase it belongs to, so a silent server costs at
 * most the configured timeout. Option replies are bounded before any
 * allocation (NBD_MAX_OPTION_REPLY) and counted (NBD_MAX_OPTION_REPLIES).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/common.h"
#include "nbd/nbd_int.h"

/* The socket under an OpenSSL BIO of our own: OpenSSL's socket BIO
 * writes with write(2), which raises SIGPIPE on a closed connection and
 * would kill the process; ours sends with MSG_NOSIGNAL. */
struct sock_bio {
	int fd;
	int err; /* errno of the last failed transfer */
};

struct nbd_conn {
	int fd;
	SSL *ssl;
	struct sock_bio sb;
	struct nbd_export ex;
	const char *label;
	/* POLLIN or POLLOUT: what TLS waits for to make progress */
	short tls_read_wants;
	short tls_write_wants;
};

/* ---- small helpers ----------------------------------------------------- */

double nbd_deadline_after(unsigned ms)
{
	return ms ? fy_now() + ms / 1000.0 : 0;
}

/* Waits for events on fd until deadline (0: forever). */
static int wait_fd(int fd, short events, double deadline, const char *label,
		   const char *what)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int timeout, n;
	double left;

	for (;;) {
		timeout = -1;
		if (deadline) {
			left = deadline - fy_now();
			if (left <= 0)
				return fy_err_set(-ETIMEDOUT,
						  "nbd: %s: timed out %s",
						  label, what);
			timeout = (int)(left * 1000) + 1;
		}
		n = poll(&pfd, 1, timeout);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return fy_err_set(-errno, "nbd: %s: poll: %s", label,
					  strerror(errno));
	}
}

/* Drains OpenSSL's error queue into one string. */
static void tls_errstr(char *buf, size_t len)
{
	unsigned long e, last = 0;

	while ((e = ERR_get_error()))
		last = e;
	if (last)
		ERR_error_string_n(last, buf, len);
	else
		snprintf(buf, len, "no further detail");
}

/* Server text in messages: printable ASCII only, bounded. */
static void printable(const uint8_t *in, size_t len, char *out, size_t size)
{
	size_t i;

	if (len > size - 1)
		len = size - 1;
	for (i = 0; i < len; i++)
		out[i] = in[i] >= 0x20 && in[i] < 0x7f ? (char)in[i] : '?';
	out[len] = '\0';
}

void nbd_encode_request(uint8_t out[NBD_REQUEST_SIZE], uint16_t flags,
			uint16_t type, uint64_t cookie, uint64_t offset,
			uint32_t length)
{
	nbd_put32(out, NBD_REQUEST_MAGIC);
	nbd_put16(out + 4, flags);
	nbd_put16(out + 6, type);
	nbd_put64(out + 8, cookie);
	nbd_put64(out + 16, offset);
	nbd_put32(out + 24, length);
}

/* ---- the BIO ----------------------------------------------------------- */

static int sock_bio_write(BIO *b, const char *buf, size_t len, size_t *done)
{
	struct sock_bio *sb = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = send(sb->fd, buf, len, MSG_NOSIGNAL);
	if (n < 0) {
		sb->err = errno;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			BIO_set_retry_write(b);
		return 0;
	}
	*done = (size_t)n;
	return 1;
}

static int sock_bio_read(BIO *b, char *buf, size_t len, size_t *done)
{
	struct sock_bio *sb = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = recv(sb->fd, buf, len, 0);
	if (n < 0) {
		sb->err = errno;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			BIO_set_retry_read(b);
		return 0;
	}
	if (n == 0)
		return 0; /* end of stream: no retry flag */
	*done = (size_t)n;
	return 1;
}

static long sock_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *sock_bio_method;
static pthread_once_t sock_bio_once = PTHREAD_ONCE_INIT;

/* Created once and kept for the life of the process. */
static void sock_bio_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				     "ferry-nbd-socket");

	if (!m)
		return;
	if (!BIO_meth_set_write_ex(m, sock_bio_write) ||
	    !BIO_meth_set_read_ex(m, sock_bio_read) ||
	    !BIO_meth_set_ctrl(m, sock_bio_ctrl)) {
		BIO_meth_free(m);
		return;
	}
	sock_bio_method = m;
}

/* ---- TLS --------------------------------------------------------------- */

void nbd_tls_ctx_free(struct ssl_ctx_st *ctx)
{
	SSL_CTX_free(ctx);
}

int nbd_tls_ctx_new(const struct fy_nbd_opts *o, struct ssl_ctx_st **out)
{
	char err[256];
	SSL_CTX *ctx;
	int rc = 0;

	*out = NULL;
	if (!o->tls_cert != !o->tls_key)
		return fy_err_set(-EINVAL, "nbd: a TLS client certificate "
				  "needs both a certificate and a key file");
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		tls_errstr(err, sizeof(err));
		return fy_err_set(-ENOMEM, "nbd: cannot create a TLS context: "
				  "%s", err);
	}
	/* The NBD spec requires TLS 1.2 and advises against older ones. */
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		tls_errstr(err, sizeof(err));
		rc = fy_err_set(-EINVAL, "nbd: cannot require TLS 1.2: %s",
				err);
		goto out;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (o->tls_ca) {
		if (!SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL)) {
			tls_errstr(err, sizeof(err));
			rc = fy_err_set(-EINVAL, "nbd: cannot load TLS CA "
					"file %s: %s", o->tls_ca, err);
			goto out;
		}
	} else if (!SSL_CTX_set_default_verify_paths(ctx)) {
		tls_errstr(err, sizeof(err));
		rc = fy_err_set(-EINVAL, "nbd: cannot load the system's "
				"trusted certificates: %s", err);
		goto out;
	}
	if (o->tls_cert) {
		if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1) {
			tls_errstr(err, sizeof(err));
			rc = fy_err_set(-EINVAL, "nbd: cannot load TLS client "
					"certificate %s: %s", o->tls_cert, err);
			goto out;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, o->tls_key,
						SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			tls_errstr(err, sizeof(err));
			rc = fy_err_set(-EINVAL, "nbd: cannot use TLS client "
					"key %s: %s", o->tls_key, err);
			goto out;
		}
	}
	/* Our write buffers stay put, but a retried write may be shorter. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	*out = ctx;
	ctx = NULL;
out:
	SSL_CTX_free(ctx);
	return rc;
}

static bool is_ip_address(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 ||
	       inet_pton(AF_INET6, s, buf) == 1;
}

static int tls_start(struct nbd_conn *c, const struct nbd_conn_cfg *cfg,
		     double deadline)
{
	X509_VERIFY_PARAM *param;
	char err[256];
	bool tls_err;
	long verify;
	BIO *bio;
	int rc = 0, r;

	pthread_once(&sock_bio_once, sock_bio_init);
	if (!sock_bio_method)
		return fy_err_set(-ENOMEM, "nbd: cannot create a TLS socket "
				  "layer");
	ERR_clear_error();
	c->ssl = SSL_new(cfg->tls_ctx);
	bio = BIO_new(sock_bio_method);
	if (!c->ssl || !bio) {
		BIO_free(bio);
		return fy_err_set(-ENOMEM, "nbd: cannot create a TLS session");
	}
	c->sb.fd = c->fd;
	BIO_set_data(bio, &c->sb);
	BIO_set_init(bio, 1);
	SSL_set_bio(c->ssl, bio, bio);

	if (cfg->server_name) {
		param = SSL_get0_param(c->ssl);
		X509_VERIFY_PARAM_set_hostflags(
			param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (is_ip_address(cfg->server_name)) {
			r = X509_VERIFY_PARAM_set1_ip_asc(param,
							  cfg->server_name);
		} else {
			r = SSL_set1_host(c->ssl, cfg->server_name);
			/* SNI takes host names only, never addresses. */
			if (r == 1)
				r = (int)SSL_set_tlsext_host_name(
					c->ssl, cfg->server_name);
		}
		if (r != 1)
			return fy_err_set(-EINVAL, "nbd: cannot check the "
					  "server certificate against '%s'",
					  cfg->server_name);
	}

	for (;;) {
		ERR_clear_error();
		r = SSL_connect(c->ssl);
		if (r == 1)
			break;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			rc = wait_fd(c->fd, POLLIN, deadline, cfg->label,
				     "in the TLS handshake");
			break;
		case SSL_ERROR_WANT_WRITE:
			rc = wait_fd(c->fd, POLLOUT, deadline, cfg->label,
				     "in the TLS handshake");
			break;
		default:
			verify = SSL_get_verify_result(c->ssl);
			tls_err = ERR_peek_error() != 0;
			tls_errstr(err, sizeof(err));
			if (verify != X509_V_OK)
				return fy_err_set(
					-EACCES,
					"nbd: %s: the server's TLS "
					"certificate is not trusted: %s "
					"(expected name: %s)",
					cfg->label,
					X509_verify_cert_error_string(verify),
					cfg->server_name ? cfg->server_name
							 : "none checked");
			return fy_err_set(-ECONNRESET,
					  "nbd: %s: TLS handshake failed: %s",
					  cfg->label,
					  tls_err ? err
					  : c->sb.err ? strerror(c->sb.err)
						      : "the server closed "
							"the connection");
		}
		if (rc)
			return rc;
	}
	c->ex.tls = true;
	return 0;
}

/* ---- non-blocking transfers -------------------------------------------- */

long nbd_conn_recv(struct nbd_conn *c, void *buf, size_t len)
{
	char err[256];
	size_t done;
	ssize_t n;
	int r;

	if (!c->ssl) {
		do
			n = recv(c->fd, buf, len, 0);
		while (n < 0 && errno == EINTR);
		if (n >= 0)
			return (long)n;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		return fy_err_set(-errno, "nbd: %s: receive failed: %s",
				  c->label, strerror(errno));
	}
	c->tls_read_wants = POLLIN;
	c->sb.err = 0;
	ERR_clear_error();
	r = SSL_read_ex(c->ssl, buf, len, &done);
	if (r == 1)
		return (long)done;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		c->tls_read_wants = POLLOUT;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (!c->sb.err)
			return 0;
		return fy_err_set(-c->sb.err, "nbd: %s: receive failed: %s",
				  c->label, strerror(c->sb.err));
	default:
		/* A peer that closes without close_notify is an end of
		 * stream like any other; the caller decides if it came in
		 * the middle of something. */
		if (ERR_GET_REASON(ERR_peek_error()) ==
		    SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			return 0;
		}
		tls_errstr(err, sizeof(err));
		return fy_err_set(-ECONNRESET, "nbd: %s: TLS receive failed: "
				  "%s", c->label, err);
	}
}

long nbd_conn_send(struct nbd_conn *c, const void *buf, size_t len)
{
	char err[256];
	size_t done;
	ssize_t n;
	int r;

	if (!c->ssl) {
		do
			n = send(c->fd, buf, len, MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		if (n >= 0)
			return (long)n;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		return fy_err_set(-errno, "nbd: %s: send failed: %s",
				  c->label, strerror(errno));
	}
	c->tls_write_wants = POLLOUT;
	c->sb.err = 0;
	ERR_clear_error();
	r = SSL_write_ex(c->ssl, buf, len, &done);
	if (r == 1)
		return (long)done;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_WRITE:
		return -EAGAIN;
	case SSL_ERROR_WANT_READ:
		c->tls_write_wants = POLLIN;
		return -EAGAIN;
	case SSL_ERROR_SYSCALL:
		r = c->sb.err ? c->sb.err : EPIPE;
		return fy_err_set(-r, "nbd: %s: send failed: %s", c->label,
				  strerror(r));
	default:
		tls_errstr(err, sizeof(err));
		return fy_err_set(-ECONNRESET, "nbd: %s: TLS send failed: %s",
				  c->label, err);
	}
}

short nbd_conn_events(const struct nbd_conn *c, bool want_write)
{
	short ev = POLLIN;

	if (c->ssl) {
		ev = c->tls_read_wants;
		if (want_write)
			ev |= c->tls_write_wants;
	} else if (want_write) {
		ev |= POLLOUT;
	}
	return ev;
}

int nbd_conn_read_full(struct nbd_conn *c, void *buf, size_t len,
		     double deadline, const char *what)
{
	uint8_t *p = buf;
	long n;
	int rc;

	while (len) {
		n = nbd_conn_recv(c, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return fy_err_set(-ECONNRESET,
					  "nbd: %s: the server closed the "
					  "connection %s",
					  c->label, what);
		if (n != -EAGAIN)
			return (int)n;
		rc = wait_fd(c->fd, c->ssl ? c->tls_read_wants : POLLIN,
			     deadline, c->label, what);
		if (rc)
			return rc;
	}
	return 0;
}

int nbd_conn_write_full(struct nbd_conn *c, const void *buf, size_t len,
		      double deadline, const char *what)
{
	const uint8_t *p = buf;
	long n;
	int rc;

	while (len) {
		n = nbd_conn_send(c, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n != -EAGAIN)
			return (int)n;
		rc = wait_fd(c->fd, c->ssl ? c->tls_write_wants : POLLOUT,
			     deadline, c->label, what);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- connecting -------------------------------------------------------- */

static int finish_connect(int fd, double deadline, const char *label)
{
	socklen_t len = sizeof(int);
	int rc, err = 0;

	rc = wait_fd(fd, POLLOUT, deadline, label, "connecting");
	if (rc)
		return rc;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	return -err;
}

static int connect_unix(struct nbd_conn *c, const struct nbd_conn_cfg *cfg,
			double deadline)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int rc;

	if (strlen(cfg->uri->socket) >= sizeof(sa.sun_path))
		return fy_err_set(-ENAMETOOLONG, "nbd: socket path %s is too "
				  "long", cfg->uri->socket);
	strcpy(sa.sun_path, cfg->uri->socket);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return fy_err_set(-errno, "nbd: socket: %s", strerror(errno));
	rc = connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) ? -errno : 0;
	if (rc == -EINPROGRESS || rc == -EAGAIN)
		rc = finish_connect(c->fd, deadline, cfg->label);
	if (rc)
		return fy_err_set(rc, "nbd: cannot connect to Unix socket %s: "
				  "%s", cfg->uri->socket, strerror(-rc));
	return 0;
}

static int connect_tcp(struct nbd_conn *c, const struct nbd_conn_cfg *cfg,
		       double deadline)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	int one = 1, rc = -EHOSTUNREACH, g;

	g = getaddrinfo(cfg->uri->host, cfg->uri->port, &hints, &res);
	if (g)
		return fy_err_set(-EHOSTUNREACH, "nbd: cannot resolve %s: %s",
				  cfg->uri->host, gai_strerror(g));
	for (ai = res; ai; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family,
			       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->fd < 0) {
			rc = -errno;
			continue;
		}
		rc = connect(c->fd, ai->ai_addr, ai->ai_addrlen) ? -errno : 0;
		if (rc == -EINPROGRESS)
			rc = finish_connect(c->fd, deadline, cfg->label);
		if (!rc)
			break;
		close(c->fd);
		c->fd = -1;
		if (rc == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (rc)
		return fy_err_set(rc, "nbd: cannot connect to %s port %s: %s",
				  cfg->uri->host, cfg->uri->port,
				  strerror(-rc));
	/* Requests are small and latency-bound; long idle backups need
	 * dead peers noticed. */
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	return 0;
}

/* ---- option haggling --------------------------------------------------- */

struct opt_reply {
	uint32_t type;
	uint32_t len;
	uint8_t *data; /* NBD_MAX_OPTION_REPLY bytes, owned by the caller */
};

static const char *opt_name(uint32_t opt)
{
	switch (opt) {
	case NBD_OPT_EXPORT_NAME:
		return "NBD_OPT_EXPORT_NAME";
	case NBD_OPT_ABORT:
		return "NBD_OPT_ABORT";
	case NBD_OPT_STARTTLS:
		return "NBD_OPT_STARTTLS";
	case NBD_OPT_GO:
		return "NBD_OPT_GO";
	case NBD_OPT_STRUCTURED_REPLY:
		return "NBD_OPT_STRUCTURED_REPLY";
	case NBD_OPT_SET_META_CONTEXT:
		return "NBD_OPT_SET_META_CONTEXT";
	default:
		return "option";
	}
}

static const char *rep_name(uint32_t type)
{
	switch (type) {
	case NBD_REP_ACK:
		return "NBD_REP_ACK";
	case NBD_REP_SERVER:
		return "NBD_REP_SERVER";
	case NBD_REP_INFO:
		return "NBD_REP_INFO";
	case NBD_REP_META_CONTEXT:
		return "NBD_REP_META_CONTEXT";
	case NBD_REP_ERR_UNSUP:
		return "NBD_REP_ERR_UNSUP";
	case NBD_REP_ERR_POLICY:
		return "NBD_REP_ERR_POLICY";
	case NBD_REP_ERR_INVALID:
		return "NBD_REP_ERR_INVALID";
	case NBD_REP_ERR_PLATFORM:
		return "NBD_REP_ERR_PLATFORM";
	case NBD_REP_ERR_TLS_REQD:
		return "NBD_REP_ERR_TLS_REQD";
	case NBD_REP_ERR_UNKNOWN:
		return "NBD_REP_ERR_UNKNOWN";
	case NBD_REP_ERR_SHUTDOWN:
		return "NBD_REP_ERR_SHUTDOWN";
	case NBD_REP_ERR_BLOCK_SIZE_REQD:
		return "NBD_REP_ERR_BLOCK_SIZE_REQD";
	case NBD_REP_ERR_TOO_BIG:
		return "NBD_REP_ERR_TOO_BIG";
	default:
		return type & NBD_REP_FLAG_ERROR ? "unknown error"
						 : "unknown reply";
	}
}

/* "NBD_REP_ERR_POLICY: text the server sent" */
static void rep_text(const struct opt_reply *r, char *out, size_t size)
{
	char msg[256];

	printable(r->data, r->len, msg, sizeof(msg));
	snprintf(out, size, "%s%s%s", rep_name(r->type), msg[0] ? ": " : "",
		 msg);
}

static int send_option(struct nbd_conn *c, uint32_t opt, const void *data,
		       uint32_t len, double deadline)
{
	uint8_t hdr[16];
	int rc;

	nbd_put64(hdr, NBD_OPTS_MAGIC);
	nbd_put32(hdr + 8, opt);
	nbd_put32(hdr + 12, len);
	rc = nbd_conn_write_full(c, hdr, sizeof(hdr), deadline,
				 "sending an option");
	if (!rc && len)
		rc = nbd_conn_write_full(c, data, len, deadline,
					 "sending an option");
	return rc;
}

static int read_reply(struct nbd_conn *c, uint32_t opt, struct opt_reply *r,
		      double deadline)
{
	uint8_t hdr[NBD_OPTION_REPLY_SIZE];
	int rc;

	rc = nbd_conn_read_full(c, hdr, sizeof(hdr), deadline,
				"waiting for an option reply");
	if (rc)
		return rc;
	if (nbd_get64(hdr) != NBD_REP_MAGIC)
		return fy_err_set(-EPROTO, "nbd: %s: bad option reply magic "
				  "%#" PRIx64 " in reply to %s",
				  c->label, nbd_get64(hdr), opt_name(opt));
	if (nbd_get32(hdr + 8) != opt)
		return fy_err_set(-EPROTO, "nbd: %s: reply to option %" PRIu32
				  " when %s was sent", c->label,
				  nbd_get32(hdr + 8), opt_name(opt));
	r->type = nbd_get32(hdr + 12);
	r->len = nbd_get32(hdr + 16);
	if (r->len > NBD_MAX_OPTION_REPLY)
		return fy_err_set(-EPROTO, "nbd: %s: %s reply to %s carries "
				  "%" PRIu32 " bytes (limit %u)",
				  c->label, rep_name(r->type), opt_name(opt),
				  r->len, NBD_MAX_OPTION_REPLY);
	return nbd_conn_read_full(c, r->data, r->len, deadline,
				  "reading an option reply");
}

static int tls_required_error(struct nbd_conn *c, uint32_t opt)
{
	return fy_err_set(-EACCES, "nbd: %s: the server requires TLS "
			  "(it refused %s with NBD_REP_ERR_TLS_REQD); use an "
			  "nbds:// URI or ferry.nbd.TlsRequired",
			  c->label, opt_name(opt));
}

static int unexpected_reply(struct nbd_conn *c, uint32_t opt,
			    const struct opt_reply *r)
{
	char text[320];

	rep_text(r, text, sizeof(text));
	return fy_err_set(-EPROTO, "nbd: %s: unexpected %s in reply to %s",
			  c->label, text, opt_name(opt));
}

static int starttls(struct nbd_conn *c, const struct nbd_conn_cfg *cfg,
		    struct opt_reply *r, double deadline)
{
	char text[320];
	int rc;

	rc = send_option(c, NBD_OPT_STARTTLS, NULL, 0, deadline);
	if (!rc)
		rc = read_reply(c, NBD_OPT_STARTTLS, r, deadline);
	if (rc)
		return rc;
	if (r->type == NBD_REP_ACK)
		return tls_start(c, cfg, deadline);
	if (!(r->type & NBD_REP_FLAG_ERROR))
		return unexpected_reply(c, NBD_OPT_STARTTLS, r);
	/* Going on in plain text would hand the export to whoever answered
	 * instead of the server: a downgrade the spec warns about. */
	rep_text(r, text, sizeof(text));
	return fy_err_set(-ENOTSUP, "nbd: %s: the server refused TLS (%s); "
			  "TLS is required, so the connection is not used",
			  c->label, text);
}

static int structured_replies(struct nbd_conn *c, struct opt_reply *r,
			      double deadline)
{
	char text[320];
	int rc;

	rc = send_option(c, NBD_OPT_STRUCTURED_REPLY, NULL, 0, deadline);
	if (!rc)
		rc = read_reply(c, NBD_OPT_STRUCTURED_REPLY, r, deadline);
	if (rc)
		return rc;
	if (r->type == NBD_REP_ACK) {
		c->ex.structured = true;
		return 0;
	}
	if (r->type == NBD_REP_ERR_TLS_REQD)
		return tls_required_error(c, NBD_OPT_STRUCTURED_REPLY);
	if (!(r->type & NBD_REP_FLAG_ERROR))
		return unexpected_reply(c, NBD_OPT_STRUCTURED_REPLY, r);
	rep_text(r, text, sizeof(text));
	fy_debug("nbd: %s: no structured replies (%s); reads use simple "
		 "replies and extents are unknown", c->label, text);
	return 0;
}

static const char meta_allocation[] = "base:allocation";

static int set_meta_context(struct nbd_conn *c, const char *name,
			    struct opt_reply *r, double deadline)
{
	size_t nlen = strlen(name), qlen = sizeof(meta_allocation) - 1;
	uint8_t *buf;
	size_t len = 4 + nlen + 4 + 4 + qlen;
	unsigned replies;
	char text[320];
	int rc;

	buf = malloc(len);
	if (!buf)
		return fy_err_set(-ENOMEM, "nbd: out of memory");
	nbd_put32(buf, (uint32_t)nlen);
	memcpy(buf + 4, name, nlen);
	nbd_put32(buf + 4 + nlen, 1);
	nbd_put32(buf + 8 + nlen, (uint32_t)qlen);
	memcpy(buf + 12 + nlen, meta_allocation, qlen);
	rc = send_option(c, NBD_OPT_SET_META_CONTEXT, buf, (uint32_t)len,
			 deadline);
	free(buf);
	if (rc)
		return rc;

	for (replies = 0; replies < NBD_MAX_OPTION_REPLIES; replies++) {
		rc = read_reply(c, NBD_OPT_SET_META_CONTEXT, r, deadline);
		if (rc)
			return rc;
		if (r->type == NBD_REP_ACK)
			return 0;
		if (r->type == NBD_REP_META_CONTEXT) {
			if (r->len < 4)
				return fy_err_set(-EPROTO,
						  "nbd: %s: short "
						  "NBD_REP_META_CONTEXT",
						  c->label);
			if (r->len - 4 == qlen &&
			    !memcmp(r->data + 4, meta_allocation, qlen)) {
				c->ex.has_meta = true;
				c->ex.meta_id = nbd_get32(r->data);
			}
			continue;
		}
		c->ex.has_meta = false;
		if (r->type == NBD_REP_ERR_TLS_REQD)
			return tls_required_error(c, NBD_OPT_SET_META_CONTEXT);
		if (!(r->type & NBD_REP_FLAG_ERROR))
			return unexpected_reply(c, NBD_OPT_SET_META_CONTEXT,
						r);
		rep_text(r, text, sizeof(text));
		fy_debug("nbd: %s: no base:allocation (%s)", c->label, text);
		return 0;
	}
	return fy_err_set(-EPROTO, "nbd: %s: more than %d replies to "
			  "NBD_OPT_SET_META_CONTEXT", c->label,
			  NBD_MAX_OPTION_REPLIES);
}

static int export_info(struct nbd_conn *c, const struct opt_reply *r,
		       bool *got_export)
{
	uint16_t type;

	if (r->len < 2)
		return fy_err_set(-EPROTO, "nbd: %s: NBD_REP_INFO of %" PRIu32
				  " bytes", c->label, r->len);
	type = nbd_get16(r->data);
	switch (type) {
	case NBD_INFO_EXPORT:
		if (r->len != 12)
			return fy_err_set(-EPROTO, "nbd: %s: NBD_INFO_EXPORT "
					  "of %" PRIu32 " bytes, not 12",
					  c->label, r->len);
		c->ex.size = nbd_get64(r->data + 2);
		c->ex.flags = nbd_get16(r->data + 10);
		*got_export = true;
		return 0;
	case NBD_INFO_BLOCK_SIZE:
		if (r->len != 14)
			return fy_err_set(-EPROTO, "nbd: %s: "
					  "NBD_INFO_BLOCK_SIZE of %" PRIu32
					  " bytes, not 14",
					  c->label, r->len);
		c->ex.min_block = nbd_get32(r->data + 2);
		c->ex.preferred_block = nbd_get32(r->data + 6);
		c->ex.max_payload = nbd_get32(r->data + 10);
		return 0;
	default:
		/* Names, descriptions and types added later: not needed. */
		return 0;
	}
}

/* Returns 1 when the server does not know NBD_OPT_GO. */
static int go(struct nbd_conn *c, const char *name, struct opt_reply *r,
	      double deadline)
{
	size_t nlen = strlen(name), len = 4 + nlen + 2 + 2 * 2;
	bool got_export = false;
	unsigned replies;
	char text[320];
	uint8_t *buf;
	int rc;

	buf = malloc(len);
	if (!buf)
		return fy_err_set(-ENOMEM, "nbd: out of memory");
	nbd_put32(buf, (uint32_t)nlen);
	memcpy(buf + 4, name, nlen);
	nbd_put16(buf + 4 + nlen, 2);
	nbd_put16(buf + 6 + nlen, NBD_INFO_EXPORT);
	/* Asking for the block size promises to honour it. */
	nbd_put16(buf + 8 + nlen, NBD_INFO_BLOCK_SIZE);
	rc = send_option(c, NBD_OPT_GO, buf, (uint32_t)len, deadline);
	free(buf);
	if (rc)
		return rc;

	for (replies = 0; replies < NBD_MAX_OPTION_REPLIES; replies++) {
		rc = read_reply(c, NBD_OPT_GO, r, deadline);
		if (rc)
			return rc;
		if (r->type == NBD_REP_INFO) {
			rc = export_info(c, r, &got_export);
			if (rc)
				return rc;
			continue;
		}
		if (r->type == NBD_REP_ACK) {
			if (!got_export)
				return fy_err_set(-EPROTO,
						  "nbd: %s: NBD_OPT_GO "
						  "succeeded without "
						  "NBD_INFO_EXPORT",
						  c->label);
			return 0;
		}
		if (r->type == NBD_REP_ERR_UNSUP)
			return 1;
		if (r->type == NBD_REP_ERR_TLS_REQD)
			return tls_required_error(c, NBD_OPT_GO);
		rep_text(r, text, sizeof(text));
		if (r->type == NBD_REP_ERR_UNKNOWN)
			return fy_err_set(-ENOENT, "nbd: %s: the server has "
					  "no export '%s' (%s)",
					  c->label, name, text);
		if (r->type & NBD_REP_FLAG_ERROR)
			return fy_err_set(-EIO, "nbd: %s: the server refused "
					  "export '%s': %s",
					  c->label, name, text);
		return unexpected_reply(c, NBD_OPT_GO, r);
	}
	return fy_err_set(-EPROTO, "nbd: %s: more than %d replies to "
			  "NBD_OPT_GO", c->label, NBD_MAX_OPTION_REPLIES);
}

/* The old way in, for servers without NBD_OPT_GO: it cannot report
 * errors, so a refusal shows up as a closed connection. */
static int export_name(struct nbd_conn *c, const char *name,
		       bool no_zeroes, double deadline)
{
	uint8_t buf[10 + 124];
	size_t len = no_zeroes ? 10 : sizeof(buf);
	int rc;

	rc = send_option(c, NBD_OPT_EXPORT_NAME, name, (uint32_t)strlen(name),
			 deadline);
	if (!rc)
		rc = nbd_conn_read_full(c, buf, len, deadline,
					"after NBD_OPT_EXPORT_NAME (no such "
					"export, or it needs TLS?)");
	if (rc)
		return rc;
	c->ex.size = nbd_get64(buf);
	c->ex.flags = nbd_get16(buf + 8);
	return 0;
}

static bool power_of_2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* Checks the size constraints and fills in the defaults. */
static int check_block_sizes(struct nbd_conn *c)
{
	struct nbd_export *ex = &c->ex;

	if (!ex->min_block && !ex->preferred_block && !ex->max_payload) {
		ex->min_block = 1;
		ex->preferred_block = 4096;
		return 0;
	}
	if (!power_of_2(ex->min_block) || ex->min_block > 65536)
		return fy_err_set(-EPROTO, "nbd: %s: the server's minimum "
				  "block size %" PRIu32 " is not a power of "
				  "2 up to 65536", c->label, ex->min_block);
	if (ex->max_payload && ex->max_payload < ex->min_block)
		return fy_err_set(-EPROTO, "nbd: %s: the server's maximum "
				  "payload %" PRIu32 " is below its minimum "
				  "block size %" PRIu32,
				  c->label, ex->max_payload, ex->min_block);
	return 0;
}

static int handshake(struct nbd_conn *c, const struct nbd_conn_cfg *cfg,
		     double deadline)
{
	const char *name = cfg->uri->export_name;
	struct opt_reply r = { 0 };
	uint8_t buf[18];
	uint16_t hflags;
	uint32_t cflags;
	int rc;

	rc = nbd_conn_read_full(c, buf, 18, deadline,
				"waiting for the NBD greeting");
	if (rc)
		goto out;
	if (nbd_get64(buf) != NBD_INIT_MAGIC) {
		rc = fy_err_set(-EPROTO, "nbd: %s: not an NBD server (bad "
				"greeting magic %#" PRIx64 ")",
				cfg->label, nbd_get64(buf));
		goto out;
	}
	if (nbd_get64(buf + 8) == NBD_OLDSTYLE_MAGIC) {
		rc = fy_err_set(-EPROTO, "nbd: %s: the server uses the "
				"oldstyle handshake, which Ferry does not "
				"speak; run it in newstyle mode",
				cfg->label);
		goto out;
	}
	if (nbd_get64(buf + 8) != NBD_OPTS_MAGIC) {
		rc = fy_err_set(-EPROTO, "nbd: %s: bad handshake magic %#"
				PRIx64, cfg->label, nbd_get64(buf + 8));
		goto out;
	}
	hflags = nbd_get16(buf + 16);
	if (!(hflags & NBD_FLAG_FIXED_NEWSTYLE)) {
		rc = fy_err_set(-EPROTO, "nbd: %s: the server does not offer "
				"the fixed newstyle handshake", cfg->label);
		goto out;
	}
	cflags = NBD_FLAG_C_FIXED_NEWSTYLE;
	if (hflags & NBD_FLAG_NO_ZEROES)
		cflags |= NBD_FLAG_C_NO_ZEROES;
	nbd_put32(buf, cflags);
	rc = nbd_conn_write_full(c, buf, 4, deadline, "sending client flags");
	if (rc)
		goto out;

	r.data = malloc(NBD_MAX_OPTION_REPLY);
	if (!r.data) {
		rc = fy_err_set(-ENOMEM, "nbd: out of memory");
		goto out;
	}
	/* TLS first, so every later option travels encrypted and nothing
	 * negotiated in plain text survives (the server must forget it). */
	if (cfg->tls_ctx) {
		rc = starttls(c, cfg, &r, deadline);
		if (rc)
			goto out;
	}
	rc = structured_replies(c, &r, deadline);
	if (!rc && c->ex.structured)
		rc = set_meta_context(c, name, &r, deadline);
	if (!rc)
		rc = go(c, name, &r, deadline);
	if (rc == 1) {
		fy_debug("nbd: %s: the server lacks NBD_OPT_GO; using "
			 "NBD_OPT_EXPORT_NAME", cfg->label);
		rc = export_name(c, name, cflags & NBD_FLAG_C_NO_ZEROES,
				 deadline);
	}
	if (!rc)
		rc = check_block_sizes(c);
out:
	free(r.data);
	return rc;
}

int nbd_conn_open(const struct nbd_conn_cfg *cfg, struct nbd_conn **out)
{
	const struct fy_nbd_opts *o = cfg->opts;
	struct nbd_conn *c;
	double deadline;
	int rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return fy_err_set(-ENOMEM, "nbd: out of memory");
	c->fd = -1;
	c->label = cfg->label;
	c->tls_read_wants = POLLIN;
	c->tls_write_wants = POLLOUT;
	deadline = nbd_deadline_after(o->connect_timeout_ms);
	if (cfg->uri->unix_socket)
		rc = connect_unix(c, cfg, deadline);
	else
		rc = connect_tcp(c, cfg, deadline);
	if (!rc)
		rc = handshake(c, cfg, nbd_deadline_after(o->negotiate_timeout_ms));
	if (rc) {
		nbd_conn_close(c, false);
		return rc;
	}
	*out = c;
	return 0;
}

const struct nbd_export *nbd_conn_export(const struct nbd_conn *c)
{
	return &c->ex;
}

int nbd_conn_fd(const struct nbd_conn *c)
{
	return c->fd;
}

void nbd_conn_close(struct nbd_conn *c, bool polite)
{
	uint8_t req[NBD_REQUEST_SIZE];
	size_t done;

	if (!c)
		return;
	/* Best effort and silent: one try that cannot block, and nothing
	 * recorded with fy_err_set, since a caller may be closing while it
	 * reports an earlier error. 28 bytes fit any socket buffer. */
	if (polite && c->fd >= 0) {
		nbd_encode_request(req, 0, NBD_CMD_DISC, 0, 0, 0);
		if (c->ssl) {
			if (SSL_write_ex(c->ssl, req, sizeof(req), &done) == 1)
				SSL_shutdown(c->ssl);
			ERR_clear_error();
		} else {
			(void)!send(c->fd, req, sizeof(req),
				    MSG_NOSIGNAL | MSG_DONTWAIT);
		}
	}
	SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}
