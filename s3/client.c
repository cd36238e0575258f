/*
 * The request engine under every S3 operation: a pool of libcurl handles
 * (their connections kept alive), one signed request per attempt (the
 * signature covers the time, so a retry is signed again), the answer's
 * headers and body taken within their bounds, and the retry loop with
 * exponential backoff and full jitter.
 *
 * Credentials go into the signature only. libcurl's verbose mode, which
 * would print the Authorization header, is never turned on, and a
 * server's message is scrubbed of them before it reaches fy_err_msg.
 */
#include "s3/s3_int.h"

#include "common/common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

static const char empty_sha256[] =
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

int fy_s3_open(const struct fy_s3_config *cfg, struct fy_s3 **out)
{
	struct s3_endpoint ep;
	struct fy_s3 *s3;
	int rc;

	*out = NULL;
	rc = s3_parse_endpoint(cfg->endpoint, &ep);
	if (rc < 0)
		return rc;
	if (ep.rest[0] && strcmp(ep.rest, "/") != 0)
		return fy_err_set(-EINVAL,
				  "s3: the endpoint \"%.200s\" has a path: give scheme://host[:port] and the bucket apart",
				  cfg->endpoint);
	if (!s3_valid_bucket(cfg->bucket))
		return fy_err_set(-EINVAL,
				  "s3: \"%.64s\" is not a bucket name: 3 to 63 lower-case letters, digits, dots and hyphens",
				  cfg->bucket);
	if (!cfg->path_style && ep.ip_literal)
		return fy_err_set(-EINVAL,
				  "s3: virtual-host style needs a DNS name, and %s is an address: use path style",
				  ep.host);
	if (!cfg->access_key[0] || !cfg->secret_key[0])
		return fy_err_set(-EINVAL, "s3: no credentials were given");
	if (strnlen(cfg->access_key, FY_S3_SECRET_MAX) == FY_S3_SECRET_MAX ||
	    strnlen(cfg->secret_key, FY_S3_SECRET_MAX) == FY_S3_SECRET_MAX ||
	    strnlen(cfg->region, FY_S3_REGION_MAX) == FY_S3_REGION_MAX ||
	    strnlen(cfg->ca_file, sizeof(cfg->ca_file)) == sizeof(cfg->ca_file))
		return fy_err_set(-EINVAL, "s3: a configuration string is not terminated");
	if (cfg->part_size && cfg->part_size < (1u << 20))
		return fy_err_set(-EINVAL,
				  "s3: a part size of %zu bytes is too small (at least 1 MiB; S3 wants 5 MiB)",
				  cfg->part_size);
	if (cfg->list_page_keys > FY_S3_LIST_PAGE_MAX)
		return fy_err_set(-EINVAL, "s3: at most %d keys per listing page",
				  FY_S3_LIST_PAGE_MAX);
	pthread_once(&curl_once, curl_init);
	s3 = calloc(1, sizeof(*s3));
	if (!s3)
		return fy_err_set(-ENOMEM, "out of memory");
	s3->cfg = *cfg;
	if (!s3->cfg.region[0])
		strcpy(s3->cfg.region, "us-east-1");
	if (!s3->cfg.max_attempts)
		s3->cfg.max_attempts = 6;
	if (!s3->cfg.base_delay_ms)
		s3->cfg.base_delay_ms = 200;
	if (!s3->cfg.max_delay_ms)
		s3->cfg.max_delay_ms = 10000;
	if (!s3->cfg.timeout_s)
		s3->cfg.timeout_s = 60;
	if (!s3->cfg.part_size)
		s3->cfg.part_size = FY_S3_PART_SIZE;
	if (!s3->cfg.list_page_keys)
		s3->cfg.list_page_keys = FY_S3_LIST_PAGE_MAX;
	/* The endpoint without a trailing slash, for building URLs. */
	snprintf(s3->cfg.endpoint, sizeof(s3->cfg.endpoint), "%s://%s",
		 ep.https ? "https" : "http", ep.authority);
	s3->https = ep.https;
	strcpy(s3->authority, ep.authority);
	if (cfg->path_style)
		strcpy(s3->host_header, ep.authority);
	else
		snprintf(s3->host_header, sizeof(s3->host_header), "%s.%s",
			 cfg->bucket, ep.authority);
	pthread_mutex_init(&s3->lock, NULL);
	if (!ep.https)
		fy_warn("s3: %s is plain http: requests and data cross the loopback interface unencrypted (allowed for a loopback host only)",
			s3->cfg.endpoint);
	*out = s3;
	return 0;
}

