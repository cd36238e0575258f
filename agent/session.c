/*
 * A backup session with a repository: see session.h. The first half is
 * what any repository needs (batched, pipelined queries and their replies,
 * the map in chunks); the second half is the wire, frames over a
 * fy_conn to ferry-repo.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/session.h"

/*
 * Queries are pipelined: up to FY_SESSION_DEPTH are sent before the
 * oldest reply is read, and puts go on meanwhile. A reply says what the
 * repository held when its query arrived, so it can say "missing" of a
 * digest put after that query went out, or put while that very reply is
 * being handled (two blocks of one batch). Every put is remembered with
 * the newest query sent before it; a reply to query s treats a digest put
 * after s was sent as present, instead of asking for it twice. Entries go
 * once no reply that could need them is left.
 */
#define RECENT_MAX (FY_SESSION_DEPTH * FY_SESSION_BATCH)

struct query {
	uint8_t d[FY_SESSION_BATCH][FY_DIGEST_LEN];
	void *tag[FY_SESSION_BATCH];
	unsigned n;
	uint64_t seq;
};

struct fy_session {
	const struct fy_session_ops *ops;
	void *impl;

	fy_session_answer_cb cb;
	void *opaque;
	bool in_disk;
	uint32_t disk;

	struct query batch;                /* being filled */
	struct query q[FY_SESSION_DEPTH];  /* sent, oldest at head */
	unsigned head, count;
	uint64_t next_seq;
	uint64_t handling; /* seq of the reply being handled, or UINT64_MAX */
	uint8_t recent[RECENT_MAX][FY_DIGEST_LEN];
	uint64_t recent_after[RECENT_MAX];
	unsigned nrecent;

	int broken; /* the first failure, sticky */
	char broken_msg[FY_ERR_MAX];
	struct fy_session_counters n;

	/* The map: entries wait here until a chunk is full. */
	uint8_t (*chunk)[FY_DIGEST_LEN];
	bool *hole;
	size_t chunk_n, chunk_max;
	uint64_t chunk_first;
};

int fy_session_new(const struct fy_session_ops *ops, void *impl,
		   struct fy_session **out)
{
	struct fy_session *s = calloc(1, sizeof(*s));

	if (!s)
		return fy_err_set(-ENOMEM, "out of memory for a session");
	s->ops = ops;
	s->impl = impl;
	s->handling = UINT64_MAX;
	s->chunk_max = ops->map_max(impl);
	if (s->chunk_max > FY_MAP_CHUNK_MAX)
		s->chunk_max = FY_MAP_CHUNK_MAX;
	if (s->chunk_max < 1)
		s->chunk_max = 1;
	s->chunk = malloc(s->chunk_max * FY_DIGEST_LEN);
	s->hole = calloc(s->chunk_max, sizeof(*s->hole));
	if (!s->chunk || !s->hole) {
		/* impl stays the caller's */
		free(s->chunk);
		free(s->hole);
		free(s);
		return fy_err_set(-ENOMEM, "out of memory for a session");
	}
	*out = s;
	return 0;
}

/* Records the first failure; returns rc. */
static int broke(struct fy_session *s, int rc)
{
	if (rc < 0 && !s->broken) {
		s->broken = rc;
		snprintf(s->broken_msg, sizeof(s->broken_msg), "%s",
			 fy_err_msg());
	}
	return rc;
}

/* 0, or the failure that broke the session (again). */
static int usable(const struct fy_session *s, bool in_disk)
{
	if (s->broken)
		return fy_err_set(s->broken, "%s", s->broken_msg);
	if (in_disk && !s->in_disk)
		return fy_err_set(-EINVAL, "internal: no disk begun");
	return 0;
}

int fy_session_begin(struct fy_session *s, const struct fy_backup_begin *b,
		     char *id, size_t idlen)
{
	int rc = usable(s, false);

	if (rc == 0)
		rc = s->ops->begin(s->impl, b, id, idlen);
	return broke(s, rc);
}

int fy_session_begin_disk(struct fy_session *s, const struct fy_disk_begin *d,
			  fy_session_answer_cb cb, void *opaque)
{
	int rc = usable(s, false);

	if (rc < 0)
		return rc;
	if (s->in_disk)
		return broke(s, fy_err_set(-EINVAL, "internal: disk %u begun "
					   "while disk %u is not ended",
					   d->index, s->disk));
	s->cb = cb;
	s->opaque = opaque;
	s->disk = d->index;
	s->chunk_n = 0;
	s->chunk_first = 0;
	s->in_disk = true;
	return broke(s, s->ops->begin_disk(s->impl, d));
}

