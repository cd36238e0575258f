/*
 * The block pipeline (agent/pipeline.c) and the backup session
 * (agent/session.c) against a repository in the same process: a real
 * format 2 repository in a temporary directory (image's session, pack
 * files, manifest builder), with no network and no TLS between. The
 * repository plays the wire's contract exactly: a query is answered as of
 * when it was asked, the reply is read later, in order; every PutBlock is
 * decoded and re-hashed before it is stored, as ferry-repo does.
 *
 * Checked: the committed backup's map (holes, digests of every block, a
 * short last block), every block stored once and reading back equal, map
 * chunks in order and of the size asked, a second backup deduplicated
 * whole, an incremental that takes unchanged blocks from its parent, and
 * failures (a refused put, a failed reply, cancel) that end the disk with
 * the repository's message and no hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/session.h"
#include "tests/unit/check.h"

#define BS (64u << 10)
#define NBLK 2000
#define TAIL 1000 /* a short last block */
#define SIZE ((uint64_t)NBLK * BS + TAIL)
#define NB (NBLK + 1)
#define PENDING_MAX 64
/* What the session remembers of puts made while queries are in flight
 * (agent/session.c RECENT_MAX). */
#define RECENT_TEST (FY_SESSION_DEPTH * FY_SESSION_BATCH)

static char dir[256], repo_dir[512], data_path[512];
static uint8_t *data; /* the disk's content */

/* ---- a repository in this process ---------------------------------------- */

struct pending {
	uint64_t seq;
	unsigned n;
	bool flushed; /* on the wire: a reply can come */
	uint8_t missing[(FY_SESSION_BATCH + 7) / 8];
};

struct mem_repo {
	struct fy_repo *repo;
	struct fy_repo_session *rs;
	struct fy_manifest_builder *mb;
	struct fy_manifest hdr;
	struct fy_manifest_disk disk;
	char id[FY_ID_MAX];

	struct pending q[PENDING_MAX]; /* asked, not yet read */
	unsigned head, count;
	uint64_t queries, max_pending;

	uint64_t puts, put_bytes, duplicate_puts;
	uint8_t (*put_digests)[FY_DIGEST_LEN];
	uint64_t map_calls, map_entries, next_first;
	size_t map_max, largest_chunk;
	uint64_t flushes;

	int fail_put_after; /* >0: the put after this many fails */
	int fail_reply_after; /* >0: the reply after this many fails */
	int failed_rc;
	char failed_msg[FY_ERR_MAX];
};

static int mr_begin(void *impl, const struct fy_backup_begin *b, char *id,
		    size_t idlen)
{
	struct mem_repo *m = impl;
	int rc;

	memset(&m->hdr, 0, sizeof(m->hdr));
	fy_repo_new_backup_id(m->id);
	snprintf(m->hdr.id, sizeof(m->hdr.id), "%s", m->id);
	snprintf(m->hdr.source, sizeof(m->hdr.source), "%s", b->source);
	snprintf(m->hdr.source_kind, sizeof(m->hdr.source_kind), "%s", b->kind);
	snprintf(m->hdr.parent_id, sizeof(m->hdr.parent_id), "%s",
		 b->parent_id ? b->parent_id : "");
	m->hdr.created_unix = 1700000000;
	m->hdr.block_size = b->block_size;
	m->hdr.disk_count = b->disks;
	rc = fy_repo_session_begin(m->repo, &m->rs);
	if (rc == 0)
		rc = fy_manifest_builder_new(fy_repo_tmpdir(m->repo), &m->hdr,
					     &m->mb);
	if (rc == 0)
		snprintf(id, idlen, "%s", m->id);
	return rc;
}

static int mr_begin_disk(void *impl, const struct fy_disk_begin *d)
{
	struct mem_repo *m = impl;

	memset(&m->disk, 0, sizeof(m->disk));
	m->disk.index = d->index;
	snprintf(m->disk.label, sizeof(m->disk.label), "%s", d->label);
	m->disk.size = d->size;
	snprintf(m->disk.transport, sizeof(m->disk.transport), "%s",
		 d->transport);
	m->next_first = 0;
	return fy_manifest_builder_begin_disk(m->mb, &m->disk);
}

/* Answered now, as the repository would on the query's arrival; read
 * later by mr_reply. */
