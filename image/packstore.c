/*
 * The store of repository format 2 (docs/FORMAT.md): blocks in pack
 * files under root/packs, found through the index (index.c); manifests
 * as in format 1, under root/backups (the POSIX store's manifest calls).
 *
 * A backup session writes its own packs in tmp/, so nobody else can see
 * (or deduplicate against) a block before the backup commits: at commit
 * the packs are finished (fdatasync), renamed into packs/ and their
 * directories fsync'd, and only then added to the index; the server
 * writes the manifest after that. A session that ends without a commit
 * (failed, cancelled, out of space, client gone) removes its packs, so a
 * failed backup leaves nothing behind. A crash leaves its packs in tmp/,
 * which the server clears at start.
 *
 * gc deletes packs without a referenced block and repacks those mostly
 * garbage (less than half of their bytes referenced): the live blocks are
 * copied into new packs, which are published first; then the index is
 * rewritten without the old packs, and only then are they deleted. A
 * crash anywhere leaves every referenced block reachable: at worst a
 * block is stored twice until the next gc.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "image/image_private.h"

struct pack_store {
	struct fy_store base;
	struct fy_store *manifests; /* the POSIX store's manifest calls */
	char root[PATH_MAX];
	char tmpdir[PATH_MAX];
	char packs_dir[PATH_MAX];
	struct fy_index *ix;
	pthread_mutex_t refresh_lock;
	double last_refresh;
	/* format 3: the object store every pack and manifest goes to first */
	const struct fy_pack_remote *remote;
	struct fy_pack_remote remote_ops;
	/* format 3: a session's full packs are uploaded by these threads
	 * while the backup goes on, so that its commit waits only for the
	 * last one */
	pthread_mutex_t up_lock;
	pthread_cond_t up_cond;
	struct upload_job *up_head, *up_tail;
	pthread_t up_threads[FY_PACK_UPLOADERS];
	unsigned n_up;
	bool up_stop;
};

struct upload_job {
	struct pack_session *s;
	size_t idx; /* in s->done */
	uint8_t id[FY_PACK_ID_LEN];
	struct upload_job *next;
};

enum { UP_NONE, UP_QUEUED, UP_DONE, UP_FAILED };

struct upload_job;

struct pack_session {
	struct pack_store *ps;
	pthread_mutex_t lock;
	struct fy_pack_writer *cur;
	uint8_t (*done)[FY_PACK_ID_LEN]; /* finished, still in tmp/ */
	size_t ndone, capdone;
	size_t published; /* done[0..published) are in packs/ */
	bool committed;
	/* format 3: each done[i]'s upload (UP_*), how many are under way,
	 * the first failure; under up_lock */
	pthread_mutex_t up_lock;
	pthread_cond_t up_cond;
	unsigned char *upstate;
	size_t uploading;
	int up_rc;
	char up_msg[FY_ERR_MAX];
};

static struct pack_store *to_pack(struct fy_store *st)
{
	return (struct pack_store *)st;
}

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A block another process just committed is not in our index yet: look
 * again, at most once a second. */
static bool refresh_for_miss(struct pack_store *ps)
{
	bool again = false;

	pthread_mutex_lock(&ps->refresh_lock);
	if (now_mono() - ps->last_refresh >= 1.0) {
		ps->last_refresh = now_mono();
		again = fy_index_refresh(ps->ix) == 0;
	}
	pthread_mutex_unlock(&ps->refresh_lock);
	return again;
}

static int pack_refresh(struct fy_store *st)
{
	struct pack_store *ps = to_pack(st);
	int rc = fy_index_refresh(ps->ix);

	pthread_mutex_lock(&ps->refresh_lock);
	ps->last_refresh = now_mono();
	pthread_mutex_unlock(&ps->refresh_lock);
	return rc;
}

/* ---- blocks ------------------------------------------------------------ */

/* One object of a pack: from the local file, or, where the cache has a
 * hole (format 3), from the object store. */
static int read_object(struct pack_store *ps, const char *path,
		       const struct fy_index_loc *loc, uint32_t length,
		       void *hdr, size_t hdrlen, void *buf, size_t bufcap)
{
	uint8_t *tmp;
	int rc;

	if (ps->remote) {
		rc = fy_pack_range_local(path, loc->offset, length);
		if (rc < 0)
			return rc;
		if (rc == 0) {
			if (length < hdrlen || length - hdrlen > bufcap)
				return fy_err_set(-EBADMSG, "pack %s: an "
						  "object of %u bytes at %u "
						  "does not fit", path, length,
						  loc->offset);
			tmp = malloc(length);
			if (!tmp)
				return fy_err_set(-ENOMEM, "out of memory");
			rc = ps->remote->pack_read(ps->remote->ctx, loc->pack,
						   loc->offset, length, tmp);
			if (!rc) {
				memcpy(hdr, tmp, hdrlen);
				memcpy(buf, tmp + hdrlen, length - hdrlen);
			}
			free(tmp);
			return rc;
		}
	}
	return fy_pack_read_object(path, loc->offset, length, hdr, hdrlen, buf,
				   bufcap);
}

