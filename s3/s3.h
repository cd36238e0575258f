/*
 * s3: Ferry's S3 client (libcurl, OpenSSL, libxml2), with its own AWS
 * Signature Version 4 signer. It depends on common only. Used by the
 * repository's object-storage store (image/s3store.c); docs/S3.md says how
 * an admin sets a bucket up.
 *
 * Every call returns 0 or -errno with a readable message (fy_err_msg):
 *   -ENOENT     404 (NoSuchKey, NoSuchBucket, NoSuchUpload)
 *   -EACCES     403; the message carries the server's code and says what
 *               it means (wrong key, clock skew for RequestTimeTooSkewed)
 *   -EPERM      a delete or overwrite refused by Object Lock retention
 *   -EEXIST     a conditional write found the object there (412)
 *   -EBADMSG    a response that does not parse within its bounds
 *   -ETIMEDOUT  / -ECONNRESET / -ECONNREFUSED / -EIO: the last failure
 *               after every retry
 *   -EOPNOTSUPP the server does not implement the request (501)
 *   -EINVAL     a bad argument (key too long, bad URL)
 * Transient failures (timeouts, connection resets, 500, 502, 503, 504,
 * SlowDown) are retried with exponential backoff and full jitter, at most
 * max_attempts times in all, each retry logged at warn level; a retried
 * upload starts again from the beginning of its body.
 *
 * A struct fy_s3 may be used from many threads at once: each call takes a
 * libcurl handle from a small pool (connections are kept alive).
 * Credentials never reach a log line or an error message.
 */
#ifndef FERRY_S3_H
#define FERRY_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define FY_S3_KEY_MAX 512         /* longest object key, bytes */
#define FY_S3_URL_MAX 1024        /* endpoint URL */
#define FY_S3_BUCKET_MAX 63       /* S3's bucket name rule: 3..63 */
#define FY_S3_REGION_MAX 64
#define FY_S3_SECRET_MAX 256      /* access key id and secret */
#define FY_S3_XML_MAX (4u << 20)  /* largest XML response parsed */
#define FY_S3_LIST_PAGE_MAX 1000  /* keys per ListObjectsV2 page */
/* Bodies larger than this go as a multipart upload in parts of this size. */
#define FY_S3_PART_SIZE (16u << 20)

struct fy_s3_config {
	/* scheme://host[:port], no path, e.g. "https://s3.example:7480".
	 * http:// is accepted only for loopback hosts (127.0.0.0/8, ::1,
	 * localhost); fy_s3_open logs a warning for it. */
	char endpoint[FY_S3_URL_MAX];
	char bucket[FY_S3_BUCKET_MAX + 1];
	char region[FY_S3_REGION_MAX];  /* "" means "us-east-1" */
	bool path_style;                /* endpoint/bucket/key, else
					   bucket.host/key */
	char ca_file[4096];             /* "" means the system store */
	char access_key[FY_S3_SECRET_MAX];
	char secret_key[FY_S3_SECRET_MAX];
	unsigned max_attempts;          /* 0 means 6 */
	unsigned base_delay_ms;         /* first backoff, 0 means 200 */
	unsigned max_delay_ms;          /* cap on one backoff, 0 means 10000 */
	unsigned timeout_s;             /* per request without progress, 0: 60 */
	/* Tuning, 0 for the defaults: part size of fy_s3_put_file's
	 * multipart uploads (FY_S3_PART_SIZE; at least 5 MiB on AWS) and keys
	 * asked per listing page (FY_S3_LIST_PAGE_MAX; at most that). */
	size_t part_size;
	unsigned list_page_keys;
};

/* Fills access_key/secret_key: from file when it is not NULL (mode 0600 or
 * stricter and owned by the caller, refused otherwise; lines
 * "access_key_id=..." and "secret_access_key=...", # comments), else from
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. */
int fy_s3_load_credentials(struct fy_s3_config *cfg, const char *file);

/* Checks an "https://HOST:PORT/BUCKET" URL and splits it into endpoint and
 * bucket (the form ferry-repo init --s3 takes). */
int fy_s3_parse_url(const char *url, struct fy_s3_config *cfg);

struct fy_s3;

int fy_s3_open(const struct fy_s3_config *cfg, struct fy_s3 **out);
void fy_s3_close(struct fy_s3 *s3);

enum fy_s3_lock_mode {
	FY_S3_LOCK_NONE = 0,
	FY_S3_LOCK_GOVERNANCE,
	FY_S3_LOCK_COMPLIANCE,
};

struct fy_s3_put_opts {
	enum fy_s3_lock_mode lock_mode; /* NONE: no retention headers */
	time_t retain_until;            /* with a lock mode */
	bool if_none_match;             /* If-None-Match: * (-EEXIST) */
};

/* One object from memory. Sends x-amz-content-sha256 of the body and
 * Content-MD5 (Object Lock requires it). opts may be NULL. */