static int mr_query(void *impl, uint64_t seq,
		    const uint8_t (*digests)[FY_DIGEST_LEN], unsigned n)
{
	struct mem_repo *m = impl;
	struct pending *p;
	unsigned i;

	if (m->count == PENDING_MAX || n > FY_SESSION_BATCH)
		return fy_err_set(-EPROTO, "too many queries in flight");
	p = &m->q[(m->head + m->count++) % PENDING_MAX];
	if (m->count > m->max_pending)
		m->max_pending = m->count;
	m->queries++;
	p->seq = seq;
	p->n = n;
	p->flushed = false;
	memset(p->missing, 0, sizeof(p->missing));
	for (i = 0; i < n; i++) {
		int r = fy_repo_session_exists(m->rs, digests[i]);

		if (r < 0)
			return r;
		if (!r)
			p->missing[i / 8] |= 1u << (i % 8);
	}
	return 0;
}

static int mr_reply(void *impl, uint64_t seq, unsigned n, uint8_t *missing)
{
	struct mem_repo *m = impl;
	struct pending *p = &m->q[m->head];

	if (m->fail_reply_after && !--m->fail_reply_after)
		return fy_err_set(-EPROTO, "repository: the reply went astray");
	if (!m->count || p->seq != seq || p->n != n)
		return fy_err_set(-EPROTO, "reply %llu read out of order",
				  (unsigned long long)seq);
	/* Over the wire this would wait forever. */
	if (!p->flushed)
		return fy_err_set(-EDEADLK, "reply %llu awaited before its "
				  "query was flushed",
				  (unsigned long long)seq);
	memcpy(missing, p->missing, (n + 7) / 8);
	m->head = (m->head + 1) % PENDING_MAX;
	m->count--;
	return 0;
}

/* As ferry-repo: decoded and re-hashed (fy_block_decode checks the
 * digest) before it is stored. */
static int mr_put(void *impl, const uint8_t *digest, uint32_t len,
		  uint32_t codec, const uint8_t *d, size_t clen)
{
	struct mem_repo *m = impl;
	uint8_t *plain = malloc(FY_BLOCK_MAX);
	uint64_t i;
	int rc;

	if (!plain)
		return fy_err_set(-ENOMEM, "out of memory");
	if (m->fail_put_after && !--m->fail_put_after) {
		free(plain);
		return fy_err_set(-ENOSPC, "repository: no space left "
				  "(test)");
	}
	rc = fy_block_decode(codec, d, clen, len, digest, plain, FY_BLOCK_MAX);
	free(plain);
	if (rc < 0)
		return rc;
	for (i = 0; i < m->puts; i++)
		if (!memcmp(m->put_digests[i], digest, FY_DIGEST_LEN))
			m->duplicate_puts++;
	if (m->puts < 2 * NB)
		memcpy(m->put_digests[m->puts], digest, FY_DIGEST_LEN);
	m->puts++;
	m->put_bytes += len;
	fy_repo_session_note(m->rs, digest);
	return fy_repo_session_put(m->rs, digest, codec, len, d, clen);
}

static int mr_map(void *impl, uint32_t disk, uint64_t first,
		  const uint8_t (*digests)[FY_DIGEST_LEN], const bool *hole,
		  size_t n)
{
	struct mem_repo *m = impl;
	uint8_t (*d)[FY_DIGEST_LEN] = calloc(n, FY_DIGEST_LEN);
	size_t i;
	int rc;

	if (!d)
		return fy_err_set(-ENOMEM, "out of memory");
	if (first != m->next_first || n > m->map_max)
		rc = fy_err_set(-EPROTO, "map chunk at %llu of %zu entries",
				(unsigned long long)first, n);
	else
		rc = 0;
	for (i = 0; i < n && rc == 0; i++)
		if (!hole[i])
			memcpy(d[i], digests[i], FY_DIGEST_LEN);
	if (rc == 0)
		rc = fy_manifest_builder_add(m->mb, disk, first,
					     (const uint8_t(*)[FY_DIGEST_LEN])d,
					     n);
	free(d);
	m->map_calls++;
	m->map_entries += n;
	m->next_first = first + n;
	if (n > m->largest_chunk)
		m->largest_chunk = n;
	return rc;
}

