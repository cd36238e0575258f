/*
 * verify: is every backup still restorable?
 *
 * A block shared by a thousand backups is read once: the referenced
 * digests of all manifests are collected into one sorted set (refs.c; 32
 * bytes per distinct block, ~320 MB per 10 million blocks), then every
 * distinct block is read, decompressed and re-hashed once, in digest order
 * (time: one read of every distinct block plus one read of every
 * manifest). Only when something is bad are the manifests walked a second
 * time, to say which backups are damaged and where.
 *
 * It holds the shared repository lock, so gc cannot delete blocks under it
 * while backups go on.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "image/image_private.h"

/* Bad blocks listed per backup; the rest are counted. */
#define REPORT_MAX 100

struct bad_block {
	uint8_t digest[FY_DIGEST_LEN];
	char *reason; /* NULL: missing */
};

struct verify {
	struct fy_repo *repo;
	FILE *out;
	struct fy_verify_result *res;
	struct bad_block *bad; /* sorted by digest */
	size_t bad_count, bad_cap;
	char (*bad_ids)[FY_ID_MAX]; /* manifests that cannot be read */
	size_t bad_id_count, bad_id_cap;
};

static int note_bad_manifest(void *opaque, const char *id, int rc)
{
	struct verify *v = opaque;

	if (v->bad_id_count == v->bad_id_cap) {
		size_t cap = v->bad_id_cap ? 2 * v->bad_id_cap : 16;
		void *p = realloc(v->bad_ids, cap * sizeof(*v->bad_ids));

		if (!p)
			return fy_err_set(-ENOMEM, "verify: out of memory");
		v->bad_ids = p;
		v->bad_id_cap = cap;
	}
	snprintf(v->bad_ids[v->bad_id_count++], FY_ID_MAX, "%s", id);
	v->res->damaged_backups++;
	if (v->out)
		fprintf(v->out, "damaged backup %s: %s\n", id, fy_err_msg());
	return 0;
}

static int note_bad_block(struct verify *v, const uint8_t *digest,
			  const char *reason)
{
	struct bad_block *b;

	if (v->bad_count == v->bad_cap) {
		size_t cap = v->bad_cap ? 2 * v->bad_cap : 64;
		void *p = realloc(v->bad, cap * sizeof(*v->bad));

		if (!p)
			return fy_err_set(-ENOMEM, "verify: out of memory");
		v->bad = p;
		v->bad_cap = cap;
	}
	b = &v->bad[v->bad_count];
	memcpy(b->digest, digest, FY_DIGEST_LEN);
	b->reason = NULL;
	if (reason) {
		b->reason = strdup(reason);
		if (!b->reason)
			return fy_err_set(-ENOMEM, "verify: out of memory");
	}
	v->bad_count++;
	return 0;
}

/* During the first walk: an unreadable backup still counts as one. */
static int note_unreadable(void *opaque, const char *id, int rc)
{
	struct verify *v = opaque;

	v->res->backups++;
	return note_bad_manifest(v, id, rc);
}

static int cmp_bad(const void *key, const void *elem)
{
	return memcmp(key, ((const struct bad_block *)elem)->digest,
		      FY_DIGEST_LEN);
}

/* The report names the block already: drop "block <hex>: " from reasons. */
static const char *strip_block(const char *msg, const uint8_t *digest)
{
	char prefix[FY_DIGEST_HEX + 16];

	snprintf(prefix, sizeof(prefix), "block ");
	fy_digest_hex(digest, prefix + 6);
	strcat(prefix, ": ");
	if (!strncmp(msg, prefix, strlen(prefix)))
		return msg + strlen(prefix);
	return msg;
}

/* Reads and re-hashes every block of the set, in order, so the bad list
 * comes out sorted. */
static int check_blocks(struct verify *v, const struct fy_digest_set *set)
{
	uint8_t *stored = NULL, *plain = NULL;
	double last = fy_now();
	size_t i;
	int rc = 0;

	stored = malloc(FY_STORED_MAX);
	plain = malloc(FY_BLOCK_MAX);
	if (!stored || !plain) {
		rc = fy_err_set(-ENOMEM, "verify: out of memory");
		goto out;
	}
	for (i = 0; i < set->count; i++) {
		enum fy_codec codec;
		uint32_t plain_size;
		size_t len;

		rc = fy_repo_block_get(v->repo, set->d[i], &codec, &plain_size,
				       stored, FY_STORED_MAX, &len);
		if (!rc)
			rc = fy_block_decode(codec, stored, len, plain_size,
					     set->d[i], plain, FY_BLOCK_MAX);
		v->res->blocks_checked++;
		if (rc == -ENOMEM)
			goto out;
		if (rc == -ENOENT) {
			v->res->blocks_missing++;
			rc = note_bad_block(v, set->d[i], NULL);
		} else if (rc) {
			/* EIO is damage as much as a wrong hash. */
			v->res->blocks_bad++;
			rc = note_bad_block(v, set->d[i],
					    strip_block(fy_err_msg(),
							set->d[i]));
		}
		if (rc)
			goto out;
		if (fy_now() - last >= 30) {
			last = fy_now();
			fy_info("verify: %zu of %zu blocks checked", i + 1,
				set->count);
		}
	}
out:
	free(plain);
	free(stored);
	return rc;
}

struct report {
	struct verify *v;
	const struct fy_manifest *m;
	uint64_t hits;
};

