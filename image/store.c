/*
 * The POSIX directory store: the first implementation of the store table
 * (image_private.h). Blocks are files under root/blocks/ab/cd/<digest>,
 * manifests under root/backups/<id>.manifest; new objects are written to
 * root/tmp and renamed into place, so a reader never sees half an object.
 *
 * It keeps no state but paths, so any number of threads may use it at
 * once: temporary names come from mkostemp, and two threads putting the
 * same block both rename identical content over the same name.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image_private.h"

#define MANIFEST_SUFFIX ".manifest"

struct posix_store {
	struct fy_store base;
	char blocks[PATH_MAX];
	char backups[PATH_MAX];
	char tmpdir[PATH_MAX];
	int root_fd; /* for syncfs */
};

static struct posix_store *to_posix(struct fy_store *st)
{
	return (struct posix_store *)st;
}

static void block_path(struct posix_store *ps,
		       const uint8_t digest[FY_DIGEST_LEN], char *path,
		       size_t len)
{
	char hex[FY_DIGEST_HEX];

	fy_digest_hex(digest, hex);
	/* fy_store_posix_open bounded the root, so this always fits. */
	(void)fy_path_fmt(path, len, "%s/%.2s/%.2s/%s", ps->blocks, hex,
			  hex + 2, hex);
}

static int manifest_path(struct posix_store *ps, const char *id, char *path,
			 size_t len)
{
	int rc = fy_id_check("backup id", id);

	if (rc)
		return rc;
	return fy_path_fmt(path, len, "%s/%s" MANIFEST_SUFFIX, ps->backups,
			   id);
}

static int mkdir_one(const char *path)
{
	if (mkdir(path, 0755) && errno != EEXIST)
		return fy_err_set(-errno, "block store: mkdir %s: %s", path,
				  strerror(errno));
	return 0;
}

/* Creates blocks/ab and blocks/ab/cd for path (blocks/ab/cd/<hex>). */
static int make_block_dirs(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	int rc;

	strcpy(dir, path); /* both PATH_MAX */
	slash = strrchr(dir, '/');
	*slash = 0;
	slash = strrchr(dir, '/');
	*slash = 0;
	rc = mkdir_one(dir);
	if (rc)
		return rc;
	*slash = '/';
	return mkdir_one(dir);
}

static int posix_block_stat(struct fy_store *st,
			    const uint8_t digest[FY_DIGEST_LEN], uint64_t *size)
{
	char path[PATH_MAX];
	struct stat sb;

	block_path(to_posix(st), digest, path, sizeof(path));
	if (stat(path, &sb)) {
		if (errno == ENOENT)
			return -ENOENT;
		return fy_err_set(-errno, "block store: %s: %s", path,
				  strerror(errno));
	}
	*size = (uint64_t)sb.st_size;
	return 0;
}

static int rename_block(const char *tmp, const char *path)
{
	int rc;

	if (!rename(tmp, path))
		return 0;
	if (errno == ENOENT) {
		/* Directories are made when the first block needs them. */
		rc = make_block_dirs(path);
		if (rc)
			return rc;
		if (!rename(tmp, path))
			return 0;
	}
	return fy_err_set(-errno, "block store: rename %s to %s: %s", tmp,
			  path, strerror(errno));
}

/* Writes a block file's header and data and makes them durable. The
 * content is durable before the name appears; the name itself becomes
 * durable at the next sync (syncfs), before any manifest that references
 * it is committed. */
static int write_synced(int fd, const void *hdr, size_t hdrlen,
			const void *data, size_t len, const char *what)
{
	int rc = fy_write_all(fd, hdr, hdrlen);

	if (!rc && len)
		rc = fy_write_all(fd, data, len);
	if (rc)
		return fy_err_wrap(rc, "block store: %s", what);
	if (fsync(fd))
		return fy_err_set(-errno, "block store: fsync for %s: %s", what,
				  strerror(errno));
	return 0;
}

