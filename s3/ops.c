/*
 * The S3 operations Ferry uses, each one request (or one per page or
 * part) through s3_call: objects from memory and from files (multipart
 * above one part), ranged and whole reads, HEAD, DELETE, the listings,
 * and Object Lock's retention and bucket configuration.
 */
#include "s3/s3_int.h"

#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* S3 allows at most this many parts in one upload. */
#define S3_PARTS_MAX 10000
/* A query: encoded prefix, token and markers. */
#define S3_QUERY_MAX (256 + 3 * (FY_S3_KEY_MAX + 2 * S3_TOKEN_MAX))
/* Reads while hashing a file's part. */
#define S3_HASH_CHUNK (1u << 20)

static const char *lock_mode_name(enum fy_s3_lock_mode mode)
{
	switch (mode) {
	case FY_S3_LOCK_GOVERNANCE:
		return "GOVERNANCE";
	case FY_S3_LOCK_COMPLIANCE:
		return "COMPLIANCE";
	default:
		return NULL;
	}
}

/* Object Lock and If-None-Match headers; the strings live in date. */
static int put_headers(struct s3_request *req, const struct fy_s3_put_opts *opts,
		       char date[40], bool conditional)
{
	const char *mode;
	int rc = 0;

	if (!opts)
		return 0;
	if (opts->lock_mode != FY_S3_LOCK_NONE) {
		mode = lock_mode_name(opts->lock_mode);
		if (!mode)
			return fy_err_set(-EINVAL, "s3: unknown lock mode %d",
					  (int)opts->lock_mode);
		if (opts->retain_until <= 0)
			return fy_err_set(-EINVAL,
					  "s3: a lock mode needs a retain-until date");
		s3_format_time(opts->retain_until, date, 40);
		rc = s3_add_header(req, "x-amz-object-lock-mode", mode);
		if (rc == 0)
			rc = s3_add_header(req,
					   "x-amz-object-lock-retain-until-date",
					   date);
	}
	if (rc == 0 && conditional && opts->if_none_match)
		rc = s3_add_header(req, "If-None-Match", "*");
	return rc;
}

int fy_s3_put(struct fy_s3 *s3, const char *key, const void *data,
	      size_t len, const struct fy_s3_put_opts *opts)
{
	struct s3_request req = { .method = "PUT", .key = key };
	char sha[65], md5[25], date[40];
	int rc;

	rc = s3_sha256_hex(data, len, sha);
	if (rc == 0)
		rc = s3_md5_base64(data, len, md5);
	if (rc == 0)
		rc = put_headers(&req, opts, date, true);
	if (rc < 0)
		return rc;
	req.body = data ? data : (const uint8_t *)"";
	req.body_len = len;
	req.body_sha256 = sha;
	req.body_md5 = md5;
	rc = s3_call(s3, &req);
	s3_request_release(&req);
	return rc;
}

/* Hashes [off, off + len) of fd for the signature and Content-MD5. */
static int hash_range(int fd, const char *path, uint64_t off, uint64_t len,
		      char sha[65], char md5[25])
{
	struct s3_body_digest *d = s3_body_digest_new();
	uint8_t *buf = malloc(S3_HASH_CHUNK);
	uint64_t done = 0;
	int rc = 0;

	if (!d || !buf) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	while (done < len && rc == 0) {
		size_t want = len - done > S3_HASH_CHUNK ? S3_HASH_CHUNK :
							   (size_t)(len - done);
		ssize_t got = pread(fd, buf, want, (off_t)(off + done));

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = fy_err_set(-errno, "s3: reading %s: %s", path,
					strerror(errno));
			break;
		}
		if (got == 0) {
			rc = fy_err_set(-EIO, "s3: %s shrank while being sent",
					path);
			break;
		}
		rc = s3_body_digest_update(d, buf, (size_t)got);
		done += (uint64_t)got;
	}
	if (rc == 0)
		rc = s3_body_digest_final(d, sha, md5);
out:
	s3_body_digest_free(d);
	free(buf);
	return rc;
}

