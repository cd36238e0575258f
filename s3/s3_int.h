/*
 * s3's private header: the parsers of the XML answers that only s3.c needs,
 * and the small helpers the folder's files share. Not for other folders.
 */
#ifndef FERRY_S3_INT_H
#define FERRY_S3_INT_H

#include "s3/s3.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The longest continuation token, key marker or upload id we keep. */
#define S3_TOKEN_MAX 1024
/* The longest version id (struct fy_s3_head's buffer). */
#define S3_VERSION_MAX 256
/* The longest ETag of a part. */
#define S3_ETAG_MAX 128

/* ---- xml.c --------------------------------------------------------------- */

/* Where a ListObjectVersions page ends. */
struct s3_versions_page {
	char next_key[FY_S3_KEY_MAX + 1];
	char next_version[S3_VERSION_MAX];
	bool truncated;
};

/* One ListObjectVersions page: cb per <Version> and <DeleteMarker> in the
 * document's order. The page is checked whole before cb is called. */
int s3_parse_versions(const char *xml, size_t len,
		      int (*cb)(void *opaque, const char *key,
				const char *version_id, bool delete_marker,
				uint64_t size),
		      void *opaque, struct s3_versions_page *page);

struct s3_uploads_page {
	char next_key[FY_S3_KEY_MAX + 1];
	char next_upload[S3_TOKEN_MAX];
	bool truncated;
};

/* One ListMultipartUploads page, checked whole before cb is called. */
int s3_parse_uploads(const char *xml, size_t len,
		     int (*cb)(void *opaque, const char *key,
			       const char *upload_id, time_t initiated),
		     void *opaque, struct s3_uploads_page *page);

/* InitiateMultipartUploadResult's UploadId. */
int s3_parse_upload_id(const char *xml, size_t len, char *upload_id,
		       size_t upload_id_len);

/* ObjectLockConfiguration: whether ObjectLockEnabled is "Enabled". */
int s3_parse_lock_config(const char *xml, size_t len, bool *enabled);

/* The local name of the root element ("" for an empty body), -EBADMSG when
 * the body is not well-formed. CompleteMultipartUpload may answer 200 with
 * an <Error> document. */
int s3_parse_root(const char *xml, size_t len, char *name, size_t name_len);

/* "2024-05-01T10:00:00Z", with or without fractions of a second. */
int s3_parse_time(const char *s, time_t *out);
/* The same form with ".000Z", as the lock headers and Retention take. */
void s3_format_time(time_t t, char *out, size_t out_len);

/* ---- sigv4.c --------------------------------------------------------------- */

/* Hex SHA-256 of data (65 bytes with the NUL). */
int s3_sha256_hex(const void *data, size_t len, char out[65]);
/* Base64 of data's MD5 (25 bytes with the NUL), as Content-MD5 takes. */
int s3_md5_base64(const void *data, size_t len, char out[25]);
/* Incremental forms of both, for bodies read from files. */
struct s3_body_digest;
struct s3_body_digest *s3_body_digest_new(void);
int s3_body_digest_update(struct s3_body_digest *d, const void *data,
			  size_t len);
int s3_body_digest_final(struct s3_body_digest *d, char sha256_hex[65],
			 char md5_base64[25]);
void s3_body_digest_free(struct s3_body_digest *d);

/* ---- config.c ------------------------------------------------------------ */

/* An endpoint "scheme://host[:port]" taken apart; rest is what follows the
 * authority ("" or "/..."). */
struct s3_endpoint {
	bool https;
	bool loopback;
	bool ip_literal;
	char authority[FY_S3_URL_MAX]; /* host[:port] as given */
	char host[FY_S3_URL_MAX];      /* without brackets or port */
	const char *rest;
};
int s3_parse_endpoint(const char *url, struct s3_endpoint *ep);
/* S3's bucket naming rule: 3..63 of a-z 0-9 . -, starting and ending with
 * a letter or digit. */
bool s3_valid_bucket(const char *name);

/* ---- client.c ------------------------------------------------------------ */

/* libcurl handles kept for reuse (and their connections); more are made
 * when more threads call at once, and closed on return. */
#define S3_POOL_MAX 16
/* The most extra headers one request sends. */
#define S3_EXTRA_HEADERS_MAX 8
/* Bytes of an error answer kept (the <Error> document). */
#define S3_ERROR_BODY_MAX (64u << 10)

struct fy_s3 {
	struct fy_s3_config cfg; /* with defaults filled in */
	bool https;
	char authority[FY_S3_URL_MAX];
	char host_header[FY_S3_URL_MAX + FY_S3_BUCKET_MAX + 2];
	pthread_mutex_t lock;
	void *idle[S3_POOL_MAX]; /* CURL * */
	size_t n_idle;
};

/* Where a successful answer's body goes. */
enum s3_sink {
	S3_SINK_NONE, /* discarded */
	S3_SINK_XML,  /* a buffer of at most FY_S3_XML_MAX, freed by
			 s3_request_release */
	S3_SINK_BUF,  /* the caller's buffer: more than buf_max aborts */
	S3_SINK_FD,   /* written to fd from offset 0 */
};

struct s3_request {
	/* in */
	const char *method;
	const char *key;   /* NULL for the bucket itself */
	const char *query; /* encoded "a=b&c", or NULL */
	/* the body: body_len bytes of body, or of body_fd from body_off */
	const uint8_t *body;
	int body_fd;
	uint64_t body_off, body_len;
	const char *body_sha256; /* hex; NULL for an empty body */
	const char *body_md5;    /* base64 Content-MD5, or NULL */
	struct fy_sigv4_header extra[S3_EXTRA_HEADERS_MAX];
	size_t n_extra;
	enum s3_sink sink;
	uint8_t *buf;
	size_t buf_max;
	int fd;
	/* A 200 whose body is an <Error> is a failure
	 * (CompleteMultipartUpload). */
	bool error_in_ok;

	/* out: the last attempt's answer */
	long status;
	char code[64];
	char message[256];
	char *xml;
	size_t xml_len, xml_cap;
	uint64_t received;     /* body bytes of a successful answer */
	int64_t content_length; /* -1 when absent */
	bool have_range;
	uint64_t range_start, range_end, range_total; /* total 0: "*" */
	char etag[S3_ETAG_MAX];
	char version_id[S3_VERSION_MAX];
	char lock_mode[32];
	char retain_until[64];
	bool retried; /* some attempt failed transiently */

	/* per attempt, for the callbacks */
	uint64_t body_pos;
	int body_error, sink_error;
	bool overflow, bad_header;
	char *err_body;
	size_t err_len;
};

/* Sends req, retrying transient failures. 0 for a 2xx answer, else
 * -errno with the message set (req->status and req->code tell more). */
int s3_call(struct fy_s3 *s3, struct s3_request *req);
void s3_request_release(struct s3_request *req);
int s3_add_header(struct s3_request *req, const char *name,
		  const char *value);
/* "bucket/key" or "bucket", for messages. */
void s3_describe(const struct fy_s3 *s3, const char *key, char *out,
		 size_t out_len);

#endif