/*
 * Writes a block as an unnamed file in its final directory (O_TMPFILE),
 * fsyncs it, then links it under its name: it appears whole or not at
 * all, and a crash leaves nothing behind to clean (an unnamed file is
 * freed by the file system). Creating the inode in its own directory also
 * spreads inodes over the file system instead of crowding the block group
 * of tmp/, whose recently freed inodes ext4 scans past one by one.
 * -EOPNOTSUPP when the file system cannot: the caller uses tmp/ and rename.
 */
static int put_unnamed(struct posix_store *ps,
		       const uint8_t digest[FY_DIGEST_LEN], const void *hdr,
		       size_t hdrlen, const void *data, size_t len)
{
	char path[PATH_MAX], dir[PATH_MAX], proc[64];
	char *slash;
	int fd, rc;

	block_path(ps, digest, path, sizeof(path));
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		return -EOPNOTSUPP;
	*slash = 0;
	fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ENOENT) {
		/* Directories are made when the first block needs them. */
		rc = make_block_dirs(path);
		if (rc)
			return rc;
		fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	}
	if (fd < 0) {
		if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)
			return -EOPNOTSUPP;
		return fy_err_set(-errno, "block store: unnamed file in %s: %s",
				  dir, strerror(errno));
	}
	rc = write_synced(fd, hdr, hdrlen, data, len, path);
	if (rc)
		goto out;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW)) {
		if (errno == EEXIST)
			rc = 0; /* another session stored the same block */
		else if (errno == ENOENT && access("/proc/self/fd", F_OK))
			rc = -EOPNOTSUPP; /* no /proc: use tmp/ and rename */
		else
			rc = fy_err_set(-errno, "block store: link %s: %s",
					path, strerror(errno));
	}
out:
	close(fd);
	return rc;
}

static int posix_block_put(struct fy_store *st,
			   const uint8_t digest[FY_DIGEST_LEN], const void *hdr,
			   size_t hdrlen, const void *data, size_t len)
{
	struct posix_store *ps = to_posix(st);
	char path[PATH_MAX], tmp[PATH_MAX];
	uint64_t size;
	int fd = -1, rc;

	rc = posix_block_stat(st, digest, &size);
	if (rc != -ENOENT)
		return rc; /* 0: already stored */

	rc = put_unnamed(ps, digest, hdr, hdrlen, data, len);
	if (rc != -EOPNOTSUPP)
		return rc;
	rc = fy_path_fmt(tmp, sizeof(tmp), "%s/block.XXXXXX", ps->tmpdir);
	if (rc)
		return rc;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = fy_err_set(-errno, "block store: temporary file in %s: %s",
				ps->tmpdir, strerror(errno));
		tmp[0] = 0;
		goto out;
	}
	rc = write_synced(fd, hdr, hdrlen, data, len, tmp);
	if (rc)
		goto out;
	rc = close(fd);
	fd = -1;
	if (rc) {
		rc = fy_err_set(-errno, "block store: close %s: %s", tmp,
				strerror(errno));
		goto out;
	}
	block_path(ps, digest, path, sizeof(path));
	rc = rename_block(tmp, path);
	if (rc)
		goto out;
	tmp[0] = 0;
out:
	if (fd >= 0)
		close(fd);
	if (tmp[0])
		unlink(tmp);
	return rc;
}