void fy_s3_close(struct fy_s3 *s3)
{
	size_t i;

	if (!s3)
		return;
	for (i = 0; i < s3->n_idle; i++)
		curl_easy_cleanup(s3->idle[i]);
	pthread_mutex_destroy(&s3->lock);
	OPENSSL_cleanse(&s3->cfg, sizeof(s3->cfg));
	free(s3);
}

static CURL *handle_get(struct fy_s3 *s3)
{
	CURL *e = NULL;

	pthread_mutex_lock(&s3->lock);
	if (s3->n_idle)
		e = s3->idle[--s3->n_idle];
	pthread_mutex_unlock(&s3->lock);
	return e ? e : curl_easy_init();
}

static void handle_put(struct fy_s3 *s3, CURL *e)
{
	pthread_mutex_lock(&s3->lock);
	if (s3->n_idle < S3_POOL_MAX) {
		s3->idle[s3->n_idle++] = e;
		e = NULL;
	}
	pthread_mutex_unlock(&s3->lock);
	if (e)
		curl_easy_cleanup(e);
}

void s3_describe(const struct fy_s3 *s3, const char *key, char *out,
		 size_t out_len)
{
	if (key)
		snprintf(out, out_len, "%s/%s", s3->cfg.bucket, key);
	else
		snprintf(out, out_len, "%s", s3->cfg.bucket);
}

int s3_add_header(struct s3_request *req, const char *name,
		  const char *value)
{
	if (req->n_extra == S3_EXTRA_HEADERS_MAX)
		return fy_err_set(-EINVAL, "s3: too many headers");
	req->extra[req->n_extra].name = name;
	req->extra[req->n_extra].value = value;
	req->n_extra++;
	return 0;
}

void s3_request_release(struct s3_request *req)
{
	free(req->xml);
	req->xml = NULL;
	req->xml_len = 0;
	free(req->err_body);
	req->err_body = NULL;
	req->err_len = 0;
}

/* ---- libcurl callbacks ------------------------------------------------------ */

static bool is_success(long status)
{
	return status >= 200 && status < 300;
}

/* Copies a header value, flagging one that does not fit. */
static void header_copy(struct s3_request *req, char *dst, size_t dst_len,
			const char *v, size_t len)
{
	if (len >= dst_len) {
		req->bad_header = true;
		return;
	}
	memcpy(dst, v, len);
	dst[len] = '\0';
}

