/*
 * A backup session with a repository (agent/session.c): the one object
 * that owns every frame of a backup (BeginBackup, BeginDisk, QueryBlocks,
 * PutBlock, MapChunk, EndDisk, Commit). The block pipeline only asks it
 * "have?", "put" and "map"; which frames go out, how many queries are in
 * flight, how a reply is matched to its query, and how the map is cut into
 * chunks stay here.
 *
 * The session speaks to a repository through an operations table: over
 * the wire (fy_session_wire, mutual TLS frames on a fy_conn) or, in the
 * unit tests, to a repository in the same process (tests/unit/
 * test_pipeline.c). Whatever is below, the contract is the wire's: a
 * query's reply says what the repository held when the query reached it,
 * replies come in the order of their queries, and a put counts as held
 * from the moment it is made.
 */
#ifndef FERRY_AGENT_SESSION_H
#define FERRY_AGENT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct fy_conn;

/* Queries carry up to this many digests; up to FY_SESSION_DEPTH of them
 * are in flight before the oldest reply is read. */
#define FY_SESSION_BATCH 64
#define FY_SESSION_DEPTH 4

struct fy_backup_begin {
	const char *source;    /* the VM's or the file's name */
	const char *kind;      /* "vm" or "file" */
	const char *parent_id; /* an incremental's parent, or NULL */
	uint32_t block_size;
	uint32_t disks;
};

struct fy_disk_begin {
	uint32_t index;
	const char *label;
	uint64_t size;
	const char *change_id; /* CBT change ID, or NULL */
	const char *transport;
	const char *disk_id;   /* a VM disk's UUID, or NULL */
};

/* What a repository is to the session. Each returns 0 or -errno with
 * fy_err set. */
struct fy_session_ops {
	int (*begin)(void *impl, const struct fy_backup_begin *b, char *id,
		     size_t idlen);
	int (*begin_disk)(void *impl, const struct fy_disk_begin *d);
	/* Asks which of n digests (n <= FY_SESSION_BATCH) the repository
	 * lacks; the reply is read by reply(), oldest query first. */
	int (*query)(void *impl, uint64_t seq,
		     const uint8_t (*digests)[FY_DIGEST_LEN], unsigned n);
	/* The reply to the oldest unanswered query (seq, n digests): bit i
	 * of missing (n bits, LSB first) set when digest i is lacking. */
	int (*reply)(void *impl, uint64_t seq, unsigned n, uint8_t *missing);
	/* A block: len plain bytes, stored as clen bytes of codec. */
	int (*put)(void *impl, const uint8_t *digest, uint32_t len,
		   uint32_t codec, const uint8_t *data, size_t clen);
	/* n map entries of disk from block first on: a digest, or a hole. */
	int (*map)(void *impl, uint32_t disk, uint64_t first,
		   const uint8_t (*digests)[FY_DIGEST_LEN], const bool *hole,
		   size_t n);
	int (*end_disk)(void *impl, uint32_t disk);
	/* Lets the repository see what was sent (queued frames go out). */
	int (*flush)(void *impl);
	/* Keeps an idle session alive (no query may be outstanding). */
	int (*keepalive)(void *impl);
	int (*commit)(void *impl, const uint8_t *vm_config, size_t len,
		      char *id, size_t idlen);
	/* The backup failed: tell the repository why (best effort). */
	void (*fail)(void *impl, int rc, const char *msg);
	/* Map entries per map() call at most. */
	size_t (*map_max)(void *impl);
	/* Frees impl with the session (NULL: the caller owns it). */
	void (*free)(void *impl);
};

struct fy_session;

/* Called for every digest asked with fy_session_have, in order of the
 * replies: missing means the caller must put it (no put of that digest
 * has been made since the query went out). It may put and map, never
 * ask (have, have_flush): a put may read further replies and so call it
 * again, at most FY_SESSION_DEPTH deep, and the query being answered
 * must stay where it is meanwhile. */
typedef int (*fy_session_answer_cb)(void *opaque, void *tag, bool missing);

/* A session over ops. impl is freed with the session by ops->free (if
 * set); when this fails, impl stays the caller's. */
int fy_session_new(const struct fy_session_ops *ops, void *impl,
		   struct fy_session **out);
/* A session over a connection to ferry-repo (the connection is not
 * closed with it). */
int fy_session_wire(struct fy_conn *conn, struct fy_session **out);
void fy_session_free(struct fy_session *s);

/*
 * Every call below returns 0 or -errno with fy_err set. The first failure
 * is sticky: the session is then good only for fy_session_fail and
 * fy_session_free, and every other call returns that failure again
 * (queries may be left unanswered, their tags no longer valid).
 */

/* BeginBackup: id gets the backup's id. */
int fy_session_begin(struct fy_session *s, const struct fy_backup_begin *b,
		     char *id, size_t idlen);
/* A disk begins; answers go to cb. */
int fy_session_begin_disk(struct fy_session *s, const struct fy_disk_begin *d,
			  fy_session_answer_cb cb, void *opaque);
/* Asks whether the repository has digest; the answer comes through the
 * callback, with tag, once the reply is read (by fy_session_answer, or
 * inside have/put when the session must make room). digest is copied. */
int fy_session_have(struct fy_session *s, const uint8_t *digest, void *tag);
/* Sends the digests batched so far as a query, even if fewer than a
 * batch. */
int fy_session_have_flush(struct fy_session *s);
/* Digests batched but not yet sent. */
unsigned fy_session_batched(const struct fy_session *s);
/* Queries sent whose reply is not read yet. */
unsigned fy_session_outstanding(const struct fy_session *s);
/* Reads the oldest query's reply and calls the callback for each digest
 * of it. */
int fy_session_answer(struct fy_session *s);
/* Stores a block the repository said it lacks. data: clen bytes of
 * codec; len: its plain length. */
int fy_session_put(struct fy_session *s, const uint8_t *digest,
		   uint32_t len, uint32_t codec, const uint8_t *data,
		   size_t clen);
/* The next map entry of the disk, in block order: a digest, or a hole
 * (digest NULL). */
int fy_session_map(struct fy_session *s, const uint8_t *digest);
/* The disk is done: the rest of its map, EndDisk, flush. Every query
 * must have been answered. */
int fy_session_end_disk(struct fy_session *s);
int fy_session_flush(struct fy_session *s);
int fy_session_keepalive(struct fy_session *s);
int fy_session_commit(struct fy_session *s, const uint8_t *vm_config,
		      size_t len, char *id, size_t idlen);
void fy_session_fail(struct fy_session *s, int rc, const char *msg);

/* What the session did, for tests and logs. */
struct fy_session_counters {
	uint64_t queries;        /* QueryBlocks sent */
	uint64_t puts;
	uint64_t forced_answers; /* replies read by a put to make room */
	uint64_t forgotten;      /* puts forgotten when no room was left */
	uint64_t not_resent;     /* "missing" answers turned into "present" */
	uint64_t map_chunks;
};
void fy_session_counters(const struct fy_session *s,
			 struct fy_session_counters *out);

#endif