/* Forgets puts that every reply still to be handled was sent after. */
static void recent_prune(struct fy_session *s)
{
	uint64_t oldest = s->count ? s->q[s->head].seq : s->next_seq;
	unsigned i = 0;

	if (s->handling < oldest)
		oldest = s->handling;
	while (i < s->nrecent) {
		if (s->recent_after[i] < oldest) {
			s->nrecent--;
			memcpy(s->recent[i], s->recent[s->nrecent],
			       FY_DIGEST_LEN);
			s->recent_after[i] = s->recent_after[s->nrecent];
		} else {
			i++;
		}
	}
}

/* Was d put after query seq went out (so its reply could not know)? */
static bool recent_put_after(const struct fy_session *s, const uint8_t *d,
			     uint64_t seq)
{
	unsigned i;

	for (i = 0; i < s->nrecent; i++)
		if (s->recent_after[i] >= seq &&
		    !memcmp(s->recent[i], d, FY_DIGEST_LEN))
			return true;
	return false;
}

int fy_session_answer(struct fy_session *s)
{
	struct query *qr;
	uint8_t missing[(FY_SESSION_BATCH + 7) / 8];
	uint64_t saved = s->handling;
	unsigned i;
	int rc = usable(s, true);

	if (rc < 0)
		return rc;
	if (!s->count)
		return broke(s, fy_err_set(-EINVAL, "internal: no query to "
					   "answer"));
	qr = &s->q[s->head];
	memset(missing, 0, sizeof(missing));
	rc = s->ops->reply(s->impl, qr->seq, qr->n, missing);
	if (rc < 0)
		return broke(s, rc);
	/* The slot is ours to walk; it is free for the next query once
	 * popped, and the callback's puts may read later replies. */
	s->head = (s->head + 1) % FY_SESSION_DEPTH;
	s->count--;
	if (qr->seq < s->handling)
		s->handling = qr->seq;
	for (i = 0; i < qr->n && rc == 0; i++) {
		bool m = missing[i / 8] & (1u << (i % 8));

		if (m && recent_put_after(s, qr->d[i], qr->seq)) {
			m = false;
			s->n.not_resent++;
		}
		rc = s->cb(s->opaque, qr->tag[i], m);
	}
	s->handling = saved;
	return broke(s, rc);
}

int fy_session_have_flush(struct fy_session *s)
{
	struct query *slot;
	int rc = usable(s, true);

	if (rc < 0 || !s->batch.n)
		return rc;
	while (s->count == FY_SESSION_DEPTH) {
		rc = fy_session_answer(s);
		if (rc < 0)
			return rc;
	}
	slot = &s->q[(s->head + s->count) % FY_SESSION_DEPTH];
	memcpy(slot->d, s->batch.d, (size_t)s->batch.n * FY_DIGEST_LEN);
	memcpy(slot->tag, s->batch.tag, s->batch.n * sizeof(void *));
	slot->n = s->batch.n;
	slot->seq = s->next_seq++;
	s->batch.n = 0;
	s->count++;
	s->n.queries++;
	rc = s->ops->query(s->impl, slot->seq,
			   (const uint8_t(*)[FY_DIGEST_LEN])slot->d, slot->n);
	/* Out now, so that the answer is on its way while we go on. */
	if (rc == 0)
		rc = s->ops->flush(s->impl);
	return broke(s, rc);
}

int fy_session_have(struct fy_session *s, const uint8_t *digest, void *tag)
{
	int rc = usable(s, true);

	if (rc < 0)
		return rc;
	if (s->batch.n == FY_SESSION_BATCH)
		return broke(s, fy_err_set(-EINVAL, "internal: a full batch "
					   "not sent"));
	memcpy(s->batch.d[s->batch.n], digest, FY_DIGEST_LEN);
	s->batch.tag[s->batch.n++] = tag;
	if (s->batch.n == FY_SESSION_BATCH)
		return fy_session_have_flush(s);
	return 0;
}

unsigned fy_session_batched(const struct fy_session *s)
{
	return s->batch.n;
}

unsigned fy_session_outstanding(const struct fy_session *s)
{
	return s->count;
}