static int parse_u64n(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		uint64_t d = (uint64_t)(s[i] - '0');

		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* "bytes START-END/TOTAL" (TOTAL may be "*"). */
static void parse_content_range(struct s3_request *req, const char *v,
				size_t len)
{
	const char *end = v + len, *dash, *slash;

	if (len < 6 || memcmp(v, "bytes ", 6) != 0)
		goto bad;
	v += 6;
	dash = memchr(v, '-', (size_t)(end - v));
	slash = dash ? memchr(dash, '/', (size_t)(end - dash)) : NULL;
	if (!dash || !slash ||
	    parse_u64n(v, (size_t)(dash - v), &req->range_start) < 0 ||
	    parse_u64n(dash + 1, (size_t)(slash - dash - 1), &req->range_end) < 0 ||
	    req->range_end < req->range_start)
		goto bad;
	req->range_total = 0;
	if (!(end - slash == 2 && slash[1] == '*') &&
	    parse_u64n(slash + 1, (size_t)(end - slash - 1), &req->range_total) < 0)
		goto bad;
	req->have_range = true;
	return;
bad:
	req->bad_header = true;
}

static void reset_answer(struct s3_request *req)
{
	req->status = 0;
	req->content_length = -1;
	req->have_range = false;
	req->etag[0] = '\0';
	req->version_id[0] = '\0';
	req->lock_mode[0] = '\0';
	req->retain_until[0] = '\0';
	req->bad_header = false;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *opaque)
{
	struct s3_request *req = opaque;
	size_t len = size * nmemb, nlen;
	const char *colon, *v;

	if (len >= 5 && !memcmp(ptr, "HTTP/", 5)) {
		const char *sp = memchr(ptr, ' ', len);

		/* A new answer (after 100 Continue, say): forget the last. */
		reset_answer(req);
		if (sp && (size_t)(ptr + len - sp) > 3)
			req->status = strtol(sp + 1, NULL, 10);
		return len;
	}
	colon = memchr(ptr, ':', len);
	if (!colon)
		return len;
	nlen = (size_t)(colon - ptr);
	v = colon + 1;
	while (v < ptr + len && (*v == ' ' || *v == '\t'))
		v++;
	while (len > 0 && (ptr[len - 1] == '\r' || ptr[len - 1] == '\n' ||
			   ptr[len - 1] == ' ' || ptr[len - 1] == '\t'))
		len--;
	if (v > ptr + len)
		v = ptr + len;
#define IS(name) (nlen == sizeof(name) - 1 && !strncasecmp(ptr, name, nlen))
	if (IS("content-length")) {
		uint64_t cl;

		if (parse_u64n(v, (size_t)(ptr + len - v), &cl) < 0 ||
		    cl > INT64_MAX)
			req->bad_header = true;
		else
			req->content_length = (int64_t)cl;
	} else if (IS("content-range")) {
		parse_content_range(req, v, (size_t)(ptr + len - v));
	} else if (IS("etag")) {
		header_copy(req, req->etag, sizeof(req->etag), v,
			    (size_t)(ptr + len - v));
	} else if (IS("x-amz-version-id")) {
		header_copy(req, req->version_id, sizeof(req->version_id), v,
			    (size_t)(ptr + len - v));
	} else if (IS("x-amz-object-lock-mode")) {
		header_copy(req, req->lock_mode, sizeof(req->lock_mode), v,
			    (size_t)(ptr + len - v));
	} else if (IS("x-amz-object-lock-retain-until-date")) {
		header_copy(req, req->retain_until, sizeof(req->retain_until),
			    v, (size_t)(ptr + len - v));
	}
#undef IS
	return size * nmemb;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *opaque)
{
	struct s3_request *req = opaque;
	size_t n = size * nmemb;

	if (!is_success(req->status)) {
		/* An error document: keep its start, drop the rest. */
		size_t room = S3_ERROR_BODY_MAX - req->err_len, take = n;

		if (!req->err_body) {
			req->err_body = malloc(S3_ERROR_BODY_MAX + 1);
			if (!req->err_body)
				return n;
		}
		if (take > room)
			take = room;
		memcpy(req->err_body + req->err_len, ptr, take);
		req->err_len += take;
		return n;
	}
	switch (req->sink) {
	case S3_SINK_NONE:
		break;
	case S3_SINK_XML:
		if (n > FY_S3_XML_MAX - req->xml_len) {
			req->overflow = true;
			return 0;
		}
		if (!req->xml) {
			/* Grown to the bound once: answers are small, and
			 * a bounded buffer is simpler than a growing one. */
			size_t first = req->content_length > 0 &&
						       req->content_length <=
							       FY_S3_XML_MAX ?
					       (size_t)req->content_length :
					       64u << 10;
			req->xml = malloc(first + 1);
			req->xml_cap = first;
			if (!req->xml) {
				req->sink_error = ENOMEM;
				return 0;
			}
		}
		if (req->xml_len + n > req->xml_cap) {
			size_t cap = req->xml_cap * 2;
			char *p;

			while (cap < req->xml_len + n)
				cap *= 2;
			if (cap > FY_S3_XML_MAX)
				cap = FY_S3_XML_MAX;
			p = realloc(req->xml, cap + 1);
			if (!p) {
				req->sink_error = ENOMEM;
				return 0;
			}
			req->xml = p;
			req->xml_cap = cap;
		}
		memcpy(req->xml + req->xml_len, ptr, n);
		req->xml_len += n;
		req->xml[req->xml_len] = '\0';
		break;
	case S3_SINK_BUF:
		if (n > req->buf_max - req->received ||
		    (req->content_length >= 0 &&
		     (uint64_t)req->content_length > req->buf_max)) {
			req->overflow = true;
			return 0;
		}
		memcpy(req->buf + req->received, ptr, n);
		break;
	case S3_SINK_FD:
		if (fy_pwrite_all(req->fd, ptr, n, req->received) < 0) {
			req->sink_error = errno ? errno : EIO;
			return 0;
		}
		break;
	}
	req->received += n;
	return n;
}

static size_t on_read(char *ptr, size_t size, size_t nmemb, void *opaque)
{
	struct s3_request *req = opaque;
	uint64_t left = req->body_len - req->body_pos;
	size_t n = size * nmemb;

	if (n > left)
		n = (size_t)left;
	if (n == 0)
		return 0;
	if (req->body) {
		memcpy(ptr, req->body + req->body_pos, n);
	} else {
		ssize_t got;

		do {
			got = pread(req->body_fd, ptr, n,
				    (off_t)(req->body_off + req->body_pos));
		} while (got < 0 && errno == EINTR);
		if (got <= 0) {
			/* A file that shrank under us ends the request. */
			req->body_error = got < 0 ? errno : EIO;
			return CURL_READFUNC_ABORT;
		}
		n = (size_t)got;
	}
	req->body_pos += n;
	return n;
}

static int on_seek(void *opaque, curl_off_t offset, int origin)
{
	struct s3_request *req = opaque;

	if (origin != SEEK_SET || offset < 0 ||
	    (uint64_t)offset > req->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	req->body_pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* ---- one attempt -------------------------------------------------------------- */

/* A server's words, with any credential in them blotted out. */
static void scrub(const struct fy_s3 *s3, char *s)
{
	const char *secrets[2] = { s3->cfg.access_key, s3->cfg.secret_key };
	size_t i;

	for (i = 0; i < 2; i++) {
		size_t len = strlen(secrets[i]);
		char *hit, *from = s;

		if (len < 4)
			continue;
		while ((hit = strstr(from, secrets[i])) != NULL) {
			memset(hit, '*', len);
			from = hit + len;
		}
	}
}

static bool transient_code(const char *code)
{
	return !strcmp(code, "SlowDown") || !strcmp(code, "InternalError") ||
	       !strcmp(code, "RequestTimeout") ||
	       !strcmp(code, "ServiceUnavailable") ||
	       !strcmp(code, "ConditionalRequestConflict");
}

static bool transient_status(long status)
{
	return status == 500 || status == 502 || status == 503 ||
	       status == 504;
}

/*
 * Turns a failed answer (status, code, message) into -errno and one
 * sentence in detail: what the server said and, where we know, what to do.
 */
static int answer_error(const struct s3_request *req, char *detail,
			size_t detail_len)
{
	char said[sizeof(req->code) + sizeof(req->message) + 32];
	const char *code = req->code;

	if (req->code[0] && req->message[0])
		snprintf(said, sizeof(said), "%s: %s", req->code, req->message);
	else if (req->code[0])
		snprintf(said, sizeof(said), "%s", req->code);
	else
		snprintf(said, sizeof(said), "no error document");
	switch (req->status) {
	case 403:
		if (!strcmp(req->method, "DELETE") &&
		    !strcmp(code, "AccessDenied")) {
			snprintf(detail, detail_len,
				 "refused (HTTP 403 %s): the object is under Object Lock retention (or these credentials may not delete it)",
				 said);
			return -EPERM;
		}
		if (!strcmp(code, "InvalidAccessKeyId") ||
		    !strcmp(code, "SignatureDoesNotMatch"))
			snprintf(detail, detail_len,
				 "access denied (HTTP 403 %s): check the access key and secret",
				 said);
		else if (!strcmp(code, "RequestTimeTooSkewed"))
			snprintf(detail, detail_len,
				 "access denied (HTTP 403 %s): this machine's clock differs from the server's: fix the time (NTP)",
				 said);
		else if (!code[0])
			snprintf(detail, detail_len,
				 "access denied (HTTP 403 without a reason, as HEAD answers are): a wrong access key or secret, this machine's clock off from the server's, or no permission");
		else
			snprintf(detail, detail_len,
				 "access denied (HTTP 403 %s)", said);
		return -EACCES;
	case 404:
		snprintf(detail, detail_len, "not found (HTTP 404 %s)", said);
		return -ENOENT;
	case 412:
		snprintf(detail, detail_len,
			 "the object exists already (HTTP 412 %s)", said);
		return -EEXIST;
	case 416:
		snprintf(detail, detail_len,
			 "the range asked is past the object's end (HTTP 416 %s)",
			 said);
		return -EBADMSG;
	case 501:
		snprintf(detail, detail_len,
			 "the server does not implement this request (HTTP 501 %s)",
			 said);
		return -EOPNOTSUPP;
	default:
		snprintf(detail, detail_len, "HTTP %ld %s", req->status, said);
		return -EIO;
	}
}

static int curl_error(struct s3_request *req, CURLcode cc, const char *errbuf,
		      bool *transient, char *detail, size_t detail_len)
{
	const char *what = errbuf[0] ? errbuf : curl_easy_strerror(cc);

	*transient = false;
	if (req->overflow) {
		if (req->sink == S3_SINK_XML)
			snprintf(detail, detail_len,
				 "the answer is over the limit of %u bytes",
				 FY_S3_XML_MAX);
		else
			snprintf(detail, detail_len,
				 "the server sent more than the %zu bytes asked",
				 req->buf_max);
		return -EBADMSG;
	}
	if (req->sink_error) {
		snprintf(detail, detail_len, "storing the answer: %s",
			 strerror(req->sink_error));
		return -req->sink_error;
	}
	if (req->body_error) {
		snprintf(detail, detail_len, "reading the body to send: %s",
			 strerror(req->body_error));
		return -req->body_error;
	}
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		*transient = true;
		snprintf(detail, detail_len, "timed out (%s)", what);
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		*transient = true;
		snprintf(detail, detail_len, "cannot connect (%s)", what);
		return -ECONNREFUSED;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		*transient = true;
		snprintf(detail, detail_len, "connection reset (%s)", what);
		return -ECONNRESET;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CONNECT_ERROR:
		/* The library does not know the flag that set ca_file; the
		 * repository's messages name --s3-ca / s3.ca. */
		snprintf(detail, detail_len,
			 "TLS failed (%s): the store's certificate is not "
			 "trusted for this name (a store with a private CA "
			 "needs that CA's certificate, see --s3-ca)", what);
		return -EIO;
	default:
		snprintf(detail, detail_len, "%s", what);
		return -EIO;
	}
}

static int build_path(const struct fy_s3 *s3, const char *key, char *out,
		      size_t out_len)
{
	char enc[3 * FY_S3_KEY_MAX + 1];
	int rc;

	enc[0] = '\0';
	if (key) {
		if (!key[0] || strlen(key) > FY_S3_KEY_MAX)
			return fy_err_set(-EINVAL,
					  "s3: an object key must have 1 to %d bytes (\"%.64s\" has %zu)",
					  FY_S3_KEY_MAX, key, strlen(key));
		rc = fy_s3_uri_encode(key, true, enc, sizeof(enc));
		if (rc < 0)
			return rc;
	}
	if (s3->cfg.path_style)
		snprintf(out, out_len, "/%s%s%s", s3->cfg.bucket,
			 key ? "/" : "", enc);
	else
		snprintf(out, out_len, "/%s", enc);
	return 0;
}

static int add_line(struct curl_slist **list, const char *name,
		    const char *value)
{
	char line[4096];
	struct curl_slist *l;

	snprintf(line, sizeof(line), "%s: %s", name, value);
	l = curl_slist_append(*list, line);
	if (!l)
		return fy_err_set(-ENOMEM, "out of memory");
	*list = l;
	return 0;
}

static void set_options(struct fy_s3 *s3, CURL *e, struct s3_request *req,
			const char *url, struct curl_slist *list,
			char *errbuf)
{
	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	/* A key may hold "../": it is a name, not a path to tidy. */
	curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "ferry/" FERRY_VERSION);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)s3->cfg.timeout_s);
	/* A request is given up when less than a byte a second moves for
	 * timeout_s, however long the whole transfer takes. */
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)s3->cfg.timeout_s);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (s3->cfg.ca_file[0])
		curl_easy_setopt(e, CURLOPT_CAINFO, s3->cfg.ca_file);
	if (!strcmp(req->method, "HEAD")) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(req->method, "PUT") ||
		   !strcmp(req->method, "POST")) {
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)req->body_len);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(e, CURLOPT_READDATA, req);
		curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(e, CURLOPT_SEEKDATA, req);
	} else if (strcmp(req->method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	}
}

