/*
 * ferry-repo migrate: a format 1 repository (a file per block) becomes a
 * format 2 one (pack files and an index) in place.
 *
 * Under the exclusive lock (no backup runs meanwhile), every block file is
 * copied byte for byte into new packs in tmp/; the packs are made durable
 * and moved into packs/, and the index is written from their trailers.
 * Only then does the config say format 2 (one durable rename): a crash
 * before it leaves a format 1 repository whose block files are untouched
 * (the next run starts over, clearing what the crashed one left); a crash
 * after it leaves a format 2 repository with old block files beside it,
 * which the next run (or nothing: format 2 ignores blocks/) removes.
 *
 * Space: the packs are written before any block file goes, so the file
 * system needs about the size of the blocks free. A damaged block file
 * is named and left out: verify reports the backups that needed it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image_private.h"

struct migrate {
	struct fy_repo *repo;
	struct fy_pack_writer *w;
	uint8_t (*ids)[FY_PACK_ID_LEN];
	size_t nids, cap;
	uint8_t *buf;
	uint64_t blocks, bytes, skipped;
};

static int finish_pack(struct migrate *m)
{
	int rc;

	if (!m->w)
		return 0;
	if (m->nids == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		void *p = realloc(m->ids, cap * FY_PACK_ID_LEN);

		if (!p)
			return fy_err_set(-ENOMEM, "migrate: out of memory");
		m->ids = p;
		m->cap = cap;
	}
	rc = fy_pack_finish(m->w);
	if (rc)
		return rc;
	memcpy(m->ids[m->nids++], fy_pack_writer_id(m->w), FY_PACK_ID_LEN);
	fy_pack_writer_free(m->w);
	m->w = NULL;
	return 0;
}

static int copy_block(void *opaque, const uint8_t digest[FY_DIGEST_LEN])
{
	struct migrate *m = opaque;
	uint8_t hdr[FY_BLOCK_HDR_LEN];
	enum fy_codec codec;
	uint32_t plain;
	size_t len;
	int rc;

	/* Checks the header and size; the object is copied unchanged (its
	 * header is a function of what the check returns). */
	rc = fy_repo_block_get(m->repo, digest, &codec, &plain, m->buf,
			       FY_STORED_MAX, &len);
	if (rc == -EBADMSG) {
		fy_warn("migrate: leaving out a damaged block: %s",
			fy_err_msg());
		m->skipped++;
		return 0;
	}
	if (!rc)
		rc = fy_block_header(digest, codec, plain, len, hdr);
	if (rc)
		return rc;
	if (!m->w) {
		rc = fy_pack_create(m->repo->tmpdir, &m->w);
		if (rc)
			return rc;
	}
	rc = fy_pack_append(m->w, digest, hdr, sizeof(hdr), m->buf, len);
	if (rc)
		return rc;
	m->blocks++;
	m->bytes += sizeof(hdr) + len;
	if (fy_pack_writer_full(m->w))
		return finish_pack(m);
	return 0;
}

/* packs/<xx>/ from tmp/, durably. */
static int move_packs(struct migrate *m, const char *packs_dir)
{
	size_t i;
	int rc;

	for (i = 0; i < m->nids; i++) {
		rc = fy_pack_move_in(m->repo->tmpdir, packs_dir, m->ids[i]);
		if (rc)
			return fy_err_wrap(rc, "migrate");
	}
	return fy_fsync_dir(packs_dir);
}

static int clear_tree(const char *path)
{
	uint64_t removed = 0, failed = 0;
	int rc;

	rc = fy_clear_dir(path, &removed, &failed);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	if (failed)
		return fy_err_set(-EIO, "migrate: %" PRIu64 " entries of %s "
				  "could not be removed", failed, path);
	return 0;
}