static int pack_block_stat(struct fy_store *st,
			   const uint8_t digest[FY_DIGEST_LEN], uint64_t *size)
{
	struct fy_index_loc loc;

	if (!fy_index_lookup(to_pack(st)->ix, digest, &loc))
		return -ENOENT;
	*size = loc.length;
	return 0;
}

static int pack_block_get(struct fy_store *st,
			  const uint8_t digest[FY_DIGEST_LEN], void *hdr,
			  size_t hdrlen, void *buf, size_t bufcap,
			  uint64_t *size)
{
	struct pack_store *ps = to_pack(st);
	struct fy_index_loc loc;
	char path[PATH_MAX];
	int tries, rc = -ENOENT;

	for (tries = 0; tries < 2; tries++) {
		if (!fy_index_lookup(ps->ix, digest, &loc)) {
			if (tries == 0 && refresh_for_miss(ps))
				continue;
			return -ENOENT;
		}
		*size = loc.length;
		rc = fy_pack_path(ps->packs_dir, loc.pack, path, sizeof(path));
		if (rc)
			return rc;
		/* Too large for buf: the header alone, and the caller, seeing
		 * the size, refuses. */
		rc = read_object(ps, path, &loc,
				 loc.length - hdrlen > bufcap ? (uint32_t)hdrlen
							      : loc.length,
				 hdr, hdrlen, buf, bufcap);
		/* gc in another process moved it: look again. */
		if (rc == -ENOENT && tries == 0 && !pack_refresh(st))
			continue;
		return rc;
	}
	return rc;
}

static int list_one(void *opaque, const uint8_t digest[FY_DIGEST_LEN],
		    const struct fy_index_loc *loc)
{
	void **a = opaque;

	(void)loc;
	return ((fy_digest_cb)a[0])(a[1], digest);
}

static int pack_block_list(struct fy_store *st, fy_digest_cb cb,
			   void *opaque)
{
	void *a[2] = { (void *)cb, opaque };

	return fy_index_for_each(to_pack(st)->ix, list_one, a);
}

static int cmp_digest(const void *a, const void *b)
{
	return memcmp(a, b, FY_DIGEST_LEN);
}

/* ---- sessions ---------------------------------------------------------- */

static int pack_session_begin(struct fy_store *st,
			      struct fy_store_session **out)
{
	struct pack_session *s = calloc(1, sizeof(*s));

	if (!s)
		return fy_err_set(-ENOMEM, "out of memory");
	s->ps = to_pack(st);
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->up_lock, NULL);
	pthread_cond_init(&s->up_cond, NULL);
	*out = (struct fy_store_session *)s;
	return 0;
}

/* ---- uploads of a session's packs (format 3) ----------------------------- */

static void *uploader_main(void *arg)
{
	struct pack_store *ps = arg;
	struct upload_job *j;
	char path[PATH_MAX];
	int rc;

	for (;;) {
		pthread_mutex_lock(&ps->up_lock);
		while (!ps->up_head && !ps->up_stop)
			pthread_cond_wait(&ps->up_cond, &ps->up_lock);
		j = ps->up_head;
		if (j) {
			ps->up_head = j->next;
			if (!ps->up_head)
				ps->up_tail = NULL;
		}
		pthread_mutex_unlock(&ps->up_lock);
		if (!j)
			return NULL;
		rc = fy_pack_tmp_path(ps->tmpdir, j->id, path, sizeof(path));
		if (!rc)
			rc = ps->remote->pack_put(ps->remote->ctx, j->id, path);
		pthread_mutex_lock(&j->s->up_lock);
		j->s->upstate[j->idx] = rc ? UP_FAILED : UP_DONE;
		if (rc && !j->s->up_rc) {
			j->s->up_rc = rc;
			snprintf(j->s->up_msg, sizeof(j->s->up_msg), "%s",
				 fy_err_msg());
		}
		j->s->uploading--;
		pthread_cond_broadcast(&j->s->up_cond);
		pthread_mutex_unlock(&j->s->up_lock);
		free(j);
	}
}

/* Queues done[idx] for upload. Under s->lock. */
static int upload_start(struct pack_session *s, size_t idx)
{
	struct pack_store *ps = s->ps;
	struct upload_job *j = calloc(1, sizeof(*j));

	if (!j)
		return fy_err_set(-ENOMEM, "out of memory");
	j->s = s;
	j->idx = idx;
	memcpy(j->id, s->done[idx], FY_PACK_ID_LEN);
	pthread_mutex_lock(&s->up_lock);
	s->upstate[idx] = UP_QUEUED;
	s->uploading++;
	pthread_mutex_unlock(&s->up_lock);
	pthread_mutex_lock(&ps->up_lock);
	while (ps->n_up < FY_PACK_UPLOADERS) {
		if (pthread_create(&ps->up_threads[ps->n_up], NULL,
				   uploader_main, ps))
			break;
		ps->n_up++;
	}
	if (!ps->n_up) {
		pthread_mutex_unlock(&ps->up_lock);
		pthread_mutex_lock(&s->up_lock);
		s->upstate[idx] = UP_NONE;
		s->uploading--;
		pthread_mutex_unlock(&s->up_lock);
		free(j);
		return fy_err_set(-EAGAIN, "cannot start an upload thread");
	}
	if (ps->up_tail)
		ps->up_tail->next = j;
	else
		ps->up_head = j;
	ps->up_tail = j;
	pthread_cond_signal(&ps->up_cond);
	pthread_mutex_unlock(&ps->up_lock);
	return 0;
}