/* Signs and sends req once. 0 for a 2xx answer; else -errno, whether a
 * retry may help, and one sentence on what went wrong. */
static int attempt(struct fy_s3 *s3, CURL *e, struct s3_request *req,
		   const char *url, const char *path, bool *transient,
		   char *detail, size_t detail_len)
{
	struct fy_sigv4_header h[4 + S3_EXTRA_HEADERS_MAX];
	char date[17], auth[1024], errbuf[CURL_ERROR_SIZE];
	const char *sha = req->body_sha256 ? req->body_sha256 : empty_sha256;
	struct curl_slist *list = NULL;
	struct fy_sigv4_request sig;
	time_t now = time(NULL);
	struct tm tm;
	size_t n = 0, i;
	CURLcode cc;
	int rc;

	*transient = false;
	detail[0] = '\0';
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tm);
	h[n++] = (struct fy_sigv4_header){ "Host", s3->host_header };
	h[n++] = (struct fy_sigv4_header){ "x-amz-date", date };
	h[n++] = (struct fy_sigv4_header){ "x-amz-content-sha256", sha };
	if (req->body_md5)
		h[n++] = (struct fy_sigv4_header){ "Content-MD5",
						   req->body_md5 };
	for (i = 0; i < req->n_extra; i++)
		h[n++] = req->extra[i];
	sig = (struct fy_sigv4_request){
		.method = req->method,
		.path = path,
		.query = req->query,
		.headers = h,
		.n_headers = n,
		.payload_hash = sha,
		.region = s3->cfg.region,
		.service = "s3",
		.access_key = s3->cfg.access_key,
		.secret_key = s3->cfg.secret_key,
		.when = now,
	};
	rc = fy_sigv4_sign(&sig, auth, sizeof(auth), NULL, 0, NULL, 0);
	if (rc < 0) {
		snprintf(detail, detail_len, "%s", fy_err_msg());
		return rc;
	}
	for (i = 0; i < n && rc == 0; i++)
		rc = add_line(&list, h[i].name, h[i].value);
	if (rc == 0)
		rc = add_line(&list, "Authorization", auth);
	/* No "Expect: 100-continue" wait before a body, no Accept. */
	if (rc == 0)
		rc = add_line(&list, "Expect", "");
	if (rc == 0)
		rc = add_line(&list, "Accept", "");
	if (rc < 0) {
		curl_slist_free_all(list);
		snprintf(detail, detail_len, "out of memory");
		return rc;
	}

	reset_answer(req);
	req->code[0] = req->message[0] = '\0';
	req->body_pos = 0;
	req->received = 0;
	req->xml_len = 0;
	req->err_len = 0;
	req->overflow = false;
	req->body_error = req->sink_error = 0;
	errbuf[0] = '\0';
	set_options(s3, e, req, url, list, errbuf);
	cc = curl_easy_perform(e);
	curl_slist_free_all(list);
	if (req->sink == S3_SINK_XML && req->xml)
		req->xml[req->xml_len] = '\0';

	if (cc != CURLE_OK)
		return curl_error(req, cc, errbuf, transient, detail,
				  detail_len);
	if (req->bad_header) {
		snprintf(detail, detail_len,
			 "the answer's headers are malformed or too long");
		return -EBADMSG;
	}
	if (is_success(req->status) && req->error_in_ok && req->xml_len) {
		char root[32];

		if (s3_parse_root(req->xml, req->xml_len, root,
				  sizeof(root)) == 0 &&
		    !strcmp(root, "Error")) {
			fy_s3_parse_error(req->xml, req->xml_len, req->code,
					  sizeof(req->code), req->message,
					  sizeof(req->message));
			scrub(s3, req->message);
			*transient = transient_code(req->code);
			snprintf(detail, detail_len, "HTTP %ld with %s: %s",
				 req->status, req->code, req->message);
			return -EIO;
		}
	}
	if (is_success(req->status))
		return 0;
	if (req->err_len)
		fy_s3_parse_error(req->err_body, req->err_len, req->code,
				  sizeof(req->code), req->message,
				  sizeof(req->message));
	fy_err_clear();
	scrub(s3, req->message);
	*transient = transient_status(req->status) || transient_code(req->code);
	return answer_error(req, detail, detail_len);
}