int fy_session_put(struct fy_session *s, const uint8_t *digest,
		   uint32_t len, uint32_t codec, const uint8_t *data,
		   size_t clen)
{
	int rc = usable(s, true);

	if (rc < 0)
		return rc;
	if (!s->count && s->handling == UINT64_MAX)
		goto put; /* no reply to come could be misled */
	recent_prune(s);
	/* Full: read replies until entries can go. */
	while (s->nrecent == RECENT_MAX && s->count) {
		s->n.forced_answers++;
		rc = fy_session_answer(s);
		if (rc < 0)
			return rc;
		recent_prune(s);
	}
	if (s->nrecent == RECENT_MAX) {
		s->n.forgotten++;
		/* Only the reply being handled needs them (many blocks went
		 * out while it was on its way): forget one. At worst a block
		 * goes twice, which costs space, never correctness. */
		s->nrecent--;
		memcpy(s->recent[0], s->recent[s->nrecent], FY_DIGEST_LEN);
		s->recent_after[0] = s->recent_after[s->nrecent];
	}
	memcpy(s->recent[s->nrecent], digest, FY_DIGEST_LEN);
	/* next_seq - 1: the newest query sent (a reply being handled with
	 * no query after it has seq next_seq - 1 too). */
	s->recent_after[s->nrecent++] = s->next_seq - 1;
put:
	s->n.puts++;
	return broke(s, s->ops->put(s->impl, digest, len, codec, data, clen));
}

static int flush_map(struct fy_session *s)
{
	int rc;

	if (!s->chunk_n)
		return 0;
	rc = s->ops->map(s->impl, s->disk, s->chunk_first,
			 (const uint8_t(*)[FY_DIGEST_LEN])s->chunk, s->hole,
			 s->chunk_n);
	s->n.map_chunks++;
	s->chunk_first += s->chunk_n;
	s->chunk_n = 0;
	return broke(s, rc);
}

int fy_session_map(struct fy_session *s, const uint8_t *digest)
{
	int rc = usable(s, true);
	size_t k;

	if (rc < 0)
		return rc;
	k = s->chunk_n++;

	s->hole[k] = !digest;
	if (digest)
		memcpy(s->chunk[k], digest, FY_DIGEST_LEN);
	if (s->chunk_n == s->chunk_max)
		return flush_map(s);
	return 0;
}

int fy_session_end_disk(struct fy_session *s)
{
	int rc = usable(s, true);

	if (rc < 0)
		return rc;
	if (s->batch.n)
		return broke(s, fy_err_set(-EINVAL, "internal: %u digests "
					   "never asked", s->batch.n));
	if (s->count)
		return broke(s, fy_err_set(-EINVAL, "internal: %u queries "
					   "never answered", s->count));
	rc = flush_map(s);
	s->in_disk = false;
	if (rc == 0)
		rc = s->ops->end_disk(s->impl, s->disk);
	if (rc == 0)
		rc = s->ops->flush(s->impl);
	return broke(s, rc);
}

int fy_session_flush(struct fy_session *s)
{
	int rc = usable(s, false);

	return rc < 0 ? rc : broke(s, s->ops->flush(s->impl));
}

int fy_session_keepalive(struct fy_session *s)
{
	int rc = usable(s, false);

	if (rc < 0)
		return rc;
	if (s->count)
		return broke(s, fy_err_set(-EINVAL, "internal: keepalive with "
					   "%u queries outstanding",
					   s->count));
	return broke(s, s->ops->keepalive(s->impl));
}

int fy_session_commit(struct fy_session *s, const uint8_t *vm_config,
		      size_t len, char *id, size_t idlen)
{
	int rc = usable(s, false);

	if (rc < 0)
		return rc;
	if (s->in_disk)
		return broke(s, fy_err_set(-EINVAL, "internal: commit while "
					   "disk %u is not ended", s->disk));
	return broke(s, s->ops->commit(s->impl, vm_config, len, id, idlen));
}

void fy_session_counters(const struct fy_session *s,
			 struct fy_session_counters *out)
{
	*out = s->n;
}

void fy_session_fail(struct fy_session *s, int rc, const char *msg)
{
	if (s)
		s->ops->fail(s->impl, rc, msg);
}

void fy_session_free(struct fy_session *s)
{
	if (!s)
		return;
	if (s->ops->free)
		s->ops->free(s->impl);
	free(s->chunk);
	free(s->hole);
	free(s);
}