/* Waits for the session's uploads; the first failure, with its message. */
static int upload_wait(struct pack_session *s)
{
	int rc;

	pthread_mutex_lock(&s->up_lock);
	while (s->uploading)
		pthread_cond_wait(&s->up_cond, &s->up_lock);
	rc = s->up_rc;
	pthread_mutex_unlock(&s->up_lock);
	return rc ? fy_err_set(rc, "%s", s->up_msg) : 0;
}

/* A failed upload fails the backup now rather than at its commit. */
static int upload_failed(struct pack_session *s)
{
	int rc;

	pthread_mutex_lock(&s->up_lock);
	rc = s->up_rc;
	pthread_mutex_unlock(&s->up_lock);
	return rc ? fy_err_set(rc, "%s", s->up_msg) : 0;
}

/* Finishes the open pack and lists it for the commit. Under s->lock. */
static int close_current(struct pack_session *s)
{
	struct fy_pack_writer *w = s->cur;
	int rc;

	if (!w)
		return 0;
	if (!fy_pack_writer_count(w)) {
		fy_pack_discard(w);
		s->cur = NULL;
		return 0;
	}
	if (s->ndone == s->capdone) {
		size_t cap = s->capdone ? s->capdone * 2 : 16;
		void *p = realloc(s->done, cap * FY_PACK_ID_LEN);

		if (!p)
			return fy_err_set(-ENOMEM, "out of memory");
		s->done = p;
		/* The uploaders write upstate: grown under their lock. */
		pthread_mutex_lock(&s->up_lock);
		p = realloc(s->upstate, cap);
		if (p) {
			memset((unsigned char *)p + s->capdone, UP_NONE,
			       cap - s->capdone);
			s->upstate = p;
		}
		pthread_mutex_unlock(&s->up_lock);
		if (!p)
			return fy_err_set(-ENOMEM, "out of memory");
		s->capdone = cap;
	}
	/* Durable at commit (publish), not here under the session's lock. */
	rc = fy_pack_finish_ex(w, false);
	if (rc)
		return rc;
	memcpy(s->done[s->ndone++], fy_pack_writer_id(w), FY_PACK_ID_LEN);
	fy_pack_writer_free(w);
	s->cur = NULL;
	if (s->ps->remote)
		return upload_start(s, s->ndone - 1);
	return 0;
}

struct sum_packs {
	struct pack_store *ps;
	uint64_t bytes, count;
};

static int sum_one(void *opaque, const uint8_t id[FY_PACK_ID_LEN])
{
	struct sum_packs *sp = opaque;
	char path[PATH_MAX];
	struct stat sb;

	if (!fy_pack_path(sp->ps->packs_dir, id, path, sizeof(path)) &&
	    !stat(path, &sb)) {
		sp->bytes += (uint64_t)sb.st_size;
		sp->count++;
	}
	return 0;
}

/* Out of space: say what the repository holds and how to free some, so
 * the admin is not left with a bare ENOSPC. The session's own packs are
 * deleted when it ends. */
static int explain_no_space(struct pack_store *ps, int rc)
{
	struct sum_packs sp = { .ps = ps };
	struct statvfs vfs;
	char held[32], avail[32], total[32];

	if (rc != -ENOSPC && rc != -EDQUOT)
		return rc;
	fy_index_for_each_pack(ps->ix, sum_one, &sp);
	fy_format_bytes(sp.bytes, held, sizeof(held));
	if (statvfs(ps->root, &vfs) == 0) {
		fy_format_bytes((uint64_t)vfs.f_bavail * vfs.f_frsize, avail,
				sizeof(avail));
		fy_format_bytes((uint64_t)vfs.f_blocks * vfs.f_frsize, total,
				sizeof(total));
	} else {
		snprintf(avail, sizeof(avail), "?");
		snprintf(total, sizeof(total), "?");
	}
	return fy_err_wrap(rc, "repository %s is out of space (%s free of %s; "
			   "its %" PRIu64 " packs hold %s). This backup's new "
			   "blocks are removed; 'ferry-repo prune' then "
			   "'ferry-repo gc' free space, and 'ferry-repo gc "
			   "--dry-run' says how much", ps->root, avail, total,
			   sp.count, held);
}