static int report_block(void *opaque, uint32_t disk, uint64_t block,
			const uint8_t digest[FY_DIGEST_LEN])
{
	struct report *r = opaque;
	const struct bad_block *b;
	char hex[FY_DIGEST_HEX];

	b = bsearch(digest, r->v->bad, r->v->bad_count, sizeof(*b), cmp_bad);
	if (!b)
		return 0;
	/* Counted even when not shown: it makes the backup damaged. */
	if (++r->hits > REPORT_MAX || !r->v->out)
		return 0;
	if (r->hits == 1)
		fprintf(r->v->out, "damaged backup %s (source %s):\n",
			r->m->id, r->m->source);
	fy_digest_hex(digest, hex);
	if (b->reason)
		fprintf(r->v->out,
			"  disk %u block %" PRIu64 " %s: corrupt: %s\n", disk,
			block, hex, b->reason);
	else
		fprintf(r->v->out, "  disk %u block %" PRIu64 " %s: missing\n",
			disk, block, hex);
	return 0;
}

static bool is_bad_manifest(const struct verify *v, const char *id)
{
	size_t i;

	for (i = 0; i < v->bad_id_count; i++)
		if (!strcmp(v->bad_ids[i], id))
			return true;
	return false;
}

/* The second walk: which backups use the bad blocks, and where. */
static int report_backups(struct verify *v)
{
	char (*ids)[FY_ID_MAX] = NULL;
	size_t count = 0, i;
	int rc;

	rc = fy_repo_list_ids(v->repo, &ids, &count);
	if (rc)
		return rc;
	for (i = 0; i < count; i++) {
		struct report r = { .v = v };
		struct fy_manifest *m = NULL;

		if (is_bad_manifest(v, ids[i]))
			continue;
		rc = fy_repo_backup_open(v->repo, ids[i], &m);
		if (rc == -ENOENT) {
			rc = 0; /* pruned meanwhile */
			continue;
		}
		if (rc) {
			rc = note_bad_manifest(v, ids[i], rc);
			if (rc)
				break;
			continue;
		}
		r.m = m;
		rc = fy_manifest_for_each(m, report_block, &r);
		fy_manifest_free(m);
		if (rc) {
			fy_err_wrap(rc, "verify: backup %s", ids[i]);
			break;
		}
		if (r.hits > REPORT_MAX && v->out)
			fprintf(v->out, "  ... and %" PRIu64 " more\n",
				r.hits - REPORT_MAX);
		if (r.hits)
			v->res->damaged_backups++;
	}
	free(ids);
	return rc;
}

/* Deletes the corrupt blocks (not the missing ones: nothing to delete). */
static int repair_blocks(struct verify *v)
{
	char hex[FY_DIGEST_HEX];
	size_t i;
	int rc;

	uint8_t (*bad)[FY_DIGEST_LEN] = malloc((v->bad_count + 1) *
					       FY_DIGEST_LEN);
	size_t n = 0;

	if (!bad)
		return fy_err_set(-ENOMEM, "verify --repair: out of memory");
	for (i = 0; i < v->bad_count; i++)
		if (v->bad[i].reason) /* not the missing ones */
			memcpy(bad[n++], v->bad[i].digest, FY_DIGEST_LEN);
	/* One call: format 2 rewrites its index once for all of them. */
	rc = v->repo->store->ops->block_forget(
		v->repo->store, (const uint8_t (*)[FY_DIGEST_LEN])bad, n);
	free(bad);
	if (rc < 0)
		return fy_err_wrap(rc, "verify --repair");
	for (i = 0; i < v->bad_count; i++) {
		if (!v->bad[i].reason)
			continue; /* missing */
		v->res->blocks_deleted++;
		fy_hex(v->bad[i].digest, FY_DIGEST_LEN, hex);
		if (v->out)
			fprintf(v->out, "repair: deleted corrupt block %s; the "
				"next backup holding its data stores it again\n",
				hex);
	}
	return 0;
}

int fy_repo_verify(struct fy_repo *repo, FILE *out,
		   struct fy_verify_result *res)
{
	return fy_repo_verify_ex(repo, out, false, res);
}

int fy_repo_verify_ex(struct fy_repo *repo, FILE *out, bool repair,
		      struct fy_verify_result *res)
{
	struct fy_digest_set set;
	struct verify v = { .repo = repo, .out = out, .res = res };
	size_t i;
	int lock, rc;

	memset(res, 0, sizeof(*res));
	fy_digest_set_init(&set);
	/* Repair deletes blocks: no backup may be told they exist meanwhile. */
	lock = fy_repo_lock(repo, repair);
	if (lock < 0) {
		rc = lock;
		goto out;
	}
	rc = fy_repo_collect_refs(repo, &set, note_unreadable, &v,
				  &res->backups);
	if (rc)
		goto out;
	rc = check_blocks(&v, &set);
	if (rc)
		goto out;
	if (v.bad_count) {
		rc = report_backups(&v);
		if (rc)
			goto out;
		if (repair) {
			rc = repair_blocks(&v);
			if (rc)
				goto out;
		}
	}
	if (out)
		fprintf(out,
			"verify: %" PRIu64 " backups, %" PRIu64
			" blocks checked, %" PRIu64 " corrupt, %" PRIu64
			" missing, %" PRIu64 " damaged backups\n",
			res->backups, res->blocks_checked, res->blocks_bad,
			res->blocks_missing, res->damaged_backups);
out:
	fy_repo_unlock(lock);
	for (i = 0; i < v.bad_count; i++)
		free(v.bad[i].reason);
	free(v.bad);
	free(v.bad_ids);
	fy_digest_set_release(&set);
	return rc;
}