/* The rest of an earlier run, on a repository already in format 2. */
static int remove_old_blocks(struct fy_repo *repo, FILE *out)
{
	char blocks[PATH_MAX];
	struct stat sb;
	int rc;

	rc = fy_path_fmt(blocks, sizeof(blocks), "%s/blocks", repo->root);
	if (rc)
		return rc;
	if (stat(blocks, &sb)) {
		if (out)
			fprintf(out, "migrate: %s is already in format %d\n",
				repo->root, FY_REPO_VERSION_PACKS);
		return 0;
	}
	rc = clear_tree(blocks);
	if (!rc && rmdir(blocks))
		rc = fy_err_set(-errno, "migrate: rmdir %s: %s", blocks,
				strerror(errno));
	if (!rc)
		rc = fy_fsync_dir(repo->root);
	if (!rc && out)
		fprintf(out, "migrate: removed the format 1 block files of "
			"%s\n", repo->root);
	return rc;
}

/* A running server keeps the format it opened: it would go on writing
 * block files into a repository that now reads packs. */
static int no_server(struct fy_repo *repo)
{
	char path[PATH_MAX];
	int fd, rc;

	rc = fy_path_fmt(path, sizeof(path), "%s/serve.lock", repo->root);
	if (rc)
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return fy_err_set(-errno, "migrate: %s: %s", path,
				  strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		rc = errno == EWOULDBLOCK
			     ? fy_err_set(-EBUSY, "migrate: a ferry-repo server "
					  "is serving %s; stop it first",
					  repo->root)
			     : fy_err_set(-errno, "migrate: lock %s: %s", path,
					  strerror(errno));
		close(fd);
		return rc;
	}
	close(fd);
	return 0;
}

int fy_repo_migrate(const char *root, FILE *out)
{
	struct migrate m = { 0 };
	struct fy_repo *repo = NULL;
	struct fy_index *ix = NULL;
	char packs[PATH_MAX], index[PATH_MAX], config[128];
	char bytes[32];
	int lock = -1, rc, n;

	rc = fy_repo_open(root, 0, &repo);
	if (rc)
		return rc;
	rc = no_server(repo);
	if (rc)
		goto out;
	lock = fy_repo_lock_as(repo, true, "migrate");
	if (lock < 0) {
		rc = lock;
		goto out;
	}
	if (repo->version == FY_REPO_VERSION_S3) {
		rc = fy_err_set(-EINVAL, "migrate: %s is a format %d repository "
				"(in a bucket); nothing to migrate", root,
				FY_REPO_VERSION_S3);
		goto out;
	}
	if (repo->version == FY_REPO_VERSION_PACKS) {
		rc = remove_old_blocks(repo, out);
		goto out;
	}
	m.repo = repo;
	m.buf = malloc(FY_STORED_MAX);
	if (!m.buf) {
		rc = fy_err_set(-ENOMEM, "migrate: out of memory");
		goto out;
	}
	rc = fy_path_fmt(packs, sizeof(packs), "%s/packs", root);
	if (!rc)
		rc = fy_path_fmt(index, sizeof(index), "%s/index", root);
	if (rc)
		goto out;
	/* What a crashed run left: format 1 never reads these. */
	rc = clear_tree(packs);
	if (!rc)
		rc = clear_tree(index);
	if (!rc)
		rc = clear_tree(repo->tmpdir);
	if (!rc)
		rc = fy_mkdirs(packs, 0755);
	if (!rc)
		rc = fy_mkdirs(index, 0755);
	if (rc)
		goto fail;

	rc = repo->store->ops->block_list(repo->store, copy_block, &m);
	if (!rc)
		rc = finish_pack(&m);
	if (!rc)
		rc = move_packs(&m, packs);
	/* The index from the packs' trailers, written and checked. */
	if (!rc)
		rc = fy_index_open(root, repo->tmpdir, &ix);
	if (!rc)
		rc = fy_index_rewrite(ix, NULL, NULL, NULL);
	if (!rc && fy_index_count(ix) != m.blocks)
		rc = fy_err_set(-EIO, "migrate: the new index holds %" PRIu64
				" blocks, %" PRIu64 " were copied",
				fy_index_count(ix), m.blocks);
	fy_index_close(ix, false);
	if (rc)
		goto fail;

	/* The switch. */
	n = snprintf(config, sizeof(config), "%s %d\nid=%s\n",
		     FY_REPO_CONFIG_LINE, FY_REPO_VERSION_PACKS, repo->id);
	rc = fy_write_durable(repo->tmpdir, root, "config", config, (size_t)n,
			      true);
	if (rc) {
		fy_err_wrap(rc, "migrate: writing the new config");
		goto fail;
	}
	fy_format_bytes(m.bytes, bytes, sizeof(bytes));
	if (out)
		fprintf(out, "migrate: %s is now in format %d: %" PRIu64
			" blocks (%s) in %zu packs%s\n", root,
			FY_REPO_VERSION_PACKS, m.blocks, bytes, m.nids,
			m.skipped ? "; damaged blocks were left out (run "
				    "verify)" : "");
	repo->version = FY_REPO_VERSION_PACKS;
	rc = remove_old_blocks(repo, out);
	goto out;
fail:
	/* Still format 1, block files untouched: take back what was made. */
	fy_pack_discard(m.w);
	m.w = NULL;
	{
		char msg[FY_ERR_MAX];

		snprintf(msg, sizeof(msg), "%s", fy_err_msg());
		clear_tree(packs);
		clear_tree(index);
		clear_tree(repo->tmpdir);
		fy_err_set(rc, "%s; the repository is unchanged (format %d)",
			   msg, FY_REPO_VERSION_BLOCKS);
	}
out:
	fy_pack_discard(m.w);
	free(m.ids);
	free(m.buf);
	fy_repo_unlock(lock);
	fy_repo_close(repo);
	return rc;
}