static int pack_session_put(struct fy_store_session *ss,
			    const uint8_t digest[FY_DIGEST_LEN],
			    const void *hdr, size_t hdrlen, const void *data,
			    size_t len)
{
	struct pack_session *s = (struct pack_session *)ss;
	int rc = 0;

	/* Appends are copies into the pack's buffer and, every 2 MiB, one
	 * O_DIRECT write of it (pack.c); the pack's sync waits for the
	 * commit. */
	pthread_mutex_lock(&s->lock);
	if (s->committed)
		rc = fy_err_set(-EINVAL, "block put after the commit");
	if (!rc && s->ps->remote)
		rc = upload_failed(s);
	if (!rc && !s->cur)
		rc = fy_pack_create(s->ps->tmpdir, &s->cur);
	if (!rc)
		rc = fy_pack_append(s->cur, digest, hdr, hdrlen, data, len);
	if (!rc && fy_pack_writer_full(s->cur))
		rc = close_current(s);
	pthread_mutex_unlock(&s->lock);
	return explain_no_space(s->ps, rc);
}

/* Moves finished packs from tmp/ into packs/ durably and indexes them,
 * with replace for a repack. Shared by sessions and gc. */
static int publish(struct pack_store *ps, uint8_t (*ids)[FY_PACK_ID_LEN],
		   size_t n, size_t *published, bool replace, bool uploaded)
{
	char path[PATH_MAX];
	struct fy_pack_entry *e;
	size_t i, cnt;
	int rc;

	for (i = *published; i < n; i++) {
		/* Format 3: in the bucket first, so that no local index, and
		 * so no manifest, ever names a pack the bucket lacks. */
		if (ps->remote && !uploaded) {
			rc = fy_pack_tmp_path(ps->tmpdir, ids[i], path,
					      sizeof(path));
			if (!rc)
				rc = ps->remote->pack_put(ps->remote->ctx,
							  ids[i], path);
			if (rc)
				return rc;
		}
		rc = fy_pack_move_in(ps->tmpdir, ps->packs_dir, ids[i]);
		if (rc)
			return rc;
		*published = i + 1;
	}
	/* Durable on disk: now visible. The trailers come back from the
	 * page cache. */
	for (i = 0; i < n; i++) {
		rc = fy_pack_path(ps->packs_dir, ids[i], path, sizeof(path));
		if (!rc)
			rc = fy_pack_read_trailer(path, &e, &cnt);
		if (rc)
			return rc;
		rc = fy_index_add_pack(ps->ix, ids[i], e, cnt, replace);
		free(e);
		if (rc)
			return rc;
	}
	if (ps->remote && n)
		ps->remote->trim(ps->remote->ctx);
	return 0;
}

static int pack_session_commit(struct fy_store_session *ss)
{
	struct pack_session *s = (struct pack_session *)ss;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = close_current(s);
	/* Format 3: every pack of the backup in the bucket first. */
	if (!rc && s->ps->remote)
		rc = upload_wait(s);
	if (!rc)
		rc = publish(s->ps, s->done, s->ndone, &s->published, false,
			     s->ps->remote != NULL);
	if (!rc)
		s->committed = true;
	pthread_mutex_unlock(&s->lock);
	return explain_no_space(s->ps, rc);
}

static void pack_session_end(struct fy_store_session *ss)
{
	struct pack_session *s = (struct pack_session *)ss;
	char tmp[PATH_MAX];
	size_t i;

	if (!s)
		return;
	fy_pack_discard(s->cur);
	if (s->ps->remote) {
		/* Uploads still under way read their files: wait. Packs that
		 * reached the bucket for a backup that never committed are
		 * deleted there too (what Object Lock keeps, gc deletes once
		 * it may). */
		(void)upload_wait(s);
		for (i = s->published; i < s->ndone; i++)
			if (s->upstate[i] == UP_DONE &&
			    s->ps->remote->pack_delete(s->ps->remote->ctx,
						       s->done[i]))
				fy_warn("pack store: %s", fy_err_msg());
	}
	/* Not committed: packs still in tmp/ are referenced by nothing.
	 * (Packs a failed commit already moved stay for gc.) */
	for (i = s->published; i < s->ndone; i++)
		if (!fy_pack_tmp_path(s->ps->tmpdir, s->done[i], tmp,
				      sizeof(tmp)) &&
		    unlink(tmp) && errno != ENOENT)
			fy_warn("pack store: cannot remove %s: %s", tmp,
				strerror(errno));
	free(s->done);
	free(s->upstate);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->up_lock);
	pthread_cond_destroy(&s->up_cond);
	free(s);
}

static int pack_block_put(struct fy_store *st,
			  const uint8_t digest[FY_DIGEST_LEN], const void *hdr,
			  size_t hdrlen, const void *data, size_t len)
{
	struct fy_store_session *ss = NULL;
	uint64_t size;
	int rc;

	if (pack_block_stat(st, digest, &size) == 0)
		return 0;
	rc = pack_session_begin(st, &ss);
	if (!rc)
		rc = pack_session_put(ss, digest, hdr, hdrlen, data, len);
	if (!rc)
		rc = pack_session_commit(ss);
	pack_session_end(ss);
	return rc;
}

/* ---- gc ---------------------------------------------------------------- */

struct pack_stat {
	uint8_t id[FY_PACK_ID_LEN];
	uint64_t size, live_bytes, live_count, count;
	enum { KEEP, DROP, REPACK } fate;
};