/* ---- the wire: frames to ferry-repo ----------------------------------- */

struct wire {
	struct fy_conn *conn;
	ProtobufCBinaryData *bins; /* one MapChunk's entries */
	size_t nbins;
};

static int wire_begin(void *impl, const struct fy_backup_begin *b, char *id,
		      size_t idlen)
{
	struct wire *w = impl;
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__BeginBackup bb = FERRY__BEGIN_BACKUP__INIT;
	fy_frame *r = NULL;
	int rc;

	bb.source = (char *)b->source;
	bb.source_kind = (char *)b->kind;
	bb.parent_id = (char *)(b->parent_id ? b->parent_id : "");
	bb.created_unix = time(NULL);
	bb.block_size = b->block_size;
	bb.disk_count = b->disks;
	f.body_case = FERRY__FRAME__BODY_BEGIN_BACKUP;
	f.begin_backup = &bb;
	rc = fy_conn_send(w->conn, &f);
	if (rc == 0)
		rc = fy_client_recv_expect(w->conn,
					   FERRY__FRAME__BODY_BACKUP_STARTED,
					   "BackupStarted", &r);
	if (rc < 0)
		return rc;
	snprintf(id, idlen, "%s", r->backup_started->backup_id);
	fy_frame_free(r);
	return 0;
}

static int wire_begin_disk(void *impl, const struct fy_disk_begin *d)
{
	struct wire *w = impl;
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__BeginDisk bd = FERRY__BEGIN_DISK__INIT;

	bd.index = d->index;
	bd.label = (char *)d->label;
	bd.size = d->size;
	bd.change_id = (char *)(d->change_id ? d->change_id : "");
	bd.transport = (char *)d->transport;
	bd.disk_id = (char *)(d->disk_id ? d->disk_id : "");
	f.body_case = FERRY__FRAME__BODY_BEGIN_DISK;
	f.begin_disk = &bd;
	return fy_conn_send(w->conn, &f);
}

static int wire_query(void *impl, uint64_t seq,
		      const uint8_t (*digests)[FY_DIGEST_LEN], unsigned n)
{
	struct wire *w = impl;
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__QueryBlocks q = FERRY__QUERY_BLOCKS__INIT;
	ProtobufCBinaryData bins[FY_SESSION_BATCH];
	unsigned i;

	for (i = 0; i < n; i++) {
		bins[i].data = (uint8_t *)digests[i];
		bins[i].len = FY_DIGEST_LEN;
	}
	q.seq = seq;
	q.digests = bins;
	q.n_digests = n;
	f.body_case = FERRY__FRAME__BODY_QUERY_BLOCKS;
	f.query_blocks = &q;
	return fy_conn_send(w->conn, &f);
}

static int wire_reply(void *impl, uint64_t seq, unsigned n, uint8_t *missing)
{
	struct wire *w = impl;
	fy_frame *r = NULL;
	int rc;

	rc = fy_conn_recv(w->conn, &r);
	if (rc < 0)
		return rc;
	if (r->body_case == FERRY__FRAME__BODY_ERROR) {
		rc = fy_err_set(-EPROTO, "repository: %s", r->error->message);
	} else if (r->body_case != FERRY__FRAME__BODY_QUERY_REPLY ||
		   r->query_reply->seq != seq ||
		   r->query_reply->missing.len != (n + 7) / 8) {
		rc = fy_err_set(-EPROTO, "repository answered query %" PRIu64
				" with %s", seq, fy_frame_name(r));
	} else {
		memcpy(missing, r->query_reply->missing.data, (n + 7) / 8);
	}
	fy_frame_free(r);
	return rc;
}

/* The PutBlock frame goes out from the caller's buffer: its head is built
 * here, and the block is not copied into the frame buffer. */
static int wire_put(void *impl, const uint8_t *digest, uint32_t len,
		    uint32_t codec, const uint8_t *data, size_t clen)
{
	struct wire *w = impl;
	uint8_t head[FY_PUT_HEAD_MAX];
	size_t hlen = fy_put_block_head(head, digest, len, codec, clen);

	return fy_conn_send_tail(w->conn, head, hlen, data, clen, "PutBlock");
}