/* Reads up to len bytes at off; fewer only at the end of the file. */
static ssize_t read_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + got, len - got,
				  (off_t)(off + got));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int posix_block_get(struct fy_store *st,
			   const uint8_t digest[FY_DIGEST_LEN], void *hdr,
			   size_t hdrlen, void *buf, size_t bufcap,
			   uint64_t *size)
{
	char path[PATH_MAX];
	struct stat sb;
	ssize_t n;
	int fd, rc = 0;

	block_path(to_posix(st), digest, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		return fy_err_set(-errno, "block store: %s: %s", path,
				  strerror(errno));
	}
	if (fstat(fd, &sb)) {
		rc = fy_err_set(-errno, "block store: %s: %s", path,
				strerror(errno));
		goto out;
	}
	*size = (uint64_t)sb.st_size;
	if (*size < hdrlen)
		goto out; /* the caller rejects the size */
	/* The header is read even when the data would not fit, so that the
	 * caller can say what is wrong with the block. */
	n = read_full(fd, hdr, hdrlen, 0);
	if (n < 0)
		goto fail;
	if ((size_t)n < hdrlen) {
		*size = (uint64_t)n; /* shrank under us */
		goto out;
	}
	if (*size - hdrlen > bufcap)
		goto out;
	n = read_full(fd, buf, (size_t)(*size - hdrlen), hdrlen);
	if (n < 0)
		goto fail;
	*size = hdrlen + (uint64_t)n;
	goto out;
fail:
	rc = fy_err_set((int)n, "block store: read %s: %s", path,
			strerror((int)-n));
out:
	close(fd);
	return rc;
}

static int posix_block_delete(struct fy_store *st,
			      const uint8_t digest[FY_DIGEST_LEN])
{
	char path[PATH_MAX];

	block_path(to_posix(st), digest, path, sizeof(path));
	if (unlink(path)) {
		int rc = -errno;

		if (rc == -ENOENT)
			return rc;
		return fy_err_set(rc, "block store: unlink %s: %s", path,
				  strerror(-rc));
	}
	return 0;
}

static bool is_hex_name(const char *name, size_t len)
{
	size_t i;

	if (strlen(name) != len)
		return false;
	for (i = 0; i < len; i++)
		if (!((name[i] >= '0' && name[i] <= '9') ||
		      (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return true;
}

/* Lists the entries of dir named by len lower-case hex characters and of
 * type (DT_DIR or DT_REG; DT_UNKNOWN passes, open or read will tell);
 * stops on a non-zero return of each. */
static int walk_hex(const char *dir, size_t len, unsigned char type,
		    int (*each)(void *ctx, const char *path, const char *name),
		    void *ctx)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	d = opendir(dir);
	if (!d)
		return fy_err_set(-errno, "block store: %s: %s", dir,
				  strerror(errno));
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno)
				rc = fy_err_set(-errno,
						"block store: read %s: %s", dir,
						strerror(errno));
			break;
		}
		if (!is_hex_name(de->d_name, len) ||
		    (de->d_type != type && de->d_type != DT_UNKNOWN))
			continue;
		rc = fy_path_fmt(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (rc)
			break;
		rc = each(ctx, path, de->d_name);
		if (rc)
			break;
	}
	closedir(d);
	return rc;
}

struct list_ctx {
	fy_digest_cb cb;
	void *opaque;
	char prefix[5]; /* the ab/cd of the directory walked */
};

static int list_file(void *ctx, const char *path, const char *name)
{
	struct list_ctx *lc = ctx;
	uint8_t digest[FY_DIGEST_LEN];

	/* A file in the wrong directory is not a block we may name. */
	if (memcmp(name, lc->prefix, 4) || !fy_digest_unhex(name, digest)) {
		fy_debug("block store: ignoring stray %s", path);
		return 0;
	}
	return lc->cb(lc->opaque, digest);
}

static int list_level2(void *ctx, const char *path, const char *name)
{
	struct list_ctx *lc = ctx;

	memcpy(lc->prefix + 2, name, 2);
	return walk_hex(path, 2 * FY_DIGEST_LEN, DT_REG, list_file, lc);
}

static int list_level1(void *ctx, const char *path, const char *name)
{
	struct list_ctx *lc = ctx;

	memcpy(lc->prefix, name, 2);
	return walk_hex(path, 2, DT_DIR, list_level2, lc);
}

static int posix_block_list(struct fy_store *st, fy_digest_cb cb,
			    void *opaque)
{
	struct list_ctx lc = { .cb = cb, .opaque = opaque };

	return walk_hex(to_posix(st)->blocks, 2, DT_DIR, list_level1, &lc);
}