struct gc_ctx {
	struct pack_store *ps;
	/* gc: what backups reference; forget: NULL, everything but the
	 * forgotten digests lives */
	const struct fy_digest_set *refs;
	const uint8_t (*forgotten)[FY_DIGEST_LEN];
	size_t nforgotten;
	struct fy_gc_result *res;
	struct pack_stat *packs;
	size_t npacks, cap;
	/* live blocks to copy out of packs being repacked */
	struct copy {
		uint8_t digest[FY_DIGEST_LEN];
		struct fy_index_loc loc;
	} *copies;
	size_t ncopies, capcopies;
};

static int cmp_digest(const void *a, const void *b);

static bool is_live(const struct gc_ctx *g, const uint8_t *digest)
{
	if (g->refs)
		return fy_digest_set_contains(g->refs, digest);
	return !bsearch(digest, g->forgotten, g->nforgotten, FY_DIGEST_LEN,
			cmp_digest);
}

static int cmp_pack_stat(const void *a, const void *b)
{
	return memcmp(a, b, FY_PACK_ID_LEN);
}

static struct pack_stat *find_pack(struct gc_ctx *g,
				   const uint8_t id[FY_PACK_ID_LEN])
{
	return bsearch(id, g->packs, g->npacks, sizeof(*g->packs),
		       cmp_pack_stat);
}

static int gc_add_pack(void *opaque, const uint8_t id[FY_PACK_ID_LEN])
{
	struct gc_ctx *g = opaque;

	if (g->npacks == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 64;
		void *p = realloc(g->packs, cap * sizeof(*g->packs));

		if (!p)
			return fy_err_set(-ENOMEM, "gc: out of memory");
		g->packs = p;
		g->cap = cap;
	}
	memset(&g->packs[g->npacks], 0, sizeof(*g->packs));
	memcpy(g->packs[g->npacks++].id, id, FY_PACK_ID_LEN);
	return 0;
}

static int gc_count(void *opaque, const uint8_t digest[FY_DIGEST_LEN],
		    const struct fy_index_loc *loc)
{
	struct gc_ctx *g = opaque;
	struct pack_stat *p = find_pack(g, loc->pack);

	if (!p)
		return 0;
	p->count++;
	g->res->stored++;
	if (is_live(g, digest)) {
		p->live_bytes += loc->length;
		p->live_count++;
	} else {
		g->res->deleted++;
	}
	return 0;
}

static int gc_pick(void *opaque, const uint8_t digest[FY_DIGEST_LEN],
		   const struct fy_index_loc *loc)
{
	struct gc_ctx *g = opaque;
	struct pack_stat *p = find_pack(g, loc->pack);

	if (!p || p->fate != REPACK || !is_live(g, digest))
		return 0;
	if (g->ncopies == g->capcopies) {
		size_t cap = g->capcopies ? g->capcopies * 2 : 256;
		void *q = realloc(g->copies, cap * sizeof(*g->copies));

		if (!q)
			return fy_err_set(-ENOMEM, "gc: out of memory");
		g->copies = q;
		g->capcopies = cap;
	}
	memcpy(g->copies[g->ncopies].digest, digest, FY_DIGEST_LEN);
	g->copies[g->ncopies++].loc = *loc;
	return 0;
}

static int cmp_copy(const void *a, const void *b)
{
	const struct copy *x = a, *y = b;
	int c = memcmp(x->loc.pack, y->loc.pack, FY_PACK_ID_LEN);

	if (c)
		return c;
	return x->loc.offset < y->loc.offset ? -1 : x->loc.offset > y->loc.offset;
}

/* Copies the live blocks of the packs being repacked into new packs and
 * publishes them (replacing their index entries). */
static int repack(struct gc_ctx *g)
{
	struct pack_store *ps = g->ps;
	struct fy_pack_writer *w = NULL;
	uint8_t (*ids)[FY_PACK_ID_LEN] = NULL;
	uint8_t hdr[FY_BLOCK_HDR_LEN];
	uint8_t *buf = malloc(FY_STORED_MAX);
	size_t nids = 0, cap = 0, published = 0, i;
	char path[PATH_MAX];
	int rc = 0;

	if (!buf)
		return fy_err_set(-ENOMEM, "gc: out of memory");
	/* In pack order: each old pack is read front to back. */
	qsort(g->copies, g->ncopies, sizeof(*g->copies), cmp_copy);
	for (i = 0; !rc && i < g->ncopies; i++) {
		const struct copy *c = &g->copies[i];

		rc = fy_pack_path(ps->packs_dir, c->loc.pack, path,
				  sizeof(path));
		if (!rc)
			rc = read_object(ps, path, &c->loc, c->loc.length, hdr,
					 sizeof(hdr), buf, FY_STORED_MAX);
		if (rc == -ENOENT)
			rc = fy_err_set(rc, "gc: pack %s is gone", path);
		if (!rc && !w)
			rc = fy_pack_create(ps->tmpdir, &w);
		if (!rc)
			rc = fy_pack_append(w, c->digest, hdr, sizeof(hdr), buf,
					    c->loc.length - sizeof(hdr));
		g->res->bytes_written += rc ? 0 : c->loc.length;
		if (!rc && (fy_pack_writer_full(w) || i + 1 == g->ncopies)) {
			if (nids == cap) {
				size_t ncap = cap ? cap * 2 : 16;
				void *p = realloc(ids, ncap * FY_PACK_ID_LEN);

				if (!p) {
					rc = fy_err_set(-ENOMEM, "gc: out of "
							"memory");
					break;
				}
				ids = p;
				cap = ncap;
			}
			rc = fy_pack_finish(w);
			if (!rc) {
				memcpy(ids[nids++], fy_pack_writer_id(w),
				       FY_PACK_ID_LEN);
				fy_pack_writer_free(w);
				w = NULL;
			}
		}
	}
	if (!rc)
		rc = publish(ps, ids, nids, &published, true, false);
	g->res->packs_written += published;
	if (rc) {
		fy_pack_discard(w);
		for (i = published; i < nids; i++)
			if (!fy_pack_tmp_path(ps->tmpdir, ids[i], path,
					      sizeof(path)))
				unlink(path);
	}
	free(ids);
	free(buf);
	return rc;
}

