/*
 * HTTPS to vCenter with libcurl. A small pool of easy handles lets several
 * threads call at once on one session (a handle is never shared between
 * two requests in flight); each keeps its connection alive between calls.
 *
 * Certificates: a pinned SHA-256 thumbprint (checked in OpenSSL's verify
 * callback, before any byte of ours is sent), else the CA bundle
 * (ferry.vcenter.caFile or the system's) with the host name checked, else
 * nothing at all when vixDiskLib.linuxSSL.verifyCertificates=0, which is
 * logged as a warning at connect.
 *
 * Bounds: a response is cut at limits.max_response bytes (before reading it
 * when the server announces its length); connect, stall (no byte for
 * stall_seconds) and whole-request timeouts fail a request in bounded time.
 */
#include "vsphere/vs_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define COOKIE_NAME "vmware_soap_session"

struct vs_conn {
	struct vs_conn *next;
	CURL *easy;
};

/* Per request: what the callbacks learn. */
struct req_state {
	struct fy_vs_client *c;
	char *data;
	size_t len, cap, max;
	bool too_big;
	char content_type[128];
	char cookie[512];
	/* stall detection */
	curl_off_t last_bytes;
	double last_change;
	bool stalled;
	struct vs_tls_state tls;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int ssl_index = -1;

static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	ssl_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *opaque)
{
	struct req_state *st = opaque;
	size_t n = size * nmemb;

	if (n > st->max || st->len > st->max - n) {
		st->too_big = true;
		return 0; /* aborts the transfer */
	}
	if (st->len + n + 1 > st->cap) {
		size_t cap = st->cap ? st->cap : 16384;
		char *p;

		while (cap < st->len + n + 1)
			cap *= 2;
		p = realloc(st->data, cap);
		if (!p)
			return 0;
		st->data = p;
		st->cap = cap;
	}
	memcpy(st->data + st->len, ptr, n);
	st->len += n;
	st->data[st->len] = '\0';
	return n;
}

/* Copies a header's value, trimmed. */
static void header_value(const char *v, size_t n, char *out, size_t outlen)
{
	while (n && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
		n--;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, v, n);
	out[n] = '\0';
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *opaque)
{
	struct req_state *st = opaque;
	size_t n = size * nitems;

	if (n > 13 && !strncasecmp(buf, "Content-Type:", 13)) {
		header_value(buf + 13, n - 13, st->content_type,
			     sizeof(st->content_type));
	} else if (n > 11 && !strncasecmp(buf, "Set-Cookie:", 11)) {
		char v[sizeof(st->cookie)];
		char *semi;

		header_value(buf + 11, n - 11, v, sizeof(v));
		/* Keep "vmware_soap_session=VALUE" without its attributes. */
		if (!strncmp(v, COOKIE_NAME "=", strlen(COOKIE_NAME) + 1)) {
			semi = strchr(v, ';');
			if (semi)
				*semi = '\0';
			snprintf(st->cookie, sizeof(st->cookie), "%s", v);
		}
	}
	return n;
}

/* libcurl calls this at least once a second, idle or not. curl's own
 * low-speed check averages over several seconds, which makes it slow to
 * notice a server that went silent right after our upload: count seconds
 * without a byte either way instead. */
static int on_progress(void *opaque, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct req_state *st = opaque;
	curl_off_t bytes = dlnow + ulnow;
	double now = fy_now();

	if (bytes != st->last_bytes || st->last_change == 0) {
		st->last_bytes = bytes;
		st->last_change = now;
		return 0;
	}
	if (now - st->last_change >= (double)st->c->stall_seconds) {
		st->stalled = true;
		return 1; /* aborts the transfer */
	}
	return 0;
}

/* "AA:BB:..." into out, which holds 3 * n bytes. */
static void format_thumbprint(const uint8_t *md, int n, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	int i;

	for (i = 0; i < n; i++) {
		out[3 * i] = hex[md[i] >> 4];
		out[3 * i + 1] = hex[md[i] & 15];
		out[3 * i + 2] = i == n - 1 ? '\0' : ':';
	}
}