static int mr_end_disk(void *impl, uint32_t disk)
{
	struct mem_repo *m = impl;

	return fy_manifest_builder_end_disk(m->mb, disk);
}

static int mr_flush(void *impl)
{
	struct mem_repo *m = impl;
	unsigned i;

	m->flushes++;
	for (i = 0; i < m->count; i++)
		m->q[(m->head + i) % PENDING_MAX].flushed = true;
	return 0;
}

static int mr_keepalive(void *impl)
{
	(void)impl;
	return 0;
}

static int mr_commit(void *impl, const uint8_t *vm_config, size_t len,
		     char *id, size_t idlen)
{
	struct mem_repo *m = impl;
	char path[4096];
	int rc;

	(void)vm_config, (void)len;
	rc = fy_repo_session_commit(m->rs);
	if (rc == 0)
		rc = fy_manifest_builder_finish(m->mb, path, sizeof(path));
	if (rc == 0)
		rc = fy_repo_backup_commit(m->repo, path, m->id);
	if (rc == 0)
		snprintf(id, idlen, "%s", m->id);
	return rc;
}

static void mr_fail(void *impl, int rc, const char *msg)
{
	struct mem_repo *m = impl;

	m->failed_rc = rc;
	snprintf(m->failed_msg, sizeof(m->failed_msg), "%s", msg);
}

static size_t mr_map_max(void *impl)
{
	struct mem_repo *m = impl;

	return m->map_max;
}

static const struct fy_session_ops mem_ops = {
	.begin = mr_begin,
	.begin_disk = mr_begin_disk,
	.query = mr_query,
	.reply = mr_reply,
	.put = mr_put,
	.map = mr_map,
	.end_disk = mr_end_disk,
	.flush = mr_flush,
	.keepalive = mr_keepalive,
	.commit = mr_commit,
	.fail = mr_fail,
	.map_max = mr_map_max,
};

static void mr_init(struct mem_repo *m, size_t map_max)
{
	memset(m, 0, sizeof(*m));
	m->map_max = map_max;
	m->put_digests = calloc(2 * NB, FY_DIGEST_LEN);
	CHECK(m->put_digests != NULL);
	CHECK_RC(fy_repo_open(repo_dir, 0, &m->repo));
}

static void mr_done(struct mem_repo *m)
{
	fy_manifest_builder_free(m->mb);
	fy_repo_session_end(m->rs);
	fy_repo_close(m->repo);
	free(m->put_digests);
}

/* ---- the disk ------------------------------------------------------------ */

static uint64_t rng = 88172645463325252ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Block i: zeros (every 7th), a copy of one of 5 contents (every 3rd,
 * spread over the whole disk so copies meet in different query batches),
 * compressible text (every 4th), else random. */
static void fill_block(uint8_t *b, uint64_t i, size_t len)
{
	size_t k;

	if (i % 7 == 0) {
		memset(b, 0, len);
	} else if (i % 3 == 0) {
		for (k = 0; k < len; k++)
			b[k] = (uint8_t)(k * 31 + (i % 5) * 7 + 1);
	} else if (i % 4 == 0) {
		for (k = 0; k < len; k++)
			b[k] = "ferry backs up VMs "[(k + i) % 19];
	} else {
		for (k = 0; k + 8 <= len; k += 8) {
			uint64_t r = next_rand();

			memcpy(b + k, &r, 8);
		}
		for (; k < len; k++)
			b[k] = (uint8_t)next_rand();
	}
}

static size_t block_len(uint64_t i)
{
	return i < NBLK ? BS : TAIL;
}