static bool gc_keep_entry(void *opaque, const uint8_t digest[FY_DIGEST_LEN],
			  const struct fy_index_loc *loc)
{
	struct gc_ctx *g = opaque;
	struct pack_stat *p = find_pack(g, loc->pack);

	if (p && p->fate != KEEP)
		return false;
	return is_live(g, digest);
}

static bool gc_keep_pack(void *opaque, const uint8_t id[FY_PACK_ID_LEN])
{
	struct pack_stat *p = find_pack(opaque, id);

	return !p || p->fate == KEEP;
}

/* Decides each pack's fate and carries it out: new packs first; then the
 * index without the old ones; only then are the old ones deleted. gc
 * repacks packs less than half live; forget (strict) repacks every pack
 * with a dead entry, so that no rebuild of the index from the trailers
 * can bring a forgotten block back. */
static int sweep(struct gc_ctx *g, bool dry_run, bool strict)
{
	struct pack_store *ps = g->ps;
	struct fy_gc_result *res = g->res;
	char path[PATH_MAX], dir[PATH_MAX];
	struct stat sb;
	size_t i;
	int rc;

	rc = pack_refresh(&ps->base);
	if (!rc)
		rc = fy_index_for_each_pack(ps->ix, gc_add_pack, g);
	if (rc)
		return rc;
	qsort(g->packs, g->npacks, sizeof(*g->packs), cmp_pack_stat);
	rc = fy_index_for_each(ps->ix, gc_count, g);
	if (rc)
		return rc;
	for (i = 0; i < g->npacks; i++) {
		struct pack_stat *p = &g->packs[i];

		rc = fy_pack_path(ps->packs_dir, p->id, path, sizeof(path));
		if (rc)
			return rc;
		p->size = stat(path, &sb) ? 0 : (uint64_t)sb.st_size;
		if (!p->live_count)
			p->fate = DROP;
		else if (strict ? p->live_count < p->count
				: p->live_bytes * 2 < p->size)
			p->fate = REPACK;
		if (p->fate != KEEP && ps->remote) {
			/* Object Lock: a pack that cannot be deleted yet is
			 * neither deleted nor copied (that would only add a
			 * second copy). */
			rc = ps->remote->pack_deletable(ps->remote->ctx, p->id);
			if (rc < 0)
				return rc;
			if (!rc) {
				p->fate = KEEP;
				res->packs_retained++;
			}
		}
		if (p->fate == DROP)
			res->packs_deleted++;
		else if (p->fate == REPACK)
			res->packs_repacked++;
		if (p->fate != KEEP)
			res->bytes_freed += p->size;
	}
	res->packs = g->npacks;
	if (dry_run || (!res->packs_deleted && !res->packs_repacked &&
			!res->deleted))
		return 0;
	rc = fy_index_for_each(ps->ix, gc_pick, g);
	if (!rc && g->ncopies)
		rc = repack(g);
	if (!rc)
		rc = fy_index_rewrite(ps->ix, gc_keep_entry, gc_keep_pack, g);
	if (rc)
		return rc;
	for (i = 0; i < g->npacks; i++) {
		char hex[FY_PACK_ID_LEN * 2 + 1];

		if (g->packs[i].fate == KEEP)
			continue;
		fy_pack_id_hex(g->packs[i].id, hex);
		if (fy_pack_path(ps->packs_dir, g->packs[i].id, path,
				 sizeof(path)) ||
		    fy_path_fmt(dir, sizeof(dir), "%s/%.2s", ps->packs_dir,
				hex))
			continue;
		/* Format 3: the bucket's copy first. When that fails the
		 * local file stays, so the pack is seen (and deleted) again
		 * by the next gc. */
		if (ps->remote &&
		    ps->remote->pack_delete(ps->remote->ctx, g->packs[i].id)) {
			fy_warn("gc: %s", fy_err_msg());
			continue;
		}
		if (unlink(path) && errno != ENOENT) {
			fy_warn("gc: cannot delete %s: %s", path,
				strerror(errno));
			continue;
		}
		(void)fy_fsync_dir(dir);
	}
	/* The rewrite read the old packs back in while they were still
	 * there: forget them. */
	return fy_index_reload(ps->ix);
}