static int verify_cb(int preverify_ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(
	    store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct vs_tls_state *ts = ssl ? SSL_CTX_get_ex_data(
					    SSL_get_SSL_CTX(ssl), ssl_index)
				      : NULL;
	X509 *leaf = X509_STORE_CTX_get0_cert(store);
	unsigned char md[EVP_MAX_MD_SIZE], sha1[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, sha1len = 0;
	bool accepted;

	if (!ts)
		return preverify_ok;
	if (leaf && X509_digest(leaf, EVP_sha256(), md, &mdlen) && mdlen == 32)
		format_thumbprint(md, 32, ts->thumbprint);
	if (ts->c->pinned) {
		/* The pin replaces the CA check, as VDDK's thumbprint does. */
		if (mdlen != 32 || memcmp(md, ts->c->pin, 32)) {
			ts->pin_mismatch = true;
			return 0;
		}
		accepted = true;
	} else {
		if (!preverify_ok && !ts->verify_error[0])
			snprintf(ts->verify_error, sizeof(ts->verify_error),
				 "%s", X509_verify_cert_error_string(
					   X509_STORE_CTX_get_error(store)));
		accepted = preverify_ok &&
			   X509_STORE_CTX_get_error_depth(store) == 0;
	}
	/* Remember the SHA-1 thumbprint of a leaf this policy accepted:
	 * VDDK (through nbdkit's vddk plugin) wants that form. */
	if (accepted && leaf && X509_digest(leaf, EVP_sha1(), sha1, &sha1len) &&
	    sha1len == 20) {
		pthread_mutex_lock(&ts->c->lock);
		format_thumbprint(sha1, 20, ts->c->sha1_thumbprint);
		pthread_mutex_unlock(&ts->c->lock);
	}
	return ts->c->pinned ? 1 : preverify_ok;
}

static CURLcode on_ssl_ctx(CURL *easy, void *sslctx, void *opaque)
{
	SSL_CTX *ctx = sslctx;

	SSL_CTX_set_ex_data(ctx, ssl_index, opaque);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
	return CURLE_OK;
}

void vs_http_tls_setup(struct fy_vs_client *c, void *easy,
		       struct vs_tls_state *ts)
{
	CURL *e = easy;

	pthread_once(&curl_once, curl_init);
	memset(ts, 0, sizeof(*ts));
	ts->c = c;
	if (c->pinned || c->verify) {
		curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
		curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, ts);
		/* A pinned certificate's TLS sessions must not be resumed
		 * from another configuration: no shared cache anyway. */
	}
	if (c->pinned) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	} else if (c->verify) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
		if (c->ca_file)
			curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
	} else {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
}

bool vs_http_tls_failed(const struct vs_tls_state *ts, int curl_code)
{
	return ts->pin_mismatch || ts->verify_error[0] ||
	       curl_code == CURLE_PEER_FAILED_VERIFICATION ||
	       curl_code == CURLE_SSL_CONNECT_ERROR;
}

static struct vs_conn *conn_get(struct fy_vs_client *c)
{
	struct vs_conn *conn = NULL;

	pthread_mutex_lock(&c->lock);
	while (!c->idle && c->n_conns >= c->max_conns)
		pthread_cond_wait(&c->conn_free, &c->lock);
	if (c->idle) {
		conn = c->idle;
		c->idle = conn->next;
	} else {
		c->n_conns++;
	}
	pthread_mutex_unlock(&c->lock);
	if (conn)
		return conn;
	conn = calloc(1, sizeof(*conn));
	if (conn)
		conn->easy = curl_easy_init();
	if (!conn || !conn->easy) {
		free(conn);
		pthread_mutex_lock(&c->lock);
		c->n_conns--;
		pthread_cond_signal(&c->conn_free);
		pthread_mutex_unlock(&c->lock);
		return NULL;
	}
	return conn;
}

static void conn_put(struct fy_vs_client *c, struct vs_conn *conn, bool keep)
{
	if (!keep) {
		curl_easy_cleanup(conn->easy);
		free(conn);
	}
	pthread_mutex_lock(&c->lock);
	if (keep) {
		conn->next = c->idle;
		c->idle = conn;
	} else {
		c->n_conns--;
	}
	pthread_cond_signal(&c->conn_free);
	pthread_mutex_unlock(&c->lock);
}

void vs_http_pool_free(struct fy_vs_client *c)
{
	struct vs_conn *conn, *next;

	for (conn = c->idle; conn; conn = next) {
		next = conn->next;
		curl_easy_cleanup(conn->easy);
		free(conn);
	}
	c->idle = NULL;
	c->n_conns = 0;
}

void vs_http_resp_release(struct vs_http_resp *r)
{
	if (!r)
		return;
	free(r->data);
	memset(r, 0, sizeof(*r));
}