/* Full jitter: a uniform delay in [0, min(cap, base * 2^(attempt - 1))]. */
static unsigned backoff_ms(const struct fy_s3 *s3, unsigned attempt)
{
	uint64_t ceiling = s3->cfg.base_delay_ms;
	uint32_t r;

	if (attempt > 1)
		ceiling <<= (attempt - 1 > 30 ? 30 : attempt - 1);
	if (ceiling > s3->cfg.max_delay_ms)
		ceiling = s3->cfg.max_delay_ms;
	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		r = (uint32_t)rand();
	return (unsigned)(r % (ceiling + 1));
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int s3_call(struct fy_s3 *s3, struct s3_request *req)
{
	char path[16 + FY_S3_BUCKET_MAX + 3 * FY_S3_KEY_MAX];
	char detail[768], what[FY_S3_BUCKET_MAX + FY_S3_KEY_MAX + 2];
	unsigned n;
	size_t url_len;
	char *url = NULL;
	bool transient;
	CURL *e;
	int rc;

	s3_describe(s3, req->key, what, sizeof(what));
	rc = build_path(s3, req->key, path, sizeof(path));
	if (rc < 0)
		return rc;
	/* host_header is the authority, with the bucket in front of it in
	 * virtual-host style. */
	url_len = strlen(s3->host_header) + strlen(path) +
		  (req->query ? strlen(req->query) + 1 : 0) + 16;
	url = malloc(url_len);
	if (!url)
		return fy_err_set(-ENOMEM, "out of memory");
	snprintf(url, url_len, "%s://%s%s%s%s", s3->https ? "https" : "http",
		 s3->host_header, path, req->query ? "?" : "",
		 req->query ? req->query : "");
	e = handle_get(s3);
	if (!e) {
		free(url);
		return fy_err_set(-ENOMEM, "s3: cannot make a libcurl handle");
	}
	for (n = 1;; n++) {
		rc = attempt(s3, e, req, url, path, &transient, detail,
			     sizeof(detail));
		if (rc == 0 || !transient || n >= s3->cfg.max_attempts)
			break;
		req->retried = true;
		{
			unsigned delay = backoff_ms(s3, n);

			fy_warn("s3: %s %s: attempt %u of %u failed: %s; retrying in %u ms",
				req->method, what, n, s3->cfg.max_attempts,
				detail, delay);
			sleep_ms(delay);
		}
	}
	handle_put(s3, e);
	free(url);
	if (rc == 0)
		return 0;
	if (n > 1)
		return fy_err_set(rc, "s3: %s %s: %s (after %u attempts)",
				  req->method, what, detail, n);
	return fy_err_set(rc, "s3: %s %s: %s", req->method, what, detail);
}
