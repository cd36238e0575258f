/*
 * The repository: its layout and config, the block file format over the
 * store table, backups (committed manifests), and the lock that keeps gc
 * away from running backups. docs/FORMAT.md describes what is on disk.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image/image_private.h"

/* ---- small helpers ----------------------------------------------------- */

bool fy_id_valid(const char *id)
{
	size_t i;

	for (i = 0; id[i]; i++) {
		char c = id[i];

		if (i + 1 >= FY_ID_MAX)
			return false;
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || c == '-'))
			return false;
	}
	return i > 0;
}

int fy_id_check(const char *what, const char *id)
{
	if (!fy_id_valid(id))
		return fy_err_set(-EINVAL,
				  "%s \"%.*s\" is not valid (1 to %d letters, "
				  "digits or '-')",
				  what, FY_ID_MAX, id, FY_ID_MAX - 1);
	return 0;
}

void fy_digest_hex(const uint8_t digest[FY_DIGEST_LEN], char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < FY_DIGEST_LEN; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 15];
	}
	out[2 * FY_DIGEST_LEN] = 0;
}

bool fy_digest_unhex(const char *hex, uint8_t digest[FY_DIGEST_LEN])
{
	size_t i;

	for (i = 0; i < FY_DIGEST_LEN; i++) {
		int hi = fy_hex_digit(hex[2 * i]);
		int lo = hi < 0 ? -1 : fy_hex_digit(hex[2 * i + 1]);

		if (lo < 0)
			return false;
		digest[i] = (uint8_t)(hi << 4 | lo);
	}
	return hex[2 * FY_DIGEST_LEN] == 0;
}

int fy_path_fmt(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len) {
		if (len)
			out[0] = 0;
		return fy_err_set(-ENAMETOOLONG, "path too long (%d bytes)",
				  n);
	}
	return 0;
}

static int random_bytes(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fy_err_set(-errno, "getrandom: %s",
					  strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void random_hex(char *out, size_t bytes)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t buf[32];
	size_t i;

	/* getrandom cannot fail for 32 bytes once the pool is ready; if it
	 * ever does, ids stay unique enough with time and pid mixed in. */
	if (bytes > sizeof(buf) || random_bytes(buf, bytes)) {
		uint64_t x = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^
			     (uint64_t)getpid() ^ (uint64_t)(uintptr_t)out;

		for (i = 0; i < sizeof(buf); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (uint8_t)x;
		}
	}
	for (i = 0; i < bytes && i < sizeof(buf); i++) {
		out[2 * i] = hex[buf[i] >> 4];
		out[2 * i + 1] = hex[buf[i] & 15];
	}
	out[2 * i] = 0;
}

/* Removes dir/name, a file or (emptied first) a directory; -errno. */
static int remove_entry(DIR *d, const char *dir, const char *name,
			uint64_t *removed, uint64_t *failed)
{
	char path[PATH_MAX];
	int rc;

	if (!unlinkat(dirfd(d), name, 0))
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	/* Nothing of ours makes directories in tmp/, but one must not keep
	 * tmp/ from being cleared either. */
	rc = fy_path_fmt(path, sizeof(path), "%s/%s", dir, name);
	if (!rc)
		rc = fy_clear_dir(path, removed, failed);
	if (!rc && unlinkat(dirfd(d), name, AT_REMOVEDIR))
		rc = -errno;
	return rc;
}

int fy_clear_dir(const char *dir, uint64_t *removed, uint64_t *failed)
{
	struct dirent *de;
	DIR *d;
	int rc = 0;

	d = opendir(dir);
	if (!d)
		return fy_err_set(-errno, "%s: %s", dir, strerror(errno));
	for (;;) {
		int err;

		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno)
				rc = fy_err_set(-errno, "read %s: %s", dir,
						strerror(errno));
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		err = remove_entry(d, dir, de->d_name, removed, failed);
		if (!err) {
			(*removed)++;
			continue;
		}
		fy_warn("cannot remove %s/%s: %s", dir, de->d_name,
			strerror(-err));
		(*failed)++;
	}
	closedir(d);
	return rc;
}

/* ---- init and open ----------------------------------------------------- */

static int path_join(char *out, size_t outlen, const char *root,
		     const char *name)
{
	int n = snprintf(out, outlen, "%s/%s", root, name);

	if (n < 0 || (size_t)n >= outlen)
		return fy_err_set(-ENAMETOOLONG, "%s/%s: path too long", root,
				  name);
	return 0;
}