static int curl_errno(CURLcode cc)
{
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_FILESIZE_EXCEEDED:
		return -EFBIG;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
		return -EPERM;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

int vs_http_tls_error(const struct vs_tls_state *ts, const char *url,
		      const char *curl_msg)
{
	if (ts->pin_mismatch)
		return fy_err_set(-EPERM, "certificate of %s refused: its "
				  "SHA-256 thumbprint is %s, not the one in "
				  "ferry.vcenter.thumbprint", url,
				  ts->thumbprint);
	if (ts->verify_error[0])
		return fy_err_set(-EPERM, "certificate of %s not trusted (%s); "
				  "its SHA-256 thumbprint is %s: set "
				  "ferry.vcenter.thumbprint to it after checking "
				  "it, or ferry.vcenter.caFile to the CA that "
				  "signed it", url, ts->verify_error,
				  ts->thumbprint[0] ? ts->thumbprint : "unknown");
	return fy_err_set(-EPERM, "TLS with %s failed: %s", url, curl_msg);
}

int vs_http(struct fy_vs_client *c, const char *url, const char *soap_action,
	    const char *body, size_t len, bool with_cookie, bool login,
	    struct vs_http_resp *resp)
{
	struct curl_slist *headers = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	char hdr[640], cookie[sizeof(c->cookie)];
	struct req_state st;
	struct vs_conn *conn;
	CURL *e;
	CURLcode cc;
	bool keep = true;
	int rc = 0;

	memset(resp, 0, sizeof(*resp));
	pthread_once(&curl_once, curl_init);
	memset(&st, 0, sizeof(st));
	st.c = c;
	st.max = c->limits.max_response;

	conn = conn_get(c);
	if (!conn)
		return fy_err_set(-ENOMEM, "cannot create a curl handle");
	e = conn->easy;
	/* Options are set on every request: the handle may have served
	 * another kind of request before. */
	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->request_timeout_ms);
	/* No byte for stall_seconds: a stalled server (on_progress); curl's
	 * averaged low-speed check stays as a backstop. */
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, &st);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, c->stall_seconds);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
			 (curl_off_t)c->limits.max_response);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &st);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &st);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "ferry/" FERRY_VERSION);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");

	vs_http_tls_setup(c, e, &st.tls);

	if (body) {
		headers = curl_slist_append(headers,
					    "Content-Type: text/xml; charset=utf-8");
		snprintf(hdr, sizeof(hdr), "SOAPAction: \"%s\"",
			 soap_action ? soap_action : "");
		headers = curl_slist_append(headers, hdr);
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	} else {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	}
	/* No "Expect: 100-continue" round trip for large bodies. */
	headers = curl_slist_append(headers, "Expect:");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	if (with_cookie) {
		pthread_mutex_lock(&c->lock);
		snprintf(cookie, sizeof(cookie), "%s", c->cookie);
		pthread_mutex_unlock(&c->lock);
		if (cookie[0])
			curl_easy_setopt(e, CURLOPT_COOKIE, cookie);
	}

	cc = curl_easy_perform(e);
	if (cc != CURLE_OK) {
		keep = false;
		if (st.too_big || cc == CURLE_FILESIZE_EXCEEDED)
			rc = fy_err_set(-EFBIG, "response from %s is larger than "
					"the %zu-byte limit "
					"(ferry.vcenter.maxResponseBytes)",
					url, c->limits.max_response);
		else if (vs_http_tls_failed(&st.tls, cc))
			rc = vs_http_tls_error(&st.tls, url,
					       errbuf[0] ? errbuf
							 : curl_easy_strerror(cc));
		else if (st.stalled)
			rc = fy_err_set(-ETIMEDOUT, "%s did not answer in time "
					"(no byte for %ld s)", url,
					c->stall_seconds);
		else if (cc == CURLE_OPERATION_TIMEDOUT)
			rc = fy_err_set(-ETIMEDOUT, "%s did not answer in time "
					"(%s)", url,
					errbuf[0] ? errbuf : "timeout");
		else
			rc = fy_err_set(curl_errno(cc), "request to %s failed: %s",
					url, errbuf[0] ? errbuf
						       : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &resp->status);
	snprintf(resp->content_type, sizeof(resp->content_type), "%s",
		 st.content_type);
	resp->data = st.data;
	resp->len = st.len;
	st.data = NULL;
	if (login) {
		pthread_mutex_lock(&c->lock);
		if (st.cookie[0])
			snprintf(c->cookie, sizeof(c->cookie), "%s", st.cookie);
		pthread_mutex_unlock(&c->lock);
	}
out:
	free(st.data);
	curl_slist_free_all(headers);
	conn_put(c, conn, keep);
	return rc;
}