static int pack_collect(struct fy_store *st, const struct fy_digest_set *refs,
			bool dry_run, struct fy_gc_result *res)
{
	struct gc_ctx g = { .ps = to_pack(st), .refs = refs, .res = res };
	size_t i, n = 0;
	int rc = 0;

	if (g.ps->remote && g.ps->remote->gc_begin)
		rc = g.ps->remote->gc_begin(g.ps->remote->ctx, dry_run, res);
	if (!rc)
		rc = sweep(&g, dry_run, false);

	/* Object Lock: what kept backups still need stays locked. */
	if (!rc && !dry_run && g.ps->remote && g.ps->remote->upkeep) {
		uint8_t (*live)[FY_PACK_ID_LEN] =
			malloc((g.npacks ? g.npacks : 1) * FY_PACK_ID_LEN);

		if (!live)
			rc = fy_err_set(-ENOMEM, "gc: out of memory");
		for (i = 0; live && i < g.npacks; i++)
			if (g.packs[i].fate == KEEP && g.packs[i].live_count)
				memcpy(live[n++], g.packs[i].id,
				       FY_PACK_ID_LEN);
		if (live)
			rc = g.ps->remote->upkeep(
				g.ps->remote->ctx,
				(const uint8_t (*)[FY_PACK_ID_LEN])live, n,
				&res->retention_extended);
		free(live);
	}

	res->bytes_freed = res->bytes_freed > res->bytes_written
				   ? res->bytes_freed - res->bytes_written
				   : 0;
	free(g.packs);
	free(g.copies);
	return rc;
}

/* The packs holding them are rewritten without them (their other blocks
 * copied), so the next backup stores them again and nothing, not even a
 * rebuild of the index, finds the old copies. */
static int pack_block_forget(struct fy_store *st,
			     const uint8_t (*digests)[FY_DIGEST_LEN], size_t n)
{
	struct fy_gc_result res = { 0 };
	struct gc_ctx g = { .ps = to_pack(st), .res = &res };
	uint8_t (*sorted)[FY_DIGEST_LEN];
	int rc;

	if (!n)
		return 0;
	sorted = malloc(n * FY_DIGEST_LEN);
	if (!sorted)
		return fy_err_set(-ENOMEM, "out of memory");
	memcpy(sorted, digests, n * FY_DIGEST_LEN);
	qsort(sorted, n, FY_DIGEST_LEN, cmp_digest);
	g.forgotten = (const uint8_t (*)[FY_DIGEST_LEN])sorted;
	g.nforgotten = n;
	rc = sweep(&g, false, true);
	free(sorted);
	free(g.packs);
	free(g.copies);
	return rc;
}

static int pack_block_delete(struct fy_store *st,
			     const uint8_t digest[FY_DIGEST_LEN])
{
	uint64_t size;

	if (pack_block_stat(st, digest, &size))
		return -ENOENT;
	return pack_block_forget(st, (const uint8_t (*)[FY_DIGEST_LEN])digest,
				 1);
}

static int pack_block_locate(struct fy_store *st,
			     const uint8_t digest[FY_DIGEST_LEN], char *path,
			     size_t pathlen, uint64_t *offset,
			     uint64_t *length)
{
	struct fy_index_loc loc;

	if (!fy_index_lookup(to_pack(st)->ix, digest, &loc))
		return -ENOENT;
	*offset = loc.offset;
	*length = loc.length;
	return fy_pack_path(to_pack(st)->packs_dir, loc.pack, path, pathlen);
}

/* ---- manifests: as in format 1 ----------------------------------------- */

static int pack_manifest_put(struct fy_store *st, const char *tmp_path,
			     const char *id)
{
	struct pack_store *ps = to_pack(st);
	struct fy_store *m = ps->manifests;
	int rc;

	/* Format 3: listed only once the bucket has it. */
	if (ps->remote) {
		rc = m->ops->manifest_exists(m, id);
		if (rc != -ENOENT)
			return rc ? rc : fy_err_set(-EEXIST, "backup %s "
						    "exists", id);
		rc = ps->remote->manifest_put(ps->remote->ctx, id, tmp_path);
		if (rc)
			return rc;
	}
	return m->ops->manifest_put(m, tmp_path, id);
}

static int pack_manifest_open(struct fy_store *st, const char *id,
			      struct fy_manifest **out)
{
	struct fy_store *m = to_pack(st)->manifests;

	return m->ops->manifest_open(m, id, out);
}

static int pack_manifest_exists(struct fy_store *st, const char *id)
{
	struct fy_store *m = to_pack(st)->manifests;

	return m->ops->manifest_exists(m, id);
}