/* 1 when root/config looks like a repository's, 0 when absent, else an
 * error. */
static int has_config(const char *root)
{
	char path[PATH_MAX];
	void *data = NULL;
	size_t len = 0;
	int rc;

	rc = path_join(path, sizeof(path), root, "config");
	if (rc)
		return rc;
	rc = fy_read_file(path, FY_REPO_CONFIG_MAX, &data, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	rc = len >= strlen(FY_REPO_CONFIG_LINE) &&
	     !memcmp(data, FY_REPO_CONFIG_LINE, strlen(FY_REPO_CONFIG_LINE));
	free(data);
	return rc;
}

static int dir_is_empty(const char *dir)
{
	struct dirent *de;
	DIR *d;
	int rc = 1;

	d = opendir(dir);
	if (!d)
		return fy_err_set(-errno, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			rc = 0;
			break;
		}
	closedir(d);
	return rc;
}

static int make_dir(const char *root, const char *name)
{
	char path[PATH_MAX];
	int rc;

	rc = path_join(path, sizeof(path), root, name);
	if (rc)
		return rc;
	if (mkdir(path, 0755))
		return fy_err_set(-errno, "repository init: mkdir %s: %s",
				  path, strerror(errno));
	return 0;
}

int fy_repo_init(const char *root)
{
	return fy_repo_init_format(root, FY_REPO_FORMAT_CURRENT);
}

static int init_dirs(const char *root, unsigned format, const char *extra,
		     const char *given_id);

int fy_repo_init_format(const char *root, unsigned format)
{
	if (format != FY_REPO_VERSION_BLOCKS && format != FY_REPO_VERSION_PACKS)
		return fy_err_set(-EINVAL, "repository init: format %u is "
				  "neither %d nor %d", format,
				  FY_REPO_VERSION_BLOCKS,
				  FY_REPO_VERSION_PACKS);
	return init_dirs(root, format, "", NULL);
}

int fy_repo_init_s3(const char *root, const struct fy_repo_s3conf *conf)
{
	char extra[FY_REPO_CONFIG_MAX - 256], id[FY_REPO_ID_HEX + 1];
	bool adopted = false;
	int rc;

	struct stat st;
	bool existed = stat(root, &st) == 0;

	rc = fy_s3conf_format(conf, extra, sizeof(extra));
	if (rc < 0)
		return rc;
	rc = init_dirs(root, FY_REPO_VERSION_S3, extra, NULL);
	if (rc != -EAGAIN)
		return rc; /* the directory's checks failed */
	rc = fy_s3_repo_prepare(conf, id, &adopted);
	if (rc) {
		/* A refused init leaves no directory it made. */
		if (!existed)
			rmdir(root);
		return fy_err_wrap(rc, "repository init: bucket %s", conf->url);
	}
	rc = init_dirs(root, FY_REPO_VERSION_S3, extra, id);
	if (!rc && adopted)
		fy_info("repository %s: the bucket already holds repository %s; "
			"this directory is now its cache (rebuilt from the "
			"bucket when it is first opened)", root, id);
	return rc;
}

/* Without given_id for format 3: only the checks, then -EAGAIN. */
static int init_dirs(const char *root, unsigned format, const char *extra,
		     const char *given_id)
{
	char path[PATH_MAX], tmpdir[PATH_MAX];
	char config[FY_REPO_CONFIG_MAX], id[FY_REPO_ID_HEX + 1];
	struct stat st;
	int fd, rc, n;

	if (strlen(root) > FY_REPO_ROOT_MAX)
		return fy_err_set(-ENAMETOOLONG,
				  "repository init: %s: path too long", root);
	if (stat(root, &st)) {
		if (errno != ENOENT)
			return fy_err_set(-errno, "repository init: %s: %s",
					  root, strerror(errno));
		/* Backups are as sensitive as the disks they copy. */
		rc = fy_mkdirs(root, 0700);
		if (rc)
			return fy_err_wrap(rc, "repository init");
	} else if (!S_ISDIR(st.st_mode)) {
		return fy_err_set(-ENOTDIR,
				  "repository init: %s is not a directory",
				  root);
	} else {
		rc = has_config(root);
		if (rc < 0)
			return fy_err_wrap(rc, "repository init");
		if (rc == 1)
			return fy_err_set(-EEXIST,
					  "repository init: %s is already a "
					  "repository",
					  root);
		rc = dir_is_empty(root);
		if (rc < 0)
			return fy_err_wrap(rc, "repository init");
		if (!rc)
			return fy_err_set(-ENOTEMPTY,
					  "repository init: %s is not empty "
					  "and not a repository",
					  root);
	}

	if (format == FY_REPO_VERSION_S3 && !given_id)
		return -EAGAIN;
	if (format == FY_REPO_VERSION_BLOCKS) {
		rc = make_dir(root, "blocks");
	} else {
		rc = make_dir(root, "packs");
		if (!rc)
			rc = make_dir(root, "index");
	}
	if (!rc)
		rc = make_dir(root, "backups");
	if (!rc)
		rc = make_dir(root, "tmp");
	if (!rc)
		rc = path_join(path, sizeof(path), root, "lock");
	if (rc)
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return fy_err_set(-errno, "repository init: %s: %s", path,
				  strerror(errno));
	close(fd);

	/* The config is written last and durably (it fsyncs root, which
	 * also makes the directories above durable): a crash before it
	 * leaves no half repository that open would accept. */
	if (given_id)
		snprintf(id, sizeof(id), "%s", given_id);
	else
		random_hex(id, FY_REPO_ID_HEX / 2);
	n = snprintf(config, sizeof(config), "%s %u\nid=%s\n%s",
		     FY_REPO_CONFIG_LINE, format, id, extra);
	rc = path_join(tmpdir, sizeof(tmpdir), root, "tmp");
	if (rc)
		return rc;
	rc = fy_write_durable(tmpdir, root, "config", config, (size_t)n, true);
	if (rc)
		return fy_err_wrap(rc, "repository init: %s", root);
	fy_info("initialised repository %s (id %s)", root, id);
	return 0;
}

/* "ferry-repository N": N must be a version this build reads. */
static int parse_version_line(const char *root, const char *line, size_t n,
			      unsigned *out)
{
	const size_t magic = strlen(FY_REPO_CONFIG_LINE);
	char version[16], *tail;
	long v;

	if (n <= magic + 1 || memcmp(line, FY_REPO_CONFIG_LINE, magic) ||
	    line[magic] != ' ' || n - magic - 1 >= sizeof(version))
		return fy_err_set(-EINVAL,
				  "%s is not a Ferry repository (config does "
				  "not start with \"%s\")",
				  root, FY_REPO_CONFIG_LINE);
	memcpy(version, line + magic + 1, n - magic - 1);
	version[n - magic - 1] = 0;
	v = strtol(version, &tail, 10);
	if (*tail || tail == version)
		return fy_err_set(-EINVAL,
				  "repository %s: bad version \"%s\" in config",
				  root, version);
	if (v != FY_REPO_VERSION_BLOCKS && v != FY_REPO_VERSION_PACKS &&
	    v != FY_REPO_VERSION_S3)
		return fy_err_set(-ENOTSUP,
				  "repository %s has format version %ld; this "
				  "build reads %d, %d and %d",
				  root, v, FY_REPO_VERSION_BLOCKS,
				  FY_REPO_VERSION_PACKS, FY_REPO_VERSION_S3);
	*out = (unsigned)v;
	return 0;
}

/* "id=" and 32 lower-case hex digits. */
static int parse_id_line(const char *root, const char *line, size_t n,
			 char id[FY_REPO_ID_HEX + 1])
{
	size_t i;

	if (n - 3 != FY_REPO_ID_HEX)
		goto bad;
	for (i = 3; i < n; i++)
		if (fy_hex_digit(line[i]) < 0)
			goto bad;
	memcpy(id, line + 3, FY_REPO_ID_HEX);
	id[FY_REPO_ID_HEX] = 0;
	return 0;
bad:
	return fy_err_set(-EINVAL,
			  "repository %s: config id is not %d lower-case hex "
			  "digits",
			  root, FY_REPO_ID_HEX);
}

static int parse_config(const char *root, const char *text, size_t len,
			char id[FY_REPO_ID_HEX + 1], unsigned *version,
			struct fy_repo_s3conf *s3)
{
	const char *line, *end = text + len, *nl;
	int rc;

	id[0] = 0;
	fy_s3conf_init(s3);
	for (line = text; line < end; line = nl + 1) {
		size_t n;

		nl = memchr(line, '\n', (size_t)(end - line));
		if (!nl)
			nl = end;
		n = (size_t)(nl - line);
		if (line == text)
			rc = parse_version_line(root, line, n, version);
		else if (n >= 3 && !memcmp(line, "id=", 3))
			rc = parse_id_line(root, line, n, id);
		else if (*version == FY_REPO_VERSION_S3)
			rc = fy_s3conf_line(s3, root, line, n) < 0 ? -EINVAL
								   : 0;
		else
			rc = 0; /* other lines are ignored */
		if (rc)
			return rc;
	}
	if (!len)
		return fy_err_set(-EINVAL,
				  "%s is not a Ferry repository (empty config)",
				  root);
	if (!id[0])
		return fy_err_set(-EINVAL, "repository %s: config has no id=",
				  root);
	if (*version == FY_REPO_VERSION_S3 && !s3->url[0])
		return fy_err_set(-EINVAL, "repository %s: format 3 config has "
				  "no s3.url=", root);
	return 0;
}

static int clean_tmp(struct fy_repo *repo)
{
	uint64_t removed = 0, failed = 0;
	int fd, rc;

	fd = open(repo->lock_path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fy_err_set(-errno, "repository %s: %s", repo->root,
				  strerror(errno));
	/* Shared holders are backups writing into tmp/ right now. */
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		rc = -errno;
		close(fd);
		if (rc == -EWOULDBLOCK) {
			fy_info("repository %s: backups are running, not "
				"clearing %s",
				repo->root, repo->tmpdir);
			return 0;
		}
		return fy_err_set(rc, "repository %s: lock: %s", repo->root,
				  strerror(-rc));
	}
	rc = fy_clear_dir(repo->tmpdir, &removed, &failed);
	close(fd);
	if (removed || failed)
		fy_info("repository %s: removed %" PRIu64
			" leftover temporary files (%" PRIu64 " could not be)",
			repo->root, removed, failed);
	return rc;
}

int fy_repo_open(const char *root, unsigned flags, struct fy_repo **out)
{
	struct fy_repo *repo = NULL;
	char path[PATH_MAX];
	void *config = NULL;
	size_t len = 0;
	struct stat st;
	int rc;

	*out = NULL;
	if (strlen(root) > FY_REPO_ROOT_MAX)
		return fy_err_set(-ENAMETOOLONG, "repository %s: path too long",
				  root);
	repo = calloc(1, sizeof(*repo));
	if (!repo)
		return fy_err_set(-ENOMEM, "repository %s: out of memory",
				  root);
	strcpy(repo->root, root);
	repo->serve_fd = -1;
	rc = path_join(repo->tmpdir, sizeof(repo->tmpdir), root, "tmp");
	if (!rc)
		rc = path_join(repo->lock_path, sizeof(repo->lock_path), root,
			       "lock");
	if (!rc)
		rc = path_join(path, sizeof(path), root, "config");
	if (rc)
		goto out;
	rc = fy_read_file(path, FY_REPO_CONFIG_MAX, &config, &len);
	if (rc == -ENOENT) {
		rc = fy_err_set(rc, "%s is not a Ferry repository (no config)",
				root);
		goto out;
	}
	if (rc) {
		fy_err_wrap(rc, "repository %s", root);
		goto out;
	}
	repo->s3 = malloc(sizeof(*repo->s3));
	if (!repo->s3) {
		rc = fy_err_set(-ENOMEM, "repository %s: out of memory", root);
		goto out;
	}
	rc = parse_config(root, config, len, repo->id, &repo->version,
			  repo->s3);
	if (rc)
		goto out;
	if (repo->version != FY_REPO_VERSION_S3) {
		free(repo->s3);
		repo->s3 = NULL;
	}
	if (stat(repo->tmpdir, &st) || !S_ISDIR(st.st_mode)) {
		rc = fy_err_set(-ENOENT, "repository %s: no tmp directory",
				root);
		goto out;
	}
	/* tmp/ first: a crashed backup's packs there are not the index's. */
	if (flags & FY_REPO_CLEAN_TMP) {
		rc = clean_tmp(repo);
		if (rc)
			goto out;
	}
	if (flags & FY_REPO_SERVING) {
		rc = path_join(path, sizeof(path), root, "serve.lock");
		if (rc)
			goto out;
		repo->serve_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (repo->serve_fd < 0 || flock(repo->serve_fd, LOCK_SH)) {
			rc = fy_err_set(-errno, "repository %s: %s: %s", root,
					path, strerror(errno));
			goto out;
		}
	}
	if (flags & FY_REPO_CONFIG_ONLY)
		rc = 0;
	else if (repo->version == FY_REPO_VERSION_S3)
		rc = fy_store_s3_open(repo, repo->s3, flags, &repo->store);
	else if (repo->version == FY_REPO_VERSION_PACKS)
		rc = fy_store_pack_open(root, repo->tmpdir, &repo->store);
	else
		rc = fy_store_posix_open(root, repo->tmpdir, &repo->store);
	if (rc)
		goto out;
	*out = repo;
	repo = NULL;
out:
	free(config);
	fy_repo_close(repo);
	return rc;
}

void fy_repo_close(struct fy_repo *repo)
{
	if (!repo)
		return;
	if (repo->store)
		repo->store->ops->close(repo->store);
	if (repo->serve_fd >= 0)
		close(repo->serve_fd);
	free(repo->s3);
	free(repo);
}

const char *fy_repo_id(const struct fy_repo *repo)
{
	return repo->id;
}

const char *fy_repo_tmpdir(const struct fy_repo *repo)
{
	return repo->tmpdir;
}

/* ---- blocks ------------------------------------------------------------ */

int fy_repo_block_exists(struct fy_repo *repo,
			 const uint8_t digest[FY_DIGEST_LEN])
{
	uint64_t size;
	int rc = repo->store->ops->block_stat(repo->store, digest, &size);

	if (rc == -ENOENT)
		return 0;
	return rc ? rc : 1;
}

/* The block file's header (docs/FORMAT.md) for what is to be stored. */
int fy_block_header(const uint8_t digest[FY_DIGEST_LEN],
			enum fy_codec codec, uint32_t plain_size, size_t len,
			uint8_t hdr[FY_BLOCK_HDR_LEN])
{
	char hex[FY_DIGEST_HEX];

	if (codec != FY_CODEC_NONE && codec != FY_CODEC_ZSTD) {
		fy_digest_hex(digest, hex);
		return fy_err_set(-EINVAL, "block %s: unknown codec %d", hex,
				  (int)codec);
	}
	if (plain_size > FY_BLOCK_MAX || len > FY_STORED_MAX ||
	    (codec == FY_CODEC_NONE && len != plain_size)) {
		fy_digest_hex(digest, hex);
		return fy_err_set(-EINVAL,
				  "block %s: %zu stored bytes for %u plain "
				  "bytes is out of bounds",
				  hex, len, plain_size);
	}
	memcpy(hdr, FY_BLOCK_MAGIC, 4);
	hdr[4] = FY_BLOCK_VERSION;
	hdr[5] = (uint8_t)codec;
	hdr[6] = 0;
	hdr[7] = 0;
	fy_put_be32(hdr + 8, plain_size);
	fy_put_be32(hdr + 12, (uint32_t)len);
	return 0;
}

int fy_repo_block_put(struct fy_repo *repo,
		      const uint8_t digest[FY_DIGEST_LEN], enum fy_codec codec,
		      uint32_t plain_size, const void *data, size_t len)
{
	uint8_t hdr[FY_BLOCK_HDR_LEN];
	char hex[FY_DIGEST_HEX];
	int rc;

	fy_digest_hex(digest, hex);
	rc = fy_block_header(digest, codec, plain_size, len, hdr);
	if (rc)
		return rc;
	rc = repo->store->ops->block_put(repo->store, digest, hdr, sizeof(hdr),
					 data, len);
	if (rc)
		return fy_err_wrap(rc, "block %s", hex);
	return 0;
}

int fy_repo_block_get(struct fy_repo *repo,
		      const uint8_t digest[FY_DIGEST_LEN], enum fy_codec *codec,
		      uint32_t *plain_size, void *buf, size_t bufcap,
		      size_t *len)
{
	uint8_t hdr[FY_BLOCK_HDR_LEN];
	char hex[FY_DIGEST_HEX];
	uint32_t plain, data_len;
	uint64_t size = 0;
	int rc;

	fy_digest_hex(digest, hex);
	rc = repo->store->ops->block_get(repo->store, digest, hdr, sizeof(hdr),
					 buf, bufcap, &size);
	if (rc == -ENOENT)
		return fy_err_set(rc, "block %s is missing", hex);
	if (rc)
		return fy_err_wrap(rc, "block %s", hex);
	if (size < sizeof(hdr))
		return fy_err_set(-EBADMSG,
				  "block %s: %" PRIu64 " bytes, shorter than "
				  "the block header",
				  hex, size);
	if (memcmp(hdr, FY_BLOCK_MAGIC, 4))
		return fy_err_set(-EBADMSG, "block %s: bad magic", hex);
	if (hdr[4] != FY_BLOCK_VERSION)
		return fy_err_set(-EBADMSG,
				  "block %s: version %u, this build reads %u",
				  hex, hdr[4], FY_BLOCK_VERSION);
	if (hdr[5] != FY_CODEC_NONE && hdr[5] != FY_CODEC_ZSTD)
		return fy_err_set(-EBADMSG, "block %s: unknown codec %u", hex,
				  hdr[5]);
	if (hdr[6] || hdr[7])
		return fy_err_set(-EBADMSG,
				  "block %s: reserved header bytes are set",
				  hex);
	plain = fy_get_be32(hdr + 8);
	data_len = fy_get_be32(hdr + 12);
	if (plain > FY_BLOCK_MAX)
		return fy_err_set(-EBADMSG,
				  "block %s: plain size %u exceeds %u", hex,
				  plain, FY_BLOCK_MAX);
	if (data_len > FY_STORED_MAX)
		return fy_err_set(-EBADMSG,
				  "block %s: stored size %u exceeds %u", hex,
				  data_len, FY_STORED_MAX);
	if (hdr[5] == FY_CODEC_NONE && data_len != plain)
		return fy_err_set(-EBADMSG,
				  "block %s: stored raw with %u bytes but "
				  "plain size %u",
				  hex, data_len, plain);
	if (size != sizeof(hdr) + (uint64_t)data_len)
		return fy_err_set(-EBADMSG,
				  "block %s: file is %" PRIu64
				  " bytes, its header says %" PRIu64,
				  hex, size, sizeof(hdr) + (uint64_t)data_len);
	if (data_len > bufcap)
		return fy_err_set(-EINVAL,
				  "block %s: %u bytes do not fit the buffer "
				  "(%zu)",
				  hex, data_len, bufcap);
	*codec = (enum fy_codec)hdr[5];
	*plain_size = plain;
	*len = data_len;
	return 0;
}

int fy_repo_block_delete(struct fy_repo *repo,
			 const uint8_t digest[FY_DIGEST_LEN])
{
	char hex[FY_DIGEST_HEX];
	int rc = repo->store->ops->block_delete(repo->store, digest);

	if (!rc)
		return 0;
	fy_digest_hex(digest, hex);
	if (rc == -ENOENT)
		return fy_err_set(rc, "block %s is missing", hex);
	return fy_err_wrap(rc, "delete of block %s", hex);
}

int fy_repo_block_list(struct fy_repo *repo,
		       int (*cb)(void *opaque,
				 const uint8_t digest[FY_DIGEST_LEN]),
		       void *opaque)
{
	return repo->store->ops->block_list(repo->store, cb, opaque);
}

int fy_repo_sync(struct fy_repo *repo)
{
	return repo->store->ops->sync(repo->store);
}

int fy_repo_block_locate(struct fy_repo *repo,
			 const uint8_t digest[FY_DIGEST_LEN], char *path,
			 size_t pathlen, uint64_t *offset, uint64_t *length)
{
	char hex[FY_DIGEST_HEX];
	int rc = repo->store->ops->block_locate(repo->store, digest, path,
						pathlen, offset, length);

	if (rc == -ENOENT) {
		fy_digest_hex(digest, hex);
		return fy_err_set(rc, "block %s is not in the repository",
				  hex);
	}
	return rc;
}

unsigned fy_repo_format(const struct fy_repo *repo)
{
	return repo->version;
}

/* ---- backup sessions --------------------------------------------------- */

struct fy_repo_session {
	struct fy_repo *repo;
	struct fy_store_session *ss;
	pthread_mutex_t lock;
	/* digests this session stored or is storing: open addressing */
	uint8_t (*seen)[FY_DIGEST_LEN];
	size_t seen_cap, seen_count;
};

static bool seen_slot(const struct fy_repo_session *s,
		      const uint8_t digest[FY_DIGEST_LEN], size_t *at)
{
	static const uint8_t zero[FY_DIGEST_LEN];
	size_t mask = s->seen_cap - 1, i;
	uint64_t k;

	memcpy(&k, digest, sizeof(k));
	for (i = k & mask;; i = (i + 1) & mask) {
		if (!memcmp(s->seen[i], digest, FY_DIGEST_LEN)) {
			*at = i;
			return true;
		}
		if (!memcmp(s->seen[i], zero, FY_DIGEST_LEN)) {
			*at = i;
			return false;
		}
	}
}

int fy_repo_session_begin(struct fy_repo *repo, struct fy_repo_session **out)
{
	struct fy_repo_session *s;
	int rc;

	*out = NULL;
	/* What other processes committed or gc'd since we last looked. */
	if (repo->store->ops->refresh) {
		rc = repo->store->ops->refresh(repo->store);
		if (rc)
			return rc;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return fy_err_set(-ENOMEM, "out of memory");
	s->repo = repo;
	pthread_mutex_init(&s->lock, NULL);
	rc = repo->store->ops->session_begin(repo->store, &s->ss);
	if (rc) {
		pthread_mutex_destroy(&s->lock);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void fy_repo_session_note(struct fy_repo_session *s,
			  const uint8_t digest[FY_DIGEST_LEN])
{
	size_t at, i;

	/* The all-zero digest is the empty slot (and a hole, never put). */
	if (fy_digest_is_hole(digest))
		return;
	pthread_mutex_lock(&s->lock);
	if ((s->seen_count + 1) * 2 > s->seen_cap &&
	    s->seen_count < FY_SESSION_SEEN_MAX) {
		size_t cap = s->seen_cap ? s->seen_cap * 2 : 1024;
		uint8_t (*old)[FY_DIGEST_LEN] = s->seen;
		size_t old_cap = s->seen_cap;
		void *p = calloc(cap, FY_DIGEST_LEN);

		if (p) {
			s->seen = p;
			s->seen_cap = cap;
			for (i = 0; i < old_cap; i++)
				if (!fy_digest_is_hole(old[i])) {
					seen_slot(s, old[i], &at);
					memcpy(s->seen[at], old[i],
					       FY_DIGEST_LEN);
				}
			free(old);
		}
	}
	/* Full (or out of memory): forgetting only costs a second copy. */
	if (s->seen_cap && (s->seen_count + 1) * 2 <= s->seen_cap &&
	    !seen_slot(s, digest, &at)) {
		memcpy(s->seen[at], digest, FY_DIGEST_LEN);
		s->seen_count++;
	}
	pthread_mutex_unlock(&s->lock);
}

int fy_repo_session_exists(struct fy_repo_session *s,
			   const uint8_t digest[FY_DIGEST_LEN])
{
	bool seen = false;
	size_t at;

	pthread_mutex_lock(&s->lock);
	if (s->seen_cap)
		seen = seen_slot(s, digest, &at);
	pthread_mutex_unlock(&s->lock);
	if (seen)
		return 1;
	return fy_repo_block_exists(s->repo, digest);
}

int fy_repo_session_put(struct fy_repo_session *s,
			const uint8_t digest[FY_DIGEST_LEN],
			enum fy_codec codec, uint32_t plain_size,
			const void *data, size_t len)
{
	uint8_t hdr[FY_BLOCK_HDR_LEN];
	char hex[FY_DIGEST_HEX];
	int rc;

	rc = fy_block_header(digest, codec, plain_size, len, hdr);
	if (rc)
		return rc;
	rc = s->repo->store->ops->session_put(s->ss, digest, hdr, sizeof(hdr),
					      data, len);
	if (rc) {
		fy_digest_hex(digest, hex);
		return fy_err_wrap(rc, "block %s", hex);
	}
	return 0;
}

int fy_repo_session_commit(struct fy_repo_session *s)
{
	int rc = s->repo->store->ops->session_commit(s->ss);

	if (rc)
		return fy_err_wrap(rc, "storing the backup's blocks");
	return 0;
}

void fy_repo_session_end(struct fy_repo_session *s)
{
	if (!s)
		return;
	s->repo->store->ops->session_end(s->ss);
	free(s->seen);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ---- backups ----------------------------------------------------------- */

void fy_repo_new_backup_id(char id[FY_ID_MAX])
{
	char rnd[9];
	struct tm tm;
	time_t now = time(NULL);

	gmtime_r(&now, &tm);
	strftime(id, FY_ID_MAX, "%Y%m%dT%H%M%SZ-", &tm);
	random_hex(rnd, 4);
	strcat(id, rnd);
}

int fy_repo_backup_commit(struct fy_repo *repo, const char *tmp_path,
			  const char *id)
{
	struct fy_manifest *m = NULL;
	int rc;

	rc = fy_id_check("backup id", id);
	if (rc)
		return rc;
	/* A last look before the backup becomes visible: it parses, its
	 * checksum holds, and it is the backup it claims to be. */
	rc = fy_manifest_open(tmp_path, &m);
	if (rc)
		return fy_err_wrap(rc, "commit of backup %s", id);
	if (strcmp(m->id, id)) {
		rc = fy_err_set(-EINVAL,
				"commit of backup %s: %s holds backup %s", id,
				tmp_path, m->id);
		goto out;
	}
	rc = repo->store->ops->manifest_put(repo->store, tmp_path, id);
out:
	fy_manifest_free(m);
	return rc;
}

struct id_list {
	char (*ids)[FY_ID_MAX];
	size_t count, cap;
};

static int collect_id(void *opaque, const char *id)
{
	struct id_list *l = opaque;

	if (l->count == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		void *p = realloc(l->ids, cap * sizeof(*l->ids));

		if (!p)
			return fy_err_set(-ENOMEM,
					  "backup list: out of memory");
		l->ids = p;
		l->cap = cap;
	}
	snprintf(l->ids[l->count++], FY_ID_MAX, "%s", id);
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

int fy_repo_list_ids(struct fy_repo *repo, char (**ids)[FY_ID_MAX],
		     size_t *count)
{
	struct id_list l = { 0 };
	int rc;

	rc = repo->store->ops->manifest_list(repo->store, collect_id, &l);
	if (rc) {
		free(l.ids);
		return rc;
	}
	if (l.count)
		qsort(l.ids, l.count, sizeof(*l.ids), cmp_id);
	*ids = l.ids;
	*count = l.count;
	return 0;
}

int fy_repo_backup_list(struct fy_repo *repo,
			int (*cb)(void *opaque, const char *id), void *opaque)
{
	char (*ids)[FY_ID_MAX] = NULL;
	size_t count = 0, i;
	int rc;

	rc = fy_repo_list_ids(repo, &ids, &count);
	for (i = 0; !rc && i < count; i++)
		rc = cb(opaque, ids[i]);
	free(ids);
	return rc;
}

int fy_repo_backup_open(struct fy_repo *repo, const char *id,
			struct fy_manifest **out)
{
	struct fy_manifest *m = NULL;
	int rc;

	*out = NULL;
	rc = fy_id_check("backup id", id);
	if (rc)
		return rc;
	rc = repo->store->ops->manifest_open(repo->store, id, &m);
	if (rc)
		return rc;
	if (strcmp(m->id, id)) {
		rc = fy_err_set(-EBADMSG,
				"backup %s: its manifest holds backup %s", id,
				m->id);
		fy_manifest_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int fy_repo_backup_delete(struct fy_repo *repo, const char *id)
{
	int rc = fy_id_check("backup id", id);

	if (rc)
		return rc;
	return repo->store->ops->manifest_delete(repo->store, id);
}

/* ---- locking ----------------------------------------------------------- */

static int flock_wait(int fd, int op)
{
	while (flock(fd, op))
		if (errno != EINTR)
			return -errno;
	return 0;
}

/*
 * Backups take root/lock shared, gc (and migrate, verify --repair)
 * exclusive. flock alone would let a steady stream of backups starve an
 * exclusive waiter, so both pass root/gate first: the exclusive side holds
 * the gate while it waits, and backups that arrive meanwhile queue behind
 * it instead of overtaking.
 */
int fy_repo_lock_as(struct fy_repo *repo, bool exclusive, const char *who)
{
	char gate_path[PATH_MAX];
	int fd, gate, rc;

	rc = path_join(gate_path, sizeof(gate_path), repo->root, "gate");
	if (rc)
		return rc;
	gate = open(gate_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (gate < 0)
		return fy_err_set(-errno, "repository %s: lock: %s",
				  repo->root, strerror(errno));
	/* O_CREAT: a repository whose lock file was lost still locks. */
	fd = open(repo->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = flock_wait(gate, exclusive ? LOCK_EX : LOCK_SH);
	if (rc)
		goto fail;
	if (exclusive && flock(fd, LOCK_EX | LOCK_NB)) {
		if (who)
			fy_info("%s: waiting for running backups of %s to "
				"finish", who, repo->root);
		rc = flock_wait(fd, LOCK_EX);
	} else if (!exclusive) {
		rc = flock_wait(fd, LOCK_SH);
	}
	if (rc)
		goto fail;
	close(gate); /* releases it */
	return fd;
fail:
	close(gate);
	if (fd >= 0)
		close(fd);
	return fy_err_set(rc, "repository %s: lock: %s", repo->root,
			  strerror(-rc));
}

int fy_repo_lock(struct fy_repo *repo, bool exclusive)
{
	return fy_repo_lock_as(repo, exclusive, NULL);
}

void fy_repo_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}