static int wire_map(void *impl, uint32_t disk, uint64_t first,
		    const uint8_t (*digests)[FY_DIGEST_LEN], const bool *hole,
		    size_t n)
{
	struct wire *w = impl;
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__MapChunk mc = FERRY__MAP_CHUNK__INIT;
	size_t i;

	if (n > w->nbins)
		return fy_err_set(-EINVAL, "internal: a map chunk of %zu "
				  "entries", n);
	for (i = 0; i < n; i++) {
		w->bins[i].data = (uint8_t *)digests[i];
		w->bins[i].len = hole[i] ? 0 : FY_DIGEST_LEN;
	}
	mc.disk = disk;
	mc.first_block = first;
	mc.digests = w->bins;
	mc.n_digests = n;
	f.body_case = FERRY__FRAME__BODY_MAP_CHUNK;
	f.map_chunk = &mc;
	return fy_conn_send(w->conn, &f);
}

static int wire_end_disk(void *impl, uint32_t disk)
{
	struct wire *w = impl;
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__EndDisk ed = FERRY__END_DISK__INIT;

	ed.index = disk;
	f.body_case = FERRY__FRAME__BODY_END_DISK;
	f.end_disk = &ed;
	return fy_conn_send(w->conn, &f);
}

static int wire_flush(void *impl)
{
	struct wire *w = impl;

	return fy_conn_flush(w->conn);
}

static int wire_keepalive(void *impl)
{
	struct wire *w = impl;
	fy_frame *r = NULL;
	/* An empty query: the repository answers it in any state. */
	int rc = wire_query(impl, UINT64_MAX, NULL, 0);

	if (rc == 0)
		rc = fy_client_recv_expect(w->conn,
					   FERRY__FRAME__BODY_QUERY_REPLY,
					   "QueryReply", &r);
	fy_frame_free(r);
	return rc < 0 ? fy_err_wrap(rc, "keeping the repository session") : 0;
}

static int wire_commit(void *impl, const uint8_t *vm_config, size_t len,
		       char *id, size_t idlen)
{
	struct wire *w = impl;
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__Commit c = FERRY__COMMIT__INIT;
	fy_frame *r = NULL;
	int rc;

	c.vm_config.data = (uint8_t *)vm_config;
	c.vm_config.len = vm_config ? len : 0;
	f.body_case = FERRY__FRAME__BODY_COMMIT;
	f.commit = &c;
	rc = fy_conn_send(w->conn, &f);
	if (rc == 0)
		rc = fy_client_recv_expect(w->conn,
					   FERRY__FRAME__BODY_COMMITTED,
					   "Committed", &r);
	if (rc < 0)
		return fy_err_wrap(rc, "commit");
	snprintf(id, idlen, "%s", r->committed->backup_id);
	fy_frame_free(r);
	return 0;
}

static void wire_fail(void *impl, int rc, const char *msg)
{
	struct wire *w = impl;

	fy_conn_send_error(w->conn, rc, msg);
}

/* A full entry is a digest and its two bytes of tag and length; 64 bytes
 * cover the frame's own fields. */
static size_t wire_map_max(void *impl)
{
	struct wire *w = impl;
	size_t n = (fy_conn_max_frame(w->conn) - 64) / (FY_DIGEST_LEN + 2);

	return n < FY_MAP_CHUNK_MAX ? n : FY_MAP_CHUNK_MAX;
}

static void wire_free(void *impl)
{
	struct wire *w = impl;

	free(w->bins);
	free(w);
}

static const struct fy_session_ops wire_ops = {
	.begin = wire_begin,
	.begin_disk = wire_begin_disk,
	.query = wire_query,
	.reply = wire_reply,
	.put = wire_put,
	.map = wire_map,
	.end_disk = wire_end_disk,
	.flush = wire_flush,
	.keepalive = wire_keepalive,
	.commit = wire_commit,
	.fail = wire_fail,
	.map_max = wire_map_max,
	.free = wire_free,
};

int fy_session_wire(struct fy_conn *conn, struct fy_session **out)
{
	struct wire *w = calloc(1, sizeof(*w));
	int rc;

	if (!w)
		return fy_err_set(-ENOMEM, "out of memory for a session");
	w->conn = conn;
	w->nbins = wire_map_max(w);
	w->bins = calloc(w->nbins ? w->nbins : 1, sizeof(*w->bins));
	if (!w->bins) {
		wire_free(w);
		return fy_err_set(-ENOMEM, "out of memory for a session");
	}
	rc = fy_session_new(&wire_ops, w, out);
	if (rc < 0)
		wire_free(w);
	return rc;
}