static int pack_manifest_list(struct fy_store *st, fy_id_cb cb, void *opaque)
{
	struct fy_store *m = to_pack(st)->manifests;

	return m->ops->manifest_list(m, cb, opaque);
}

static int pack_manifest_delete(struct fy_store *st, const char *id)
{
	struct pack_store *ps = to_pack(st);
	struct fy_store *m = ps->manifests;
	int rc;

	if (ps->remote) {
		rc = ps->remote->manifest_delete(ps->remote->ctx, id);
		if (rc && rc != -ENOENT)
			return rc;
	}
	return m->ops->manifest_delete(m, id);
}

/* Sessions make their packs durable at commit. */
static int pack_sync(struct fy_store *st)
{
	(void)st;
	return 0;
}

static void pack_close(struct fy_store *st)
{
	struct pack_store *ps = to_pack(st);

	if (!ps)
		return;
	pthread_mutex_lock(&ps->up_lock);
	ps->up_stop = true;
	pthread_cond_broadcast(&ps->up_cond);
	pthread_mutex_unlock(&ps->up_lock);
	while (ps->n_up)
		pthread_join(ps->up_threads[--ps->n_up], NULL);
	pthread_mutex_destroy(&ps->up_lock);
	pthread_cond_destroy(&ps->up_cond);
	/* Save what was added, so the next open reads fewer trailers. */
	fy_index_close(ps->ix, true);
	if (ps->manifests)
		ps->manifests->ops->close(ps->manifests);
	if (ps->remote)
		ps->remote->close(ps->remote->ctx);
	pthread_mutex_destroy(&ps->refresh_lock);
	free(ps);
}

static void pack_release(struct fy_store *st)
{
	struct pack_store *ps = to_pack(st);

	if (ps->remote && ps->remote->release)
		ps->remote->release(ps->remote->ctx);
}

static const struct fy_store_ops pack_ops = {
	.name = "packs",
	.block_put = pack_block_put,
	.block_get = pack_block_get,
	.block_stat = pack_block_stat,
	.block_list = pack_block_list,
	.block_delete = pack_block_delete,
	.manifest_put = pack_manifest_put,
	.manifest_open = pack_manifest_open,
	.manifest_exists = pack_manifest_exists,
	.manifest_list = pack_manifest_list,
	.manifest_delete = pack_manifest_delete,
	.sync = pack_sync,
	.close = pack_close,
	.session_begin = pack_session_begin,
	.session_put = pack_session_put,
	.session_commit = pack_session_commit,
	.session_end = pack_session_end,
	.refresh = pack_refresh,
	.collect = pack_collect,
	.block_forget = pack_block_forget,
	.block_locate = pack_block_locate,
	.release = pack_release,
};

int fy_store_pack_open(const char *root, const char *tmpdir,
		       struct fy_store **out)
{
	return fy_store_pack_open_remote(root, tmpdir, NULL, out);
}

int fy_store_pack_open_remote(const char *root, const char *tmpdir,
			      const struct fy_pack_remote *remote,
			      struct fy_store **out)
{
	struct pack_store *ps;
	int rc;

	*out = NULL;
	if (strlen(root) > FY_REPO_ROOT_MAX ||
	    strlen(tmpdir) > FY_REPO_ROOT_MAX) {
		if (remote)
			remote->close(remote->ctx);
		return fy_err_set(-ENAMETOOLONG, "repository %s: path too long",
				  root);
	}
	ps = calloc(1, sizeof(*ps));
	if (!ps) {
		if (remote)
			remote->close(remote->ctx);
		return fy_err_set(-ENOMEM, "repository %s: out of memory",
				  root);
	}
	if (remote) {
		ps->remote_ops = *remote;
		ps->remote = &ps->remote_ops;
	}
	ps->base.ops = &pack_ops;
	pthread_mutex_init(&ps->refresh_lock, NULL);
	pthread_mutex_init(&ps->up_lock, NULL);
	pthread_cond_init(&ps->up_cond, NULL);
	strcpy(ps->root, root);
	strcpy(ps->tmpdir, tmpdir);
	(void)fy_path_fmt(ps->packs_dir, sizeof(ps->packs_dir), "%s/packs",
			  root);
	rc = fy_mkdirs(ps->packs_dir, 0755);
	if (!rc) {
		char idx[PATH_MAX];

		(void)fy_path_fmt(idx, sizeof(idx), "%s/index", root);
		rc = fy_mkdirs(idx, 0755);
	}
	if (!rc)
		rc = fy_store_posix_open(root, tmpdir, &ps->manifests);
	if (!rc)
		rc = fy_index_open(root, tmpdir, &ps->ix);
	if (rc) {
		fy_err_wrap(rc, "repository %s", root);
		if (ps->manifests)
			ps->manifests->ops->close(ps->manifests);
		if (ps->remote)
			ps->remote->close(ps->remote->ctx);
		pthread_mutex_destroy(&ps->refresh_lock);
		pthread_mutex_destroy(&ps->up_lock);
		pthread_cond_destroy(&ps->up_cond);
		free(ps);
		return rc;
	}
	ps->last_refresh = now_mono();
	*out = &ps->base;
	return 0;
}