static int posix_manifest_put(struct fy_store *st, const char *tmp_path,
			      const char *id)
{
	struct posix_store *ps = to_posix(st);
	char path[PATH_MAX];
	int rc;

	rc = manifest_path(ps, id, path, sizeof(path));
	if (rc)
		return rc;
	/* Never replace a committed backup, even with a same-named one. */
	if (renameat2(AT_FDCWD, tmp_path, AT_FDCWD, path, RENAME_NOREPLACE)) {
		if (errno != EINVAL && errno != ENOSYS)
			goto fail;
		/* A filesystem without RENAME_NOREPLACE: link refuses an
		 * existing name too. */
		if (link(tmp_path, path))
			goto fail;
		unlink(tmp_path);
	}
	return fy_fsync_dir(ps->backups);
fail:
	rc = -errno;
	if (rc == -EEXIST)
		return fy_err_set(rc, "backup %s already exists", id);
	return fy_err_set(rc, "commit of backup %s: rename %s to %s: %s", id,
			  tmp_path, path, strerror(-rc));
}

static int posix_manifest_open(struct fy_store *st, const char *id,
			       struct fy_manifest **out)
{
	char path[PATH_MAX];
	int rc;

	*out = NULL;
	rc = manifest_path(to_posix(st), id, path, sizeof(path));
	if (rc)
		return rc;
	rc = fy_manifest_open(path, out);
	if (rc == -ENOENT)
		return fy_err_set(rc, "no backup %s", id);
	return rc;
}

static int posix_manifest_exists(struct fy_store *st, const char *id)
{
	char path[PATH_MAX];
	struct stat sb;
	int rc;

	rc = manifest_path(to_posix(st), id, path, sizeof(path));
	if (rc)
		return rc;
	if (stat(path, &sb)) {
		if (errno == ENOENT)
			return -ENOENT;
		return fy_err_set(-errno, "%s: %s", path, strerror(errno));
	}
	return 0;
}

static int posix_manifest_list(struct fy_store *st, fy_id_cb cb,
			       void *opaque)
{
	struct posix_store *ps = to_posix(st);
	const size_t suffix = strlen(MANIFEST_SUFFIX);
	char id[FY_ID_MAX];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	d = opendir(ps->backups);
	if (!d)
		return fy_err_set(-errno, "%s: %s", ps->backups,
				  strerror(errno));
	for (;;) {
		size_t len;

		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno)
				rc = fy_err_set(-errno, "read %s: %s",
						ps->backups, strerror(errno));
			break;
		}
		len = strlen(de->d_name);
		if (len <= suffix || len - suffix >= FY_ID_MAX ||
		    strcmp(de->d_name + len - suffix, MANIFEST_SUFFIX))
			continue;
		memcpy(id, de->d_name, len - suffix);
		id[len - suffix] = 0;
		if (!fy_id_valid(id))
			continue;
		rc = cb(opaque, id);
		if (rc)
			break;
	}
	closedir(d);
	return rc;
}

static int posix_manifest_delete(struct fy_store *st, const char *id)
{
	struct posix_store *ps = to_posix(st);
	char path[PATH_MAX];
	int rc;

	rc = manifest_path(ps, id, path, sizeof(path));
	if (rc)
		return rc;
	if (unlink(path)) {
		rc = -errno;
		if (rc == -ENOENT)
			return fy_err_set(rc, "no backup %s", id);
		return fy_err_set(rc, "delete of backup %s: %s", id,
				  strerror(-rc));
	}
	return fy_fsync_dir(ps->backups);
}

static int posix_sync(struct fy_store *st)
{
	struct posix_store *ps = to_posix(st);

	/* One syncfs makes every block written since the last one durable,
	 * names included, far cheaper than an fsync per directory. */
	if (syncfs(ps->root_fd))
		return fy_err_set(-errno, "block store: syncfs: %s",
				  strerror(errno));
	return 0;
}