int fy_s3_put(struct fy_s3 *s3, const char *key, const void *data,
	      size_t len, const struct fy_s3_put_opts *opts);
/* One object from a file, streamed; multipart (FY_S3_PART_SIZE parts)
 * when larger than one part; a failed multipart upload is aborted. */
int fy_s3_put_file(struct fy_s3 *s3, const char *key, const char *path,
		   const struct fy_s3_put_opts *opts);
/* Bytes [offset, offset + len) into buf (exactly len, or -EBADMSG when
 * the object is shorter). len 0 means the whole object, which must fit in
 * cap; *got says how much was read. */
int fy_s3_get(struct fy_s3 *s3, const char *key, uint64_t offset,
	      size_t len, void *buf, size_t cap, size_t *got);
/* The whole object into a new file at path (created 0600, fsync'd). */
int fy_s3_get_file(struct fy_s3 *s3, const char *key, const char *path);

struct fy_s3_head {
	uint64_t size;
	char version_id[256];        /* "" when the bucket is unversioned */
	enum fy_s3_lock_mode lock_mode;
	time_t retain_until;         /* 0 when none */
};
int fy_s3_head(struct fy_s3 *s3, const char *key, struct fy_s3_head *out);

/* DELETE; version_id NULL or "" deletes the current version (which, in a
 * versioned bucket, only adds a delete marker). -EPERM under retention. */
int fy_s3_delete(struct fy_s3 *s3, const char *key, const char *version_id);

/* Every object under prefix (ListObjectsV2, following continuation
 * tokens), in the server's order (ascending keys). cb returns non-zero to
 * stop, which is returned. */
int fy_s3_list(struct fy_s3 *s3, const char *prefix,
	       int (*cb)(void *opaque, const char *key, uint64_t size),
	       void *opaque);

/* Every version and delete marker under prefix (ListObjectVersions). */
int fy_s3_list_versions(struct fy_s3 *s3, const char *prefix,
			int (*cb)(void *opaque, const char *key,
				  const char *version_id, bool delete_marker,
				  uint64_t size),
			void *opaque);

/* PutObjectRetention on one version (NULL: current); extends only (a
 * shorter date is refused by the server in COMPLIANCE mode). */
int fy_s3_put_retention(struct fy_s3 *s3, const char *key,
			const char *version_id, enum fy_s3_lock_mode mode,
			time_t retain_until);

/* Whether the bucket has Object Lock enabled (GetObjectLockConfiguration). */
int fy_s3_bucket_lock_enabled(struct fy_s3 *s3, bool *enabled);

/* Multipart uploads left behind (a crash mid-upload), and their abort. */
int fy_s3_list_uploads(struct fy_s3 *s3, const char *prefix,
		       int (*cb)(void *opaque, const char *key,
				 const char *upload_id, time_t initiated),
		       void *opaque);
int fy_s3_abort_upload(struct fy_s3 *s3, const char *key,
		       const char *upload_id);

/* ---- the signer, public for its tests ---------------------------------- */

struct fy_sigv4_header {
	const char *name;  /* any case; signed lower-cased and trimmed */
	const char *value;
};

struct fy_sigv4_request {
	const char *method;       /* "GET" */
	const char *path;         /* already URI-encoded absolute path */
	const char *query;        /* query "a=b&c" or NULL, each name and
				     value plain or percent-encoded: it is
				     canonicalised (decoded, encoded again
				     as SigV4 wants, sorted) */
	const struct fy_sigv4_header *headers; /* must include host and
						  x-amz-date (of when) */
	size_t n_headers;
	const char *payload_hash; /* hex SHA-256 or "UNSIGNED-PAYLOAD" */
	const char *region;
	const char *service;      /* "s3" */
	const char *access_key;
	const char *secret_key;
	time_t when;              /* request time, UTC */
};

/* The Authorization header's value; also the intermediate strings for
 * tests (each may be NULL). Returns 0 or -ENAMETOOLONG/-EINVAL. */
int fy_sigv4_sign(const struct fy_sigv4_request *req, char *auth,
		  size_t auth_len, char *canonical, size_t canonical_len,
		  char *to_sign, size_t to_sign_len);

/* S3's URI encoding of one path segment or query component (RFC 3986
 * unreserved characters kept; '/' kept when keep_slash). */
int fy_s3_uri_encode(const char *in, bool keep_slash, char *out,
		     size_t out_len);

/* ---- bounded parsers of the XML answers, public for fuzzing ------------- */

/* <Error><Code>..</Code><Message>..</Message></Error>; "" when absent. */
int fy_s3_parse_error(const char *xml, size_t len, char *code,
		      size_t code_len, char *message, size_t message_len);
/* One ListObjectsV2 page: cb per <Contents>, and the next continuation
 * token ("" when the listing is complete). */
int fy_s3_parse_list(const char *xml, size_t len,
		     int (*cb)(void *opaque, const char *key, uint64_t size),
		     void *opaque, char *next_token, size_t next_token_len);

#endif