static int send_file_range(struct fy_s3 *s3, struct s3_request *req, int fd,
			   const char *path, uint64_t off, uint64_t len)
{
	char sha[65], md5[25];
	int rc = hash_range(fd, path, off, len, sha, md5);

	if (rc < 0)
		return rc;
	req->body_fd = fd;
	req->body_off = off;
	req->body_len = len;
	req->body_sha256 = sha;
	req->body_md5 = md5;
	rc = s3_call(s3, req);
	/* sha and md5 go out of scope with this frame. */
	req->body_sha256 = NULL;
	req->body_md5 = NULL;
	return rc;
}

struct part {
	char etag[S3_ETAG_MAX];
};

/* Text for an XML element: & < > escaped. */
static int xml_escape(const char *in, char *out, size_t out_len)
{
	size_t o = 0;

	for (; *in; in++) {
		const char *rep = *in == '&' ? "&amp;" :
				  *in == '<' ? "&lt;" :
				  *in == '>' ? "&gt;" : NULL;
		size_t n = rep ? strlen(rep) : 1;

		if (o + n >= out_len)
			return -ENAMETOOLONG;
		memcpy(out + o, rep ? rep : in, n);
		o += n;
	}
	out[o] = '\0';
	return 0;
}

static int complete_body(const struct part *parts, unsigned n, char **out,
			 size_t *out_len)
{
	size_t cap = 128 + (size_t)n * (64 + 6 * S3_ETAG_MAX), len;
	char *body = malloc(cap), etag[6 * S3_ETAG_MAX];
	unsigned i;

	if (!body)
		return fy_err_set(-ENOMEM, "out of memory");
	len = (size_t)snprintf(body, cap,
			       "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
	for (i = 0; i < n; i++) {
		if (xml_escape(parts[i].etag, etag, sizeof(etag)) < 0) {
			free(body);
			return fy_err_set(-EBADMSG, "s3: part %u's ETag is too long", i + 1);
		}
		len += (size_t)snprintf(body + len, cap - len,
					"<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>",
					i + 1, etag);
	}
	len += (size_t)snprintf(body + len, cap - len,
				"</CompleteMultipartUpload>");
	*out = body;
	*out_len = len;
	return 0;
}

static int upload_parts(struct fy_s3 *s3, const char *key, int fd,
			const char *path, uint64_t size, const char *upload_id,
			const struct fy_s3_put_opts *opts)
{
	uint64_t part_size = s3->cfg.part_size;
	unsigned n = (unsigned)((size + part_size - 1) / part_size), i;
	char enc_id[3 * S3_TOKEN_MAX + 1], query[64 + 3 * S3_TOKEN_MAX];
	char sha[65], md5[25], date[40], what[FY_S3_KEY_MAX + 80];
	struct part *parts = calloc(n, sizeof(*parts));
	struct s3_request req;
	struct fy_s3_head head;
	char *body = NULL;
	size_t body_len = 0;
	int rc;

	if (!parts)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = fy_s3_uri_encode(upload_id, false, enc_id, sizeof(enc_id));
	if (rc < 0)
		goto out;
	for (i = 0; i < n; i++) {
		uint64_t off = (uint64_t)i * part_size;
		uint64_t len = size - off < part_size ? size - off : part_size;

		memset(&req, 0, sizeof(req));
		req.method = "PUT";
		req.key = key;
		snprintf(query, sizeof(query), "partNumber=%u&uploadId=%s",
			 i + 1, enc_id);
		req.query = query;
		rc = send_file_range(s3, &req, fd, path, off, len);
		if (rc == 0 && !req.etag[0])
			rc = fy_err_set(-EBADMSG,
					"s3: PUT %s part %u: the answer has no ETag",
					key, i + 1);
		if (rc == 0)
			memcpy(parts[i].etag, req.etag, sizeof(req.etag));
		s3_request_release(&req);
		if (rc < 0)
			goto out;
	}

	rc = complete_body(parts, n, &body, &body_len);
	if (rc == 0)
		rc = s3_sha256_hex(body, body_len, sha);
	if (rc == 0)
		rc = s3_md5_base64(body, body_len, md5);
	if (rc < 0)
		goto out;
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.key = key;
	snprintf(query, sizeof(query), "uploadId=%s", enc_id);
	req.query = query;
	req.body = (const uint8_t *)body;
	req.body_len = body_len;
	req.body_sha256 = sha;
	req.body_md5 = md5;
	req.sink = S3_SINK_XML;
	req.error_in_ok = true;
	rc = put_headers(&req, opts && opts->if_none_match ? opts : NULL, date,
			 true);
	if (rc == 0)
		rc = s3_call(s3, &req);
	/*
	 * An answer lost after the server completed the upload makes the
	 * retry find no upload: the object is there when it has our size.
	 */
	if (rc == -ENOENT && req.retried && !strcmp(req.code, "NoSuchUpload")) {
		snprintf(what, sizeof(what), "%s", fy_err_msg());
		if (fy_s3_head(s3, key, &head) == 0 && head.size == size) {
			rc = 0;
			memcpy(req.version_id, head.version_id,
			       sizeof(req.version_id));
		} else {
			fy_err_set(rc, "%s", what);
		}
	}
	/*
	 * radosgw (16.2) ignores the lock headers of CreateMultipartUpload
	 * and stores the object unlocked: set the retention on the version
	 * just made. Where they were honoured this sets the same date again,
	 * which S3 allows in both modes.
	 */
	if (rc == 0 && opts && opts->lock_mode != FY_S3_LOCK_NONE)
		rc = fy_s3_put_retention(s3, key,
					 strcmp(req.version_id, "null") ?
						 req.version_id : NULL,
					 opts->lock_mode, opts->retain_until);
	s3_request_release(&req);
out:
	free(body);
	free(parts);
	return rc;
}

static int put_multipart(struct fy_s3 *s3, const char *key, int fd,
			 const char *path, uint64_t size,
			 const struct fy_s3_put_opts *opts)
{
	struct s3_request req = { .method = "POST", .key = key };
	char upload_id[S3_TOKEN_MAX], date[40], saved[FY_ERR_MAX];
	int rc, rc2;

	if ((size + s3->cfg.part_size - 1) / s3->cfg.part_size > S3_PARTS_MAX)
		return fy_err_set(-EFBIG,
				  "s3: %s is %" PRIu64 " bytes, more than %d parts of %zu",
				  path, size, S3_PARTS_MAX, s3->cfg.part_size);
	/* The lock headers go with the upload's creation, not its parts. */
	rc = put_headers(&req, opts, date, false);
	if (rc < 0)
		return rc;
	req.query = "uploads";
	req.sink = S3_SINK_XML;
	rc = s3_call(s3, &req);
	if (rc == 0)
		rc = s3_parse_upload_id(req.xml, req.xml_len, upload_id,
					sizeof(upload_id));
	s3_request_release(&req);
	if (rc < 0)
		return rc;
	rc = upload_parts(s3, key, fd, path, size, upload_id, opts);
	if (rc == 0)
		return 0;
	/* Parts left behind cost storage until aborted. */
	snprintf(saved, sizeof(saved), "%s", fy_err_msg());
	rc2 = fy_s3_abort_upload(s3, key, upload_id);
	if (rc2 < 0)
		fy_warn("s3: aborting the failed upload of %s: %s", key,
			fy_err_msg());
	return fy_err_set(rc, "%s", saved);
}

int fy_s3_put_file(struct fy_s3 *s3, const char *key, const char *path,
		   const struct fy_s3_put_opts *opts)
{
	struct s3_request req = { .method = "PUT", .key = key };
	char date[40];
	struct stat st;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fy_err_set(-errno, "s3: cannot open %s: %s", path,
				  strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = fy_err_set(-errno, "s3: %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = fy_err_set(-EINVAL, "s3: %s is not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > s3->cfg.part_size) {
		rc = put_multipart(s3, key, fd, path, (uint64_t)st.st_size,
				   opts);
		goto out;
	}
	rc = put_headers(&req, opts, date, true);
	if (rc == 0)
		rc = send_file_range(s3, &req, fd, path, 0,
				     (uint64_t)st.st_size);
	s3_request_release(&req);
out:
	close(fd);
	return rc;
}

int fy_s3_get(struct fy_s3 *s3, const char *key, uint64_t offset,
	      size_t len, void *buf, size_t cap, size_t *got)
{
	struct s3_request req = { .method = "GET", .key = key };
	char range[64], what[FY_S3_BUCKET_MAX + FY_S3_KEY_MAX + 2];
	uint64_t last = 0;
	int rc;

	*got = 0;
	s3_describe(s3, key, what, sizeof(what));
	if (len > cap)
		return fy_err_set(-EINVAL,
				  "s3: GET %s: %zu bytes asked into a buffer of %zu",
				  what, len, cap);
	req.sink = S3_SINK_BUF;
	req.buf = buf;
	req.buf_max = len ? len : cap;
	if (len) {
		if (offset > UINT64_MAX - len)
			return fy_err_set(-EINVAL, "s3: GET %s: range overflows",
					  what);
		last = offset + len - 1;
		snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64,
			 offset, last);
		s3_add_header(&req, "Range", range);
	}
	rc = s3_call(s3, &req);
	if (rc < 0)
		goto out;
	if (req.content_length >= 0 &&
	    req.received != (uint64_t)req.content_length) {
		rc = fy_err_set(-EBADMSG,
				"s3: GET %s: %" PRIu64 " bytes came of the %" PRId64 " announced",
				what, req.received, req.content_length);
		goto out;
	}
	if (len == 0) {
		*got = (size_t)req.received;
		goto out;
	}
	if (req.status == 206) {
		if (!req.have_range || req.range_start != offset) {
			rc = fy_err_set(-EBADMSG,
					"s3: GET %s: the answer's Content-Range does not start at %" PRIu64,
					what, offset);
			goto out;
		}
		if (req.range_end != last || req.received != len) {
			rc = fy_err_set(-EBADMSG,
					"s3: GET %s: bytes %" PRIu64 "-%" PRIu64 " asked, %" PRIu64 "-%" PRIu64 " came: the object is shorter",
					what, offset, last, req.range_start,
					req.range_end);
			goto out;
		}
	} else if (offset != 0 || req.received != len) {
		/* A server that ignores Range sends the whole object. */
		rc = fy_err_set(-EBADMSG,
				"s3: GET %s: asked bytes %" PRIu64 "-%" PRIu64 ", got HTTP %ld with %" PRIu64 " bytes",
				what, offset, last, req.status, req.received);
		goto out;
	}
	*got = len;
out:
	s3_request_release(&req);
	return rc;
}

int fy_s3_get_file(struct fy_s3 *s3, const char *key, const char *path)
{
	struct s3_request req = { .method = "GET", .key = key };
	char *tmp = NULL, *dir_copy = NULL;
	int fd = -1, rc;

	if (asprintf(&tmp, "%s.XXXXXX", path) < 0) {
		tmp = NULL;
		return fy_err_set(-ENOMEM, "out of memory");
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = fy_err_set(-errno, "s3: cannot create %s: %s", tmp,
				strerror(errno));
		free(tmp);
		return rc;
	}
	req.sink = S3_SINK_FD;
	req.fd = fd;
	rc = s3_call(s3, &req);
	if (rc == 0 && req.content_length >= 0 &&
	    req.received != (uint64_t)req.content_length)
		rc = fy_err_set(-EBADMSG,
				"s3: GET %s: %" PRIu64 " bytes came of the %" PRId64 " announced",
				key, req.received, req.content_length);
	/* A retry wrote from offset 0 again; cut what an earlier, longer
	 * attempt left past the end. */
	if (rc == 0 && ftruncate(fd, (off_t)req.received) < 0)
		rc = fy_err_set(-errno, "s3: %s: %s", tmp, strerror(errno));
	if (rc == 0 && fsync(fd) < 0)
		rc = fy_err_set(-errno, "s3: fsync %s: %s", tmp,
				strerror(errno));
	if (close(fd) < 0 && rc == 0)
		rc = fy_err_set(-errno, "s3: close %s: %s", tmp,
				strerror(errno));
	if (rc == 0 && rename(tmp, path) < 0)
		rc = fy_err_set(-errno, "s3: rename %s to %s: %s", tmp, path,
				strerror(errno));
	if (rc == 0) {
		dir_copy = strdup(path);
		if (!dir_copy)
			rc = fy_err_set(-ENOMEM, "out of memory");
		else
			rc = fy_fsync_dir(dirname(dir_copy));
	} else {
		unlink(tmp);
	}
	s3_request_release(&req);
	free(dir_copy);
	free(tmp);
	return rc;
}

static int parse_lock_mode(const char *s, enum fy_s3_lock_mode *out)
{
	if (!s[0])
		*out = FY_S3_LOCK_NONE;
	else if (!strcmp(s, "GOVERNANCE"))
		*out = FY_S3_LOCK_GOVERNANCE;
	else if (!strcmp(s, "COMPLIANCE"))
		*out = FY_S3_LOCK_COMPLIANCE;
	else
		return -EINVAL;
	return 0;
}

int fy_s3_head(struct fy_s3 *s3, const char *key, struct fy_s3_head *out)
{
	struct s3_request req = { .method = "HEAD", .key = key };
	char what[FY_S3_BUCKET_MAX + FY_S3_KEY_MAX + 2];
	int rc;

	memset(out, 0, sizeof(*out));
	s3_describe(s3, key, what, sizeof(what));
	rc = s3_call(s3, &req);
	if (rc < 0)
		goto out;
	if (req.content_length < 0) {
		rc = fy_err_set(-EBADMSG, "s3: HEAD %s: no Content-Length",
				what);
		goto out;
	}
	out->size = (uint64_t)req.content_length;
	/* An unversioned bucket may say "null". */
	if (strcmp(req.version_id, "null") != 0)
		memcpy(out->version_id, req.version_id,
		       sizeof(out->version_id));
	if (parse_lock_mode(req.lock_mode, &out->lock_mode) < 0) {
		rc = fy_err_set(-EBADMSG, "s3: HEAD %s: unknown lock mode \"%s\"",
				what, req.lock_mode);
		goto out;
	}
	if (req.retain_until[0] &&
	    s3_parse_time(req.retain_until, &out->retain_until) < 0)
		rc = fy_err_set(-EBADMSG,
				"s3: HEAD %s: the retain-until date \"%s\" is not a time",
				what, req.retain_until);
out:
	s3_request_release(&req);
	return rc;
}

/* "versionId=ENCODED" or "" for the current version. */
static int version_query(const char *prefix, const char *version_id,
			 char *out, size_t out_len)
{
	char enc[3 * S3_VERSION_MAX + 1];
	int rc;

	if (!version_id || !version_id[0]) {
		snprintf(out, out_len, "%s", prefix);
		return 0;
	}
	if (strlen(version_id) >= S3_VERSION_MAX)
		return fy_err_set(-EINVAL, "s3: a version id is too long");
	rc = fy_s3_uri_encode(version_id, false, enc, sizeof(enc));
	if (rc == 0)
		snprintf(out, out_len, "%s%sversionId=%s", prefix,
			 prefix[0] ? "&" : "", enc);
	return rc;
}

int fy_s3_delete(struct fy_s3 *s3, const char *key, const char *version_id)
{
	struct s3_request req = { .method = "DELETE", .key = key };
	char query[64 + 3 * S3_VERSION_MAX];
	int rc;

	rc = version_query("", version_id, query, sizeof(query));
	if (rc < 0)
		return rc;
	req.query = query[0] ? query : NULL;
	rc = s3_call(s3, &req);
	s3_request_release(&req);
	return rc;
}

/* Appends "&name=ENCODED(value)" to a query under construction. */
static int query_add(char *q, size_t q_len, const char *name,
		     const char *value)
{
	char enc[3 * (FY_S3_KEY_MAX + S3_TOKEN_MAX) + 1];
	size_t used = strlen(q);
	int rc;

	rc = fy_s3_uri_encode(value, false, enc, sizeof(enc));
	if (rc < 0)
		return rc;
	if ((size_t)snprintf(q + used, q_len - used, "%s%s=%s",
			     used ? "&" : "", name, enc) >= q_len - used)
		return fy_err_set(-ENAMETOOLONG, "s3: the query is too long");
	return 0;
}

static int check_prefix(const char *prefix)
{
	if (prefix && strlen(prefix) > FY_S3_KEY_MAX)
		return fy_err_set(-EINVAL, "s3: a prefix longer than %d bytes",
				  FY_S3_KEY_MAX);
	return 0;
}

int fy_s3_list(struct fy_s3 *s3, const char *prefix,
	       int (*cb)(void *opaque, const char *key, uint64_t size),
	       void *opaque)
{
	char *token = NULL, *next = NULL, *query = NULL, keys[16];
	struct s3_request req;
	int rc;

	rc = check_prefix(prefix);
	if (rc < 0)
		return rc;
	token = calloc(1, S3_TOKEN_MAX);
	next = calloc(1, S3_TOKEN_MAX);
	query = malloc(S3_QUERY_MAX);
	if (!token || !next || !query) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	snprintf(keys, sizeof(keys), "%u", s3->cfg.list_page_keys);
	for (;;) {
		snprintf(query, S3_QUERY_MAX, "list-type=2");
		rc = query_add(query, S3_QUERY_MAX, "max-keys", keys);
		if (rc == 0 && prefix && prefix[0])
			rc = query_add(query, S3_QUERY_MAX, "prefix", prefix);
		if (rc == 0 && token[0])
			rc = query_add(query, S3_QUERY_MAX,
				       "continuation-token", token);
		if (rc < 0)
			goto out;
		memset(&req, 0, sizeof(req));
		req.method = "GET";
		req.query = query;
		req.sink = S3_SINK_XML;
		rc = s3_call(s3, &req);
		if (rc == 0)
			rc = fy_s3_parse_list(req.xml, req.xml_len, cb, opaque,
					      next, S3_TOKEN_MAX);
		s3_request_release(&req);
		if (rc)
			goto out;
		if (!next[0])
			break;
		if (!strcmp(next, token)) {
			rc = fy_err_set(-EBADMSG,
					"s3: ListObjectsV2 of %s: the server gave the same continuation token twice",
					s3->cfg.bucket);
			goto out;
		}
		memcpy(token, next, S3_TOKEN_MAX);
	}
out:
	free(token);
	free(next);
	free(query);
	return rc;
}

int fy_s3_list_versions(struct fy_s3 *s3, const char *prefix,
			int (*cb)(void *opaque, const char *key,
				  const char *version_id, bool delete_marker,
				  uint64_t size),
			void *opaque)
{
	struct s3_versions_page *page = NULL;
	char *query = NULL, keys[16], last_key[FY_S3_KEY_MAX + 1];
	char last_version[S3_VERSION_MAX];
	struct s3_request req;
	bool more = false;
	int rc;

	rc = check_prefix(prefix);
	if (rc < 0)
		return rc;
	page = calloc(1, sizeof(*page));
	query = malloc(S3_QUERY_MAX);
	if (!page || !query) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	snprintf(keys, sizeof(keys), "%u", s3->cfg.list_page_keys);
	last_key[0] = last_version[0] = '\0';
	do {
		snprintf(query, S3_QUERY_MAX, "versions");
		rc = query_add(query, S3_QUERY_MAX, "max-keys", keys);
		if (rc == 0 && prefix && prefix[0])
			rc = query_add(query, S3_QUERY_MAX, "prefix", prefix);
		if (rc == 0 && more)
			rc = query_add(query, S3_QUERY_MAX, "key-marker",
				       page->next_key);
		if (rc == 0 && more && page->next_version[0])
			rc = query_add(query, S3_QUERY_MAX,
				       "version-id-marker", page->next_version);
		if (rc < 0)
			goto out;
		memset(&req, 0, sizeof(req));
		req.method = "GET";
		req.query = query;
		req.sink = S3_SINK_XML;
		rc = s3_call(s3, &req);
		if (rc == 0)
			rc = s3_parse_versions(req.xml, req.xml_len, cb, opaque,
					       page);
		s3_request_release(&req);
		if (rc)
			goto out;
		more = page->truncated;
		if (more && !strcmp(page->next_key, last_key) &&
		    !strcmp(page->next_version, last_version)) {
			rc = fy_err_set(-EBADMSG,
					"s3: ListObjectVersions of %s: the server gave the same markers twice",
					s3->cfg.bucket);
			goto out;
		}
		memcpy(last_key, page->next_key, sizeof(last_key));
		memcpy(last_version, page->next_version, sizeof(last_version));
	} while (more);
out:
	free(page);
	free(query);
	return rc;
}

int fy_s3_list_uploads(struct fy_s3 *s3, const char *prefix,
		       int (*cb)(void *opaque, const char *key,
				 const char *upload_id, time_t initiated),
		       void *opaque)
{
	struct s3_uploads_page *page = NULL;
	char *query = NULL, keys[16];
	struct s3_request req;
	bool more = false;
	int rc;

	rc = check_prefix(prefix);
	if (rc < 0)
		return rc;
	page = calloc(1, sizeof(*page));
	query = malloc(S3_QUERY_MAX);
	if (!page || !query) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	snprintf(keys, sizeof(keys), "%u", s3->cfg.list_page_keys);
	do {
		snprintf(query, S3_QUERY_MAX, "uploads");
		rc = query_add(query, S3_QUERY_MAX, "max-uploads", keys);
		if (rc == 0 && prefix && prefix[0])
			rc = query_add(query, S3_QUERY_MAX, "prefix", prefix);
		if (rc == 0 && more)
			rc = query_add(query, S3_QUERY_MAX, "key-marker",
				       page->next_key);
		if (rc == 0 && more && page->next_upload[0])
			rc = query_add(query, S3_QUERY_MAX, "upload-id-marker",
				       page->next_upload);
		if (rc < 0)
			goto out;
		memset(&req, 0, sizeof(req));
		req.method = "GET";
		req.query = query;
		req.sink = S3_SINK_XML;
		rc = s3_call(s3, &req);
		if (rc == 0)
			rc = s3_parse_uploads(req.xml, req.xml_len, cb, opaque,
					      page);
		s3_request_release(&req);
		if (rc)
			goto out;
		more = page->truncated;
	} while (more);
out:
	free(page);
	free(query);
	return rc;
}

int fy_s3_abort_upload(struct fy_s3 *s3, const char *key,
		       const char *upload_id)
{
	struct s3_request req = { .method = "DELETE", .key = key };
	char enc[3 * S3_TOKEN_MAX + 1], query[32 + 3 * S3_TOKEN_MAX];
	int rc;

	if (!upload_id || !upload_id[0] || strlen(upload_id) >= S3_TOKEN_MAX)
		return fy_err_set(-EINVAL, "s3: a bad upload id");
	rc = fy_s3_uri_encode(upload_id, false, enc, sizeof(enc));
	if (rc < 0)
		return rc;
	snprintf(query, sizeof(query), "uploadId=%s", enc);
	req.query = query;
	rc = s3_call(s3, &req);
	s3_request_release(&req);
	return rc;
}

int fy_s3_put_retention(struct fy_s3 *s3, const char *key,
			const char *version_id, enum fy_s3_lock_mode mode,
			time_t retain_until)
{
	struct s3_request req = { .method = "PUT", .key = key };
	char query[64 + 3 * S3_VERSION_MAX], body[512], date[40];
	char sha[65], md5[25];
	const char *name = lock_mode_name(mode);
	int rc;

	if (!name || retain_until <= 0)
		return fy_err_set(-EINVAL,
				  "s3: retention needs GOVERNANCE or COMPLIANCE and a date");
	rc = version_query("retention", version_id, query, sizeof(query));
	if (rc < 0)
		return rc;
	s3_format_time(retain_until, date, sizeof(date));
	snprintf(body, sizeof(body),
		 "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>%s</Mode><RetainUntilDate>%s</RetainUntilDate></Retention>",
		 name, date);
	rc = s3_sha256_hex(body, strlen(body), sha);
	if (rc == 0)
		rc = s3_md5_base64(body, strlen(body), md5);
	if (rc < 0)
		return rc;
	req.query = query;
	req.body = (const uint8_t *)body;
	req.body_len = strlen(body);
	req.body_sha256 = sha;
	req.body_md5 = md5;
	rc = s3_call(s3, &req);
	s3_request_release(&req);
	return rc;
}

int fy_s3_bucket_lock_enabled(struct fy_s3 *s3, bool *enabled)
{
	struct s3_request req = { .method = "GET", .query = "object-lock" };
	int rc;

	*enabled = false;
	req.sink = S3_SINK_XML;
	rc = s3_call(s3, &req);
	if (rc == 0)
		rc = s3_parse_lock_config(req.xml, req.xml_len, enabled);
	else if (rc == -ENOENT &&
		 !strcmp(req.code, "ObjectLockConfigurationNotFoundError")) {
		fy_err_clear();
		rc = 0;
	}
	s3_request_release(&req);
	return rc;
}