static void posix_close(struct fy_store *st)
{
	struct posix_store *ps = to_posix(st);

	if (!ps)
		return;
	if (ps->root_fd >= 0)
		close(ps->root_fd);
	free(ps);
}

/* Format 1 has no sessions of its own: a block is visible as soon as it
 * is renamed into place, and a failed backup's blocks stay for gc. */
struct posix_session {
	struct fy_store *st;
};

static int posix_session_begin(struct fy_store *st,
			       struct fy_store_session **out)
{
	struct posix_session *s = calloc(1, sizeof(*s));

	if (!s)
		return fy_err_set(-ENOMEM, "out of memory");
	s->st = st;
	*out = (struct fy_store_session *)s;
	return 0;
}

static int posix_session_put(struct fy_store_session *ss,
			     const uint8_t digest[FY_DIGEST_LEN],
			     const void *hdr, size_t hdrlen, const void *data,
			     size_t len)
{
	struct posix_session *s = (struct posix_session *)ss;

	return posix_block_put(s->st, digest, hdr, hdrlen, data, len);
}

static int posix_session_commit(struct fy_store_session *ss)
{
	return posix_sync(((struct posix_session *)ss)->st);
}

static void posix_session_end(struct fy_store_session *ss)
{
	free(ss);
}

static int posix_block_forget(struct fy_store *st,
			      const uint8_t (*digests)[FY_DIGEST_LEN], size_t n)
{
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		rc = posix_block_delete(st, digests[i]);
		if (rc && rc != -ENOENT)
			return rc;
	}
	return 0;
}

static int posix_block_locate(struct fy_store *st,
			      const uint8_t digest[FY_DIGEST_LEN], char *path,
			      size_t pathlen, uint64_t *offset,
			      uint64_t *length)
{
	int rc = posix_block_stat(st, digest, length);

	if (rc)
		return rc;
	block_path(to_posix(st), digest, path, pathlen);
	*offset = 0;
	return 0;
}

static const struct fy_store_ops posix_ops = {
	.name = "posix",
	.block_put = posix_block_put,
	.block_get = posix_block_get,
	.block_stat = posix_block_stat,
	.block_list = posix_block_list,
	.block_delete = posix_block_delete,
	.manifest_put = posix_manifest_put,
	.manifest_open = posix_manifest_open,
	.manifest_exists = posix_manifest_exists,
	.manifest_list = posix_manifest_list,
	.manifest_delete = posix_manifest_delete,
	.sync = posix_sync,
	.close = posix_close,
	.session_begin = posix_session_begin,
	.session_put = posix_session_put,
	.session_commit = posix_session_commit,
	.session_end = posix_session_end,
	.block_forget = posix_block_forget,
	.block_locate = posix_block_locate,
};

int fy_store_posix_open(const char *root, const char *tmpdir,
			struct fy_store **out)
{
	struct posix_store *ps;

	*out = NULL;
	if (strlen(root) > FY_REPO_ROOT_MAX ||
	    strlen(tmpdir) > FY_REPO_ROOT_MAX)
		return fy_err_set(-ENAMETOOLONG, "repository %s: path too long",
				  root);
	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return fy_err_set(-ENOMEM, "repository %s: out of memory",
				  root);
	ps->base.ops = &posix_ops;
	/* Bounded above: these fit. */
	(void)fy_path_fmt(ps->blocks, sizeof(ps->blocks), "%s/blocks", root);
	(void)fy_path_fmt(ps->backups, sizeof(ps->backups), "%s/backups",
			  root);
	strcpy(ps->tmpdir, tmpdir);
	ps->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ps->root_fd < 0) {
		int rc = -errno;

		free(ps);
		return fy_err_set(rc, "repository %s: %s", root, strerror(-rc));
	}
	*out = &ps->base;
	return 0;
}