static void write_disk(void)
{
	uint64_t i;
	int fd;

	data = malloc(SIZE);
	CHECK(data != NULL);
	for (i = 0; i < NB; i++)
		fill_block(data + i * BS, i, block_len(i));
	fd = open(data_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(write(fd, data, SIZE) == (ssize_t)SIZE);
	close(fd);
}

/* Distinct non-zero contents of the disk. */
static unsigned distinct_blocks(void)
{
	uint8_t (*d)[FY_DIGEST_LEN] = calloc(NB, FY_DIGEST_LEN);
	unsigned n = 0, j;
	uint64_t i;

	for (i = 0; i < NB; i++) {
		uint8_t x[FY_DIGEST_LEN];

		if (fy_is_zero(data + i * BS, block_len(i)))
			continue;
		fy_sha256(data + i * BS, block_len(i), x);
		for (j = 0; j < n; j++)
			if (!memcmp(d[j], x, FY_DIGEST_LEN))
				break;
		if (j == n)
			memcpy(d[n++], x, FY_DIGEST_LEN);
	}
	free(d);
	return n;
}

/* ---- runs ---------------------------------------------------------------- */

struct run {
	int rc;
	char msg[FY_ERR_MAX];
	char id[FY_ID_MAX];
	struct fy_disk_stats st;
	struct fy_session_counters n;
};

/* One backup of the disk (ndisks times, as disks 0, 1...) through a
 * session over m; src_in (one disk only) instead of the file. */
static struct run backup_n(struct mem_repo *m, unsigned ndisks,
			   const struct fy_parent_map *pm,
			   struct fy_source *src_in, atomic_bool *cancel)
{
	struct fy_backup_begin bb = {
		.source = "disk", .kind = "file", .block_size = BS,
		.disks = ndisks,
	};
	struct fy_pipeline_opts po = {
		.block_size = BS, .compression_level = 3, .workers = 2,
		.queue_depth = 8, .parent = pm, .cancel = cancel,
	};
	struct fy_file_source_opts fo = { .queue_depth = 8 };
	struct fy_session *s = NULL;
	struct run r = { 0 };
	unsigned k;

	r.rc = fy_session_new(&mem_ops, m, &s);
	if (r.rc == 0)
		r.rc = fy_session_begin(s, &bb, r.id, sizeof(r.id));
	for (k = 0; k < ndisks && r.rc == 0; k++) {
		struct fy_source *src = src_in;
		struct fy_disk_stats st;

		if (k)
			r.rc = fy_session_keepalive(s);
		if (r.rc == 0 && !src)
			r.rc = fy_file_source_open(data_path, &fo, &src);
		if (r.rc == 0)
			r.rc = fy_pipeline_run(s, src, k, "disk", &po, &st);
		if (src != src_in)
			fy_source_close(src);
		if (k == 0)
			r.st = st;
	}
	if (r.rc == 0)
		r.rc = fy_session_commit(s, NULL, 0, r.id, sizeof(r.id));
	if (r.rc < 0) {
		snprintf(r.msg, sizeof(r.msg), "%s", fy_err_msg());
		fy_session_fail(s, r.rc, r.msg);
	}
	if (s)
		fy_session_counters(s, &r.n);
	fy_session_free(s);
	fy_source_close(src_in);
	return r;
}

static struct run backup(struct mem_repo *m, const struct fy_parent_map *pm,
			 struct fy_source *src_in, atomic_bool *cancel)
{
	return backup_n(m, 1, pm, src_in, cancel);
}

/* The committed backup holds the disk (ndisks times): its map, and every
 * block read back from the repository. */
static void check_backup(const char *id, unsigned ndisks)
{
	struct fy_repo *repo = NULL;
	struct fy_manifest *man = NULL;
	uint8_t (*map)[FY_DIGEST_LEN] = calloc(NB, FY_DIGEST_LEN);
	uint8_t *stored = malloc(FY_STORED_MAX), *plain = malloc(FY_BLOCK_MAX);
	uint64_t i, bad = 0;
	unsigned k;

	CHECK(map && stored && plain);
	CHECK_RC(fy_repo_open(repo_dir, 0, &repo));
	CHECK_RC(fy_repo_backup_open(repo, id, &man));
	if (!man || !map || !stored || !plain)
		goto out;
	CHECK(man->disk_count == ndisks);
	for (k = 0; k < ndisks && k < man->disk_count; k++) {
		CHECK(man->disks[k].size == SIZE);
		CHECK_RC(fy_manifest_read_map(man, k, 0, NB, map));
		for (i = 0; i < NB; i++) {
			const uint8_t *b = data + i * BS;
			uint8_t want[FY_DIGEST_LEN];
			enum fy_codec codec;
			uint32_t psize;
			size_t slen;

			if (fy_is_zero(b, block_len(i))) {
				bad += !fy_digest_is_hole(map[i]);
				continue;
			}
			fy_sha256(b, block_len(i), want);
			if (memcmp(want, map[i], FY_DIGEST_LEN)) {
				bad++;
				continue;
			}
			if (fy_repo_block_get(repo, map[i], &codec, &psize,
					      stored, FY_STORED_MAX,
					      &slen) < 0 ||
			    psize != block_len(i) ||
			    fy_block_decode(codec, stored, slen, psize, map[i],
					    plain, FY_BLOCK_MAX) < 0 ||
			    memcmp(plain, b, psize))
				bad++;
		}
	}
	if (bad)
		fprintf(stderr, "%llu blocks of backup %s differ from the "
			"disk\n", (unsigned long long)bad, id);
	CHECK(bad == 0);
out:
	free(map);
	free(stored);
	free(plain);
	fy_manifest_free(man);
	fy_repo_close(repo);
}

/* Rewrites the file from data. */
static void rewrite_disk(void)
{
	int fd = open(data_path, O_WRONLY);

	CHECK(fd >= 0 && pwrite(fd, data, SIZE, 0) == (ssize_t)SIZE);
	close(fd);
}

/* ---- the session alone ------------------------------------------------- */

struct answers {
	unsigned n, missing;
	int fail_at; /* >0: the answer with this number fails */
};

static int count_answer(void *opaque, void *tag, bool missing)
{
	struct answers *a = opaque;

	(void)tag;
	a->n++;
	a->missing += missing;
	if (a->fail_at && a->n == (unsigned)a->fail_at)
		return fy_err_set(-EIO, "the caller gave up (test)");
	return 0;
}

/* A small block: 64 bytes made from i, stored raw. */
static void small_block(uint64_t i, uint8_t b[64], uint8_t d[FY_DIGEST_LEN])
{
	unsigned k;

	for (k = 0; k < 64; k++)
		b[k] = (uint8_t)(i * 131 + k + 1);
	memcpy(b, &i, sizeof(i));
	fy_sha256(b, 64, d);
}

/*
 * The rule for puts made while queries are in flight, driven directly:
 * four full queries go out, then the 256 blocks they asked about are put
 * before any reply is read. The session remembers each put (at most
 * 4 x 64); the next put finds no room and reads every reply first, and
 * each "missing" in them becomes "present", since the block went out
 * after its query. Then a failure: it is sticky, and no later call
 * reaches the repository.
 */
static void session_alone(void)
{
	struct fy_backup_begin bb = {
		.source = "alone", .kind = "file", .block_size = BS, .disks = 1,
	};
	struct fy_disk_begin d = {
		.index = 0, .label = "alone", .size = SIZE, .transport = "file",
	};
	struct fy_session_counters n;
	struct answers a = { 0 };
	struct fy_session *s = NULL;
	struct mem_repo m;
	uint8_t b[64], dg[FY_DIGEST_LEN];
	char id[FY_ID_MAX];
	uint64_t i, puts;
	int rc;

	mr_init(&m, 64);
	CHECK_RC(fy_session_new(&mem_ops, &m, &s));
	if (!s) {
		mr_done(&m);
		return;
	}
	CHECK_RC(fy_session_begin(s, &bb, id, sizeof(id)));
	CHECK_RC(fy_session_begin_disk(s, &d, count_answer, &a));
	for (i = 0; i < RECENT_TEST; i++) {
		small_block(i, b, dg);
		CHECK_RC(fy_session_have(s, dg, NULL));
	}
	CHECK(fy_session_outstanding(s) == FY_SESSION_DEPTH);
	CHECK(fy_session_batched(s) == 0);
	for (i = 0; i < RECENT_TEST; i++) {
		small_block(i, b, dg);
		CHECK_RC(fy_session_put(s, dg, 64, FY_CODEC_NONE, b, 64));
	}
	fy_session_counters(s, &n);
	CHECK(n.forced_answers == 0 && a.n == 0);
	small_block(RECENT_TEST, b, dg);
	CHECK_RC(fy_session_put(s, dg, 64, FY_CODEC_NONE, b, 64));
	fy_session_counters(s, &n);
	CHECK(n.forced_answers == FY_SESSION_DEPTH);
	CHECK(a.n == RECENT_TEST);
	CHECK(a.missing == 0); /* all put after their query */
	CHECK(n.not_resent == RECENT_TEST);
	CHECK(n.forgotten == 0);
	CHECK(fy_session_outstanding(s) == 0);

	/* An answer the caller fails: the session stays failed. */
	a.fail_at = (int)a.n + 3;
	for (i = 1000; i < 1000 + FY_SESSION_BATCH; i++) {
		small_block(i, b, dg);
		CHECK_RC(fy_session_have(s, dg, NULL));
	}
	rc = fy_session_answer(s);
	CHECK(rc == -EIO && strstr(fy_err_msg(), "gave up (test)"));
	puts = m.puts;
	small_block(2000, b, dg);
	rc = fy_session_put(s, dg, 64, FY_CODEC_NONE, b, 64);
	CHECK(rc == -EIO && strstr(fy_err_msg(), "gave up (test)"));
	rc = fy_session_have(s, dg, NULL);
	CHECK(rc == -EIO);
	rc = fy_session_commit(s, NULL, 0, id, sizeof(id));
	CHECK(rc == -EIO);
	CHECK(m.puts == puts); /* nothing reached the repository */
	fy_session_free(s);
	mr_done(&m);
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

int main(void)
{
	struct mem_repo m;
	struct run r, r2;
	unsigned distinct;
	uint64_t zero_bytes = 0, i;
	const char *base = getenv("TMPDIR");

	/* mkdtemp's template: it fills in the Xs. */
	snprintf(dir, sizeof(dir), "%s/ferry-test-pipeline-XXXXXX",
		 base && *base ? base : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(repo_dir, sizeof(repo_dir), "%s/repo", dir);
	snprintf(data_path, sizeof(data_path), "%s/disk.img", dir);
	CHECK_RC(fy_repo_init(repo_dir));
	write_disk();
	distinct = distinct_blocks();
	for (i = 0; i < NB; i++)
		if (fy_is_zero(data + i * BS, block_len(i)))
			zero_bytes += block_len(i);

	/* A first backup: every distinct block stored once; map chunks of
	 * 7 entries (the repository's limit here), in order. */
	mr_init(&m, 7);
	r = backup(&m, NULL, NULL, NULL);
	CHECK_RC(r.rc);
	CHECK(m.puts == distinct);
	CHECK(m.duplicate_puts == 0);
	CHECK(r.st.blocks_sent == distinct);
	CHECK(r.st.bytes_zero == zero_bytes);
	CHECK(r.st.bytes_new + r.st.bytes_dedup + r.st.bytes_zero == SIZE);
	CHECK(r.st.bytes_read == SIZE); /* no holes in the file */
	CHECK(m.map_entries == NB && m.largest_chunk == 7);
	CHECK(m.count == 0); /* every reply read */
	CHECK(m.max_pending <= FY_SESSION_DEPTH);
	CHECK(m.queries == r.n.queries && r.n.queries > 1);
	CHECK(m.failed_rc == 0);
	CHECK(r.n.forgotten == 0);
	mr_done(&m);
	if (r.rc == 0)
		check_backup(r.id, 1);

	/* The same disk again: nothing new to store. */
	mr_init(&m, 16384);
	r2 = backup(&m, NULL, NULL, NULL);
	CHECK_RC(r2.rc);
	CHECK(m.puts == 0);
	CHECK(r2.st.blocks_sent == 0);
	CHECK(r2.st.bytes_dedup == SIZE - zero_bytes);
	CHECK(m.map_calls == 1);
	mr_done(&m);
	if (r2.rc == 0)
		check_backup(r2.id, 1);

	/* An incremental: CBT says only blocks 10-19 changed; the others
	 * take the parent's entries without being read. */
	{
		struct fy_parent_map pm = { 0 };
		struct fy_repo *repo = NULL;
		struct fy_manifest *man = NULL;
		struct fy_file_source_opts fo = { .queue_depth = 8 };
		struct fy_source *inner = NULL, *wrapped = NULL;
		struct fy_area *areas = malloc(sizeof(*areas));
		int fd;

		/* Change blocks 10..19 on disk (and in data). */
		for (i = 10; i < 20; i++)
			memset(data + i * BS, (int)(0x40 + i), BS);
		fd = open(data_path, O_WRONLY);
		CHECK(fd >= 0 && pwrite(fd, data + 10 * BS, 10 * BS,
					10 * BS) == 10 * BS);
		close(fd);
		CHECK_RC(fy_repo_open(repo_dir, 0, &repo));
		CHECK_RC(fy_repo_backup_open(repo, r.id, &man));
		pm.size = SIZE;
		pm.block_size = BS;
		pm.n = NB;
		pm.digest = calloc(NB, FY_DIGEST_LEN);
		pm.hole = calloc(NB, 1);
		if (man && pm.digest && pm.hole) {
			CHECK_RC(fy_manifest_read_map(man, 0, 0, NB, pm.digest));
			for (i = 0; i < NB; i++)
				pm.hole[i] = fy_digest_is_hole(pm.digest[i]);
		}
		fy_manifest_free(man);
		fy_repo_close(repo);
		areas->start = 10 * BS;
		areas->length = 10 * BS;
		CHECK_RC(fy_file_source_open(data_path, &fo, &inner));
		CHECK_RC(fy_area_source_wrap(inner, areas, 1, &wrapped));
		mr_init(&m, 100);
		r2 = backup(&m, &pm, wrapped, NULL);
		CHECK_RC(r2.rc);
		CHECK(m.puts == 10);
		CHECK(r2.st.bytes_unchanged == SIZE - 10 * BS);
		CHECK(r2.st.bytes_new == 10 * BS);
		mr_done(&m);
		fy_source_close(inner);
		if (r2.rc == 0)
			check_backup(r2.id, 1);
		fy_parent_map_free(&pm);
	}

	/* Without CBT, two disks: every 10th block changed, each new content
	 * twice (blocks 20j+5 and 20j+15), so most of the disk is known.
	 * Compressing on speculation stops once the answers say "present";
	 * the new blocks are then compressed after their query, and a copy
	 * asked while its twin is being compressed is not sent again. Disk 1
	 * (the same file) is all known by then: the session's own blocks
	 * count. The query numbers go on across the disks. */
	for (i = 5; i < NBLK; i += 10) {
		uint64_t j = i / 20, k;

		for (k = 0; k < BS; k++)
			data[i * BS + k] = (uint8_t)(k * 7 + j * 13 + 0x33);
		memcpy(data + i * BS, &j, sizeof(j));
	}
	rewrite_disk();
	mr_init(&m, 16384);
	r = backup_n(&m, 2, NULL, NULL, NULL);
	CHECK_RC(r.rc);
	CHECK(m.puts == NBLK / 20);
	CHECK(m.duplicate_puts == 0);
	CHECK(m.map_entries == 2 * NB && m.map_calls == 2);
	CHECK(r.n.not_resent + r.st.bytes_dedup / BS > 0);
	mr_done(&m);
	if (r.rc == 0)
		check_backup(r.id, 2);

	/* A repository that refuses a put: the disk fails with its
	 * message, the caller tells the repository, nothing hangs. */
	for (i = 0; i < NB; i++)
		data[i * BS] ^= 0x5a; /* content the repository lacks */
	rewrite_disk();
	mr_init(&m, 64);
	m.fail_put_after = 5;
	r = backup(&m, NULL, NULL, NULL);
	CHECK(r.rc == -ENOSPC);
	CHECK(strstr(r.msg, "no space left (test)") != NULL);
	CHECK(strstr(r.msg, "disk 0 (disk)") != NULL);
	CHECK(m.failed_rc == -ENOSPC);
	mr_done(&m);

	/* A reply that fails. */
	mr_init(&m, 64);
	m.fail_reply_after = 2;
	r = backup(&m, NULL, NULL, NULL);
	CHECK(r.rc == -EPROTO);
	CHECK(strstr(r.msg, "the reply went astray") != NULL);
	CHECK(m.failed_rc == -EPROTO);
	mr_done(&m);

	/* Cancelled before anything: -ECANCELED, nothing stored. */
	{
		atomic_bool cancel = true;

		mr_init(&m, 64);
		r = backup(&m, NULL, NULL, &cancel);
		CHECK(r.rc == -ECANCELED);
		CHECK(m.puts == 0);
		CHECK(m.failed_rc == -ECANCELED);
		mr_done(&m);
	}

	session_alone();

	free(data);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	CHECK_DONE();
}
