/*
 * gc: delete the blocks no backup references.
 *
 * A running backup writes blocks before its manifest exists, so gc holds
 * the exclusive repository lock (backups hold it shared) from before it
 * reads the manifests until it has deleted. With it held no session can
 * be live, so tmp/ is cleared too.
 *
 * Cost: the referenced set (refs.c: 32 bytes per distinct referenced
 * block, ~320 MB per 10 million), one read of every manifest, and one
 * directory walk of the block store with a lookup per stored block; blocks
 * themselves are never read.
 *
 * An unreadable manifest stops gc: its blocks cannot be told apart from
 * garbage, and deleting them would make a repair impossible.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "image/image_private.h"

struct gc {
	struct fy_repo *repo;
	const struct fy_digest_set *refs;
	struct fy_gc_result *res;
	bool dry_run;
	uint64_t found; /* referenced blocks that are stored */
};

static int gc_block(void *opaque, const uint8_t digest[FY_DIGEST_LEN])
{
	struct gc *g = opaque;
	struct fy_store *st = g->repo->store;
	uint64_t size = 0;
	int rc;

	g->res->stored++;
	if (fy_digest_set_contains(g->refs, digest)) {
		g->found++;
		return 0;
	}
	rc = st->ops->block_stat(st, digest, &size);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	if (!g->dry_run) {
		rc = st->ops->block_delete(st, digest);
		if (rc == -ENOENT)
			return 0;
		if (rc)
			return rc;
	}
	g->res->deleted++;
	g->res->bytes_freed += size;
	return 0;
}

int fy_repo_gc(struct fy_repo *repo, bool dry_run, FILE *out,
	       struct fy_gc_result *res)
{
	struct fy_digest_set refs;
	struct gc g = { .repo = repo, .refs = &refs, .res = res,
			.dry_run = dry_run };
	uint64_t backups = 0, removed = 0, failed = 0;
	char freed[32];
	int lock, rc;

	memset(res, 0, sizeof(*res));
	fy_digest_set_init(&refs);
	lock = fy_repo_lock_as(repo, true, "gc");
	if (lock < 0)
		return lock;

	rc = fy_repo_collect_refs(repo, &refs, NULL, NULL, &backups);
	if (rc) {
		fy_err_wrap(rc, "gc: refusing to delete blocks while a "
			    "manifest cannot be read");
		goto out;
	}
	res->referenced = refs.count;
	if (repo->store->ops->collect)
		rc = repo->store->ops->collect(repo->store, &refs, dry_run,
					       res);
	else
		rc = repo->store->ops->block_list(repo->store, gc_block, &g);
	if (rc) {
		fy_err_wrap(rc, "gc");
		goto out;
	}
	if (!dry_run) {
		rc = fy_clear_dir(repo->tmpdir, &removed, &failed);
		if (!rc)
			rc = fy_repo_sync(repo);
		if (rc) {
			fy_err_wrap(rc, "gc");
			goto out;
		}
	}
	if (repo->store->ops->collect)
		g.found = res->stored - res->deleted;
	if (g.found < res->referenced)
		fy_warn("gc: %" PRIu64 " referenced blocks are missing; run "
			"verify to see which backups are damaged",
			res->referenced - g.found);
	if (out) {
		fy_format_bytes(res->bytes_freed, freed, sizeof(freed));
		fprintf(out,
			"gc: %" PRIu64 " backups reference %" PRIu64
			" blocks; %" PRIu64 " stored; %s %" PRIu64
			" unreferenced blocks (%s)\n",
			backups, res->referenced, res->stored,
			dry_run ? "would delete" : "deleted", res->deleted,
			freed);
		if (res->packs) {
			char written[32];

			fy_format_bytes(res->bytes_written, written,
					sizeof(written));
			fprintf(out,
				"gc: %" PRIu64 " packs; %s %" PRIu64
				" without a referenced block and repack%s %"
				PRIu64 " mostly unreferenced ones (%s copied "
				"into %" PRIu64 " new packs)\n",
				res->packs, dry_run ? "would delete" : "deleted",
				res->packs_deleted, dry_run ? "" : "ed",
				res->packs_repacked, written,
				res->packs_written);
		}
		if (res->packs_retained)
			fprintf(out, "gc: %" PRIu64 " packs with unreferenced "
				"blocks kept: Object Lock retention still "
				"protects them (a later gc deletes them)\n",
				res->packs_retained);
		if (res->packs_found)
			fprintf(out, "gc: %" PRIu64 " packs were in the "
				"bucket but not in the cache (a backup that "
				"stopped before its commit); now seen\n",
				res->packs_found);
		if (res->uploads_aborted)
			fprintf(out, "gc: aborted %" PRIu64 " unfinished "
				"multipart uploads\n", res->uploads_aborted);
		if (res->retention_extended)
			fprintf(out, "gc: extended the Object Lock retention "
				"of %" PRIu64 " objects kept backups still "
				"need\n", res->retention_extended);
		if (removed)
			fprintf(out, "gc: removed %" PRIu64
				" temporary files\n", removed);
	}
out:
	fy_repo_unlock(lock);
	fy_digest_set_release(&refs);
	return rc;
}