static int count_block(void *opaque, const uint8_t digest[FY_DIGEST_LEN])
{
	(void)digest;
	(*(uint64_t *)opaque)++;
	return 0;
}

int fy_repo_rebuild(const char *root, FILE *out)
{
	struct fy_repo *repo = NULL;
	uint64_t backups = 0, blocks = 0;
	char (*ids)[FY_ID_MAX] = NULL;
	size_t n = 0;
	int lock, rc;

	rc = fy_repo_open(root, FY_REPO_CONFIG_ONLY, &repo);
	if (rc)
		return rc;
	if (repo->version != FY_REPO_VERSION_S3) {
		rc = fy_err_set(-EINVAL, "rebuild-cache: %s is a format %u "
				"repository: only a repository in a bucket "
				"(format %d) has a cache", root, repo->version,
				FY_REPO_VERSION_S3);
		goto out;
	}
	rc = no_server(repo);
	if (rc)
		goto out;
	lock = fy_repo_lock_as(repo, true, "rebuild-cache");
	if (lock < 0) {
		rc = lock;
		goto out;
	}
	rc = fy_repo_rebuild_cache(root);
	fy_repo_unlock(lock);
	fy_repo_close(repo);
	repo = NULL;
	/* Opening it again builds the cache: the bucket is listed, each
	 * pack's trailer and each manifest fetched, the index written. */
	if (!rc)
		rc = fy_repo_open(root, 0, &repo);
	if (!rc)
		rc = fy_repo_list_ids(repo, &ids, &n);
	if (!rc) {
		backups = n;
		rc = repo->store->ops->block_list(repo->store, count_block,
						  &blocks);
	}
	if (!rc) {
		if (out)
			fprintf(out, "rebuilt the cache of %s from its bucket: "
				"%" PRIu64 " backups, %" PRIu64 " blocks\n",
				root, backups, blocks);
	}
	free(ids);
out:
	fy_repo_close(repo);
	return rc ? fy_err_wrap(rc, "rebuild-cache") : 0;
}
