/*
 * common: what every other folder of Ferry may use. It depends on nothing of
 * ours, only on libc, OpenSSL, libaio and pthreads.
 *
 *  - errors: functions return 0 or -errno and record one readable sentence
 *    in a thread-local buffer (fy_err_set, fy_err_msg);
 *  - logging with VDDK's levels (0 quiet .. 6 most verbose), thread-safe;
 *  - the VDDK-style configuration file (name=value, # comments);
 *  - the source interface every way of reading a disk fills, and the first
 *    source: a local file or block device read with O_DIRECT and libaio;
 *  - durable file writes (temp name, fsync, rename, fsync the directory);
 *  - a certificate authority for mutual TLS (ferry ca init / issue).
 */
#ifndef FERRY_COMMON_H
#define FERRY_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>

/* ---- errors ------------------------------------------------------------ */

#define FY_ERR_MAX 1024

/* Records a message for the calling thread and returns code (a -errno). */
int fy_err_set(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with context ("restore of disk 1: ...").
 * Returns code, so callers can write: return fy_err_wrap(rc, "..."). */
int fy_err_wrap(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The calling thread's last message, never NULL. */
const char *fy_err_msg(void);
void fy_err_clear(void);

/* ---- logging ----------------------------------------------------------- */

/* VDDK's vixDiskLib.transport.LogLevel scale. */
enum fy_log_level {
	FY_LOG_QUIET = 0,
	FY_LOG_PANIC = 1,
	FY_LOG_ERROR = 2,
	FY_LOG_WARN = 3,
	FY_LOG_INFO = 4,
	FY_LOG_VERBOSE = 5,
	FY_LOG_TRIVIA = 6,
};

void fy_log_set_level(int level);
int fy_log_get_level(void);
/* Also append to this file (NULL: stderr only). Returns 0 or -errno. */
int fy_log_set_file(const char *path);
/* VDDK's tmpDirectory: also write to DIR/PROGRAM-PID.log, created 0600
 * (DIR 0700 when created here), besides stderr and fy_log_set_file's
 * file. The path opened goes to path (may be NULL). A second call for the
 * same directory in the same process keeps the file; NULL dir closes it.
 * Returns 0 or -errno. */
int fy_log_set_dir(const char *dir, const char *program, char *path,
		   size_t pathlen);
void fy_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define fy_error(...) fy_log(FY_LOG_ERROR, __VA_ARGS__)
#define fy_warn(...) fy_log(FY_LOG_WARN, __VA_ARGS__)
#define fy_info(...) fy_log(FY_LOG_INFO, __VA_ARGS__)
#define fy_debug(...) fy_log(FY_LOG_VERBOSE, __VA_ARGS__)

/* ---- configuration ----------------------------------------------------- */

/* Bounds on what a configuration file may hold. */
#define FY_CONFIG_MAX_FILE (1u << 20)
#define FY_CONFIG_MAX_LINE 4096
#define FY_CONFIG_MAX_ENTRIES 1024

struct fy_config;

struct fy_config *fy_config_new(void);
void fy_config_free(struct fy_config *cfg);
/* Parses a file into cfg (later keys override earlier ones). A malformed
 * line is an error naming the file and line. Returns 0 or -errno. */
int fy_config_load(struct fy_config *cfg, const char *path);
/* The same for text already in memory; name is used in messages. */
int fy_config_parse(struct fy_config *cfg, const char *name, const char *text,
		    size_t len);
/* Sets one key, as a command-line flag does. "key=value" form for --set. */
int fy_config_set(struct fy_config *cfg, const char *key, const char *value);
int fy_config_set_pair(struct fy_config *cfg, const char *key_eq_value);
/* NULL when absent. */
const char *fy_config_get(const struct fy_config *cfg, const char *key);
/* Integer value in [min, max]; def when absent. An unparsable or
 * out-of-range value is an error that names the key and the range. */
int fy_config_get_int(const struct fy_config *cfg, const char *key,
		      int64_t def, int64_t min, int64_t max, int64_t *out);
/* 0/1, true/false, yes/no, on/off. */
int fy_config_get_bool(const struct fy_config *cfg, const char *key, bool def,
		       bool *out);
/* Warns by name about every key not in known (a NULL-terminated list; an
 * entry ending in '*' matches a prefix). Returns how many were unknown. */
int fy_config_warn_unknown(const struct fy_config *cfg,
			   const char *const *known);
/* Like fy_config_warn_unknown, but an unknown key that starts with
 * strict_prefix ("ferry.": our own namespace) is an error naming the
 * closest known key; others (VDDK's) keep a warning. 0 or -EINVAL. */
int fy_config_check_unknown(const struct fy_config *cfg,
			    const char *const *known,
			    const char *strict_prefix);
/* The known key nearest to key by edit distance (case ignored); NULL when
 * known has none. */
const char *fy_config_closest(const char *key, const char *const *known);
/* Where a key was set, for messages: "file:line" or "command line". */
const char *fy_config_origin(const struct fy_config *cfg, const char *key);

/* ---- command lines (common/cli.c) --------------------------------------- */

/* The most --set KEY=VALUE (and flags that set a key) one command takes. */
#define FY_CLI_SETS_MAX 64
/* Whether a subcommand's arguments (argv[0] its name) ask for its usage:
 * --help or -h anywhere before "--". Usage then goes to stdout, exit 0. */
bool fy_cli_wants_help(int argc, char *const argv[]);
/* --log-level: a decimal level in 0..6 and nothing else (no atoi).
 * 0 or -EINVAL with a message. */
int fy_cli_log_level(const char *arg, int *out);

/* ---- sources ----------------------------------------------------------- */

/* A run of a source reported by extents(): data, or a hole that reads as
 * zeros and need not be read at all. */
enum fy_extent_kind { FY_EXTENT_DATA = 0, FY_EXTENT_ZERO = 1 };

typedef int (*fy_extent_cb)(void *opaque, uint64_t offset, uint64_t length,
			    enum fy_extent_kind kind);

/* One read of a batch: the source may run the batch's reads concurrently. */
struct fy_io {
	void *buf;
	size_t len;
	uint64_t offset;
	int result; /* set by read_batch: 0 or -errno */
};

struct fy_source;

struct fy_source_ops {
	const char *name; /* transport name reported to the user: "file" */
	/* Reads exactly len bytes at offset; short only past the end, where
	 * the rest of buf is zero-filled. 0 or -errno. */
	int (*read)(struct fy_source *src, void *buf, size_t len,
		    uint64_t offset);
	/* Optional: many reads at once (libaio, NBD cookies). Returns 0 when
	 * every io succeeded, else the first failure; each io has result. */
	int (*read_batch)(struct fy_source *src, struct fy_io *ios, size_t n);
	/* Optional, both or neither: start begins a batch's reads and
	 * returns without waiting for them; wait finishes the oldest batch
	 * started, which must be ios, and returns as read_batch does. With
	 * the next batch started before the previous one is waited for, the
	 * device's queue does not run dry between batches. */
	int (*start)(struct fy_source *src, struct fy_io *ios, size_t n);
	int (*wait)(struct fy_source *src, struct fy_io *ios, size_t n);
	/* Optional: reports extents covering [offset, offset+length) in order
	 * through cb. A source that does not know reports nothing. */
	int (*extents)(struct fy_source *src, uint64_t offset, uint64_t length,
		       fy_extent_cb cb, void *opaque);
	void (*close)(struct fy_source *src);
};

/* Every source embeds this first. */
struct fy_source {
	const struct fy_source_ops *ops;
	uint64_t size;
	size_t align; /* buffers, offsets and lengths must be multiples */
	char name[256]; /* what is read, for messages */
};

struct fy_file_source_opts {
	unsigned queue_depth; /* libaio requests in flight (default 16) */
	size_t io_size;       /* largest single request (default 1 MiB) */
	bool no_direct;       /* force buffered reads */
	/* vixDiskLib.disklib.EnableCache=1: read through the page cache,
	 * with the kernel told the reads are sequential and each batch
	 * followed by a readahead of the next, instead of O_DIRECT. For
	 * sources read more than once; a full backup reads each block once
	 * and is better off without (the default). */
	bool cached;
};

/* Opens a regular file or block device read-only, with O_DIRECT unless it
 * is refused (tmpfs, in which case one log line says so) or opts->cached
 * or opts->no_direct asks for buffered reads. */
int fy_file_source_open(const char *path,
			const struct fy_file_source_opts *opts,
			struct fy_source **out);

/* Convenience wrappers through the table; close(NULL) does nothing. */
int fy_source_read(struct fy_source *src, void *buf, size_t len,
		   uint64_t offset);
int fy_source_read_batch(struct fy_source *src, struct fy_io *ios, size_t n);
/*
 * read_batch in two halves, so a reader can keep two batches in flight:
 * start(A), start(B), wait(A), start(C), wait(B), ... At most
 * FY_SOURCE_MAX_STARTED batches are started and not waited for; their ios
 * and buffers belong to the source until waited for, and no read or
 * read_batch may come between. A batch whose start fails (every result
 * set) is not started and is not waited for. A source without start and
 * wait reads the batch synchronously in fy_source_wait.
 */
#define FY_SOURCE_MAX_STARTED 2
int fy_source_start(struct fy_source *src, struct fy_io *ios, size_t n);
int fy_source_wait(struct fy_source *src, struct fy_io *ios, size_t n);
int fy_source_extents(struct fy_source *src, uint64_t offset, uint64_t length,
		      fy_extent_cb cb, void *opaque);
void fy_source_close(struct fy_source *src);
/*
 * A source in front of another (the CBT areas of a disk, a hot-added
 * disk): it starts with struct fy_source_wrap, and its table takes these
 * for the reads, which go to inner as they are; it supplies its own
 * extents and close.
 */
struct fy_source_wrap {
	struct fy_source base; /* first: the table's functions cast back */
	struct fy_source *inner;
};
int fy_source_wrap_read(struct fy_source *src, void *buf, size_t len,
			uint64_t offset);
int fy_source_wrap_read_batch(struct fy_source *src, struct fy_io *ios,
			      size_t n);
int fy_source_wrap_start(struct fy_source *src, struct fy_io *ios, size_t n);
int fy_source_wrap_wait(struct fy_source *src, struct fy_io *ios, size_t n);
/* Allocates a buffer aligned for O_DIRECT (4096). */
void *fy_aligned_alloc(size_t len);

/* ---- durable files ----------------------------------------------------- */

/* Writes len bytes to dir/name through a temporary name in tmpdir (same
 * filesystem): write, fsync, rename, fsync dir. On failure the temporary
 * is unlinked and dir/name is untouched. sync_dir=false skips the final
 * directory fsync for callers that batch it (they must syncfs later). */
int fy_write_durable(const char *tmpdir, const char *dir, const char *name,
		     const void *data, size_t len, bool sync_dir);
int fy_fsync_dir(const char *dir);
/* Reads a whole file of at most max bytes. */
int fy_read_file(const char *path, size_t max, void **data, size_t *len);
/* mkdir -p with mode. */
int fy_mkdirs(const char *path, unsigned mode);
/* write()/pwrite() that retry on EINTR and short writes. */
int fy_write_all(int fd, const void *buf, size_t len);
int fy_pwrite_all(int fd, const void *buf, size_t len, uint64_t offset);
/* The same for several buffers in one call (writev()/pwritev(); iovcnt at
 * most IOV_MAX). iov is used up as the writes go: its entries change. */
int fy_writev_all(int fd, struct iovec *iov, int iovcnt);
int fy_pwritev_all(int fd, struct iovec *iov, int iovcnt, uint64_t offset);

/* ---- small helpers ----------------------------------------------------- */

#define FY_DIGEST_LEN 32 /* SHA-256 */
#define FY_DIGEST_HEX (2 * FY_DIGEST_LEN + 1)

void fy_hex(const uint8_t *in, size_t len, char *out /* 2*len+1 */);
/* The value of one hex digit (either case), or -1. */
int fy_hex_digit(char c);
int fy_unhex(const char *in, uint8_t *out, size_t len);
/* 0, or -ENOMEM when OpenSSL could not allocate (out is then garbage). */
int fy_sha256(const void *data, size_t len, uint8_t out[FY_DIGEST_LEN]);
/* Once a TLS handshake is done: a buffer of size bytes between the record
 * layer and the socket, so that records (16 KiB at most, each a write(2)
 * of its own otherwise) go out in writes of up to size. The caller empties
 * it with BIO_flush(SSL_get_wbio(ssl)) whenever it has sent what the peer
 * waits for. The socket BIO stays SSL's rbio. 0 or -ENOMEM. */
struct ssl_st;
int fy_ssl_buffer_writes(struct ssl_st *ssl, size_t size);
/* True when all len bytes are zero (fast path for aligned buffers). */
bool fy_is_zero(const void *buf, size_t len);
/* Parses "123", "64K", "1M", "8MiB" into bytes. */
int fy_parse_size(const char *s, uint64_t *out);
/* Writes s as a JSON string, quoted and escaped (NULL as ""). */
void fy_json_string(FILE *f, const char *s);
/* "1.5 GiB", for humans. */
void fy_format_bytes(uint64_t n, char *out, size_t outlen);
double fy_now(void); /* monotonic seconds */
/* Called first by each program: memory glibc got for a frame or a block
 * (up to FY_MALLOC_KEEP above what is in use, per malloc arena: threads
 * may have arenas of their own) stays with the process for the next one
 * instead of going back to the kernel, which costs a page fault per page
 * on every reuse (docs/ARCHITECTURE.md, "Memory bounds"). */
#define FY_MALLOC_KEEP (64u << 20)
void fy_memory_tune(void);
/* Splits "host:port" or "[v6]:port". */
int fy_split_hostport(const char *s, char *host, size_t hostlen,
		      char *port, size_t portlen);

/* ---- certificate authority (ferry ca) ---------------------------------- */

/* What a certificate may do (docs/SECURITY.md). Written into the subject
 * as organizationalUnitName "ferry:ROLE"; a certificate without one (made
 * before roles existed) is FY_ROLE_NONE and treated as an agent. */
enum fy_role {
	FY_ROLE_NONE = 0,
	FY_ROLE_AGENT,
	FY_ROLE_CONTROLLER,
	FY_ROLE_ADMIN,
	FY_ROLE_REPOSITORY,
};
#define FY_ROLE_PREFIX "ferry:"
/* "agent", "controller", "admin", "repository"; "" for FY_ROLE_NONE. */
const char *fy_role_name(enum fy_role role);
/* Parses a role name; -EINVAL with the list of roles otherwise. */
int fy_role_parse(const char *s, enum fy_role *out);

/* Writes dir/ca.crt, dir/ca.key (0600) and an empty dir/ca.crl. Refuses
 * to overwrite. */
int fy_ca_init(const char *dir);
/* Writes dir/NAME.crt and dir/NAME.key (0600) signed by dir/ca.*; the
 * subject names NAME as a DNS name, or as an IP address when it is one;
 * sans is a comma-separated list of extra names or IPs (may be NULL).
 * role goes into the subject; a repository's certificate is for servers
 * only, a controller's or admin's for clients only, an agent's for both. */
int fy_ca_issue(const char *dir, const char *name, const char *sans,
		enum fy_role role);
/* Adds dir/NAME.crt's serial number to dir/ca.crl (created when missing),
 * re-signs it and replaces it durably. Servers given the CRL
 * (ferry.tls.crl, ferry-repo serve --crl) refuse the certificate. */
int fy_ca_revoke(const char *dir, const char *name);

#endif
