/*
 * Pack files (repository format 2, docs/FORMAT.md): many block objects
 * appended to one file, with a trailer that lists them. A pack is written
 * in tmp/ by one writer, finished (trailer, fdatasync) and then moved into
 * packs/ by its owner; once there it never changes until gc deletes it.
 *
 * The trailer is the pack's own index: the repository index (index.c) is
 * rebuilt from the trailers whenever it is missing or damaged, so every
 * trailer is read as outside data, with every bound checked.
 *
 * A writer gathers its pack in a buffer of PACK_WBUF bytes and writes it
 * with O_DIRECT, whole aligned pieces at a time: a backup's new data goes
 * to the disk without being copied into the page cache, which took 40% of
 * the repository's CPU on a 2-core VM (each new page-cache page is costly
 * there). The last piece is padded to the alignment and the file cut back
 * to its size before the sync. On other file systems than local disk ones
 * (direct_wanted), or where O_DIRECT is refused, the same buffer is
 * written through the page cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "image/image_private.h"

/* A writer's buffer, and the alignment of its O_DIRECT writes. */
#define PACK_WBUF (2u << 20)
#define PACK_ALIGN 4096u

struct fy_pack_writer {
	int fd;
	bool direct;   /* fd has O_DIRECT */
	int broken;    /* a write failed: the pack is not usable */
	uint8_t *buf;  /* PACK_WBUF bytes, aligned: the pack from boff on */
	size_t blen;
	uint64_t boff; /* a multiple of PACK_ALIGN */
	char path[PATH_MAX];
	uint8_t id[FY_PACK_ID_LEN];
	uint64_t size; /* bytes written: the next entry's offset */
	struct fy_pack_entry *entries;
	size_t count, cap;
};

void fy_pack_id_hex(const uint8_t id[FY_PACK_ID_LEN], char *out)
{
	fy_hex(id, FY_PACK_ID_LEN, out);
}

bool fy_pack_id_unhex(const char *hex, uint8_t id[FY_PACK_ID_LEN])
{
	size_t i;

	for (i = 0; i < FY_PACK_ID_LEN * 2; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') ||
		      (hex[i] >= 'a' && hex[i] <= 'f')))
			return false;
	if (hex[i])
		return false;
	return fy_unhex(hex, id, FY_PACK_ID_LEN) == 0;
}

int fy_pack_path(const char *packs_dir, const uint8_t id[FY_PACK_ID_LEN],
		 char *path, size_t len)
{
	char hex[FY_PACK_ID_LEN * 2 + 1];

	fy_pack_id_hex(id, hex);
	return fy_path_fmt(path, len, "%s/%.2s/%s" FY_PACK_SUFFIX, packs_dir,
			   hex, hex);
}

int fy_pack_tmp_path(const char *tmpdir, const uint8_t id[FY_PACK_ID_LEN],
		     char *path, size_t len)
{
	char hex[FY_PACK_ID_LEN * 2 + 1];

	fy_pack_id_hex(id, hex);
	return fy_path_fmt(path, len, "%s/%s" FY_PACK_SUFFIX, tmpdir, hex);
}

/* O_DIRECT on fd, or off; false when the file system refuses. */
static bool set_direct(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	return fl >= 0 && fcntl(fd, F_SETFL,
				on ? fl | O_DIRECT : fl & ~O_DIRECT) == 0;
}

/* O_DIRECT only where it saves work: a local disk file system. On a
 * network file system each such write waits for the server (and a
 * writer holds its session's lock meanwhile); on tmpfs the page cache is
 * the storage. Elsewhere the buffer goes through the page cache. */
static bool direct_wanted(int fd)
{
	struct statfs sf;

	if (fstatfs(fd, &sf))
		return false;
	switch ((unsigned long)sf.f_type) {
	case 0xEF53:     /* ext2, ext3, ext4 */
	case 0x58465342: /* xfs */
	case 0x9123683E: /* btrfs */
	case 0xF2F52010: /* f2fs */
		return true;
	default:
		return false;
	}
}

int fy_pack_create(const char *tmpdir, struct fy_pack_writer **out)
{
	struct fy_pack_writer *w;
	uint8_t hdr[FY_PACK_HDR_LEN] = { 0 };
	int rc;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return fy_err_set(-ENOMEM, "pack: out of memory");
	w->fd = -1;
	if (RAND_bytes(w->id, sizeof(w->id)) != 1) {
		free(w);
		return fy_err_set(-EIO, "pack: no random bytes for a pack id");
	}
	rc = fy_pack_tmp_path(tmpdir, w->id, w->path, sizeof(w->path));
	if (rc) {
		free(w);
		return rc;
	}
	if (posix_memalign((void **)&w->buf, PACK_ALIGN, PACK_WBUF)) {
		free(w);
		return fy_err_set(-ENOMEM, "pack: out of memory");
	}
	w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		rc = fy_err_set(-errno, "pack: create %s: %s", w->path,
				strerror(errno));
		free(w->buf);
		free(w);
		return rc;
	}
	w->direct = direct_wanted(w->fd) && set_direct(w->fd, true);
	memcpy(hdr, FY_PACK_MAGIC, 8);
	fy_put_be32(hdr + 8, FY_PACK_VERSION);
	memcpy(w->buf, hdr, sizeof(hdr));
	w->blen = sizeof(hdr);
	w->size = sizeof(hdr);
	*out = w;
	return 0;
}

const uint8_t *fy_pack_writer_id(const struct fy_pack_writer *w)
{
	return w->id;
}

size_t fy_pack_writer_count(const struct fy_pack_writer *w)
{
	return w->count;
}

bool fy_pack_writer_full(const struct fy_pack_writer *w)
{
	return w->size >= FY_PACK_TARGET || w->count >= FY_PACK_ENTRIES_MAX;
}

/* Writes the buffer out: whole aligned pieces, or (last) all of it,
 * padded to the alignment with O_DIRECT. */
static int wbuf_write(struct fy_pack_writer *w, bool last)
{
	size_t n = last ? w->blen : w->blen & ~(size_t)(PACK_ALIGN - 1);
	size_t out = n;
	int rc;

	if (w->direct && last && n % PACK_ALIGN) {
		out = (n + PACK_ALIGN - 1) & ~(size_t)(PACK_ALIGN - 1);
		memset(w->buf + n, 0, out - n);
	}
	rc = fy_pwrite_all(w->fd, w->buf, out, w->boff);
	if (rc == -EINVAL && w->direct && set_direct(w->fd, false)) {
		/* The file system took the flag, not the write: through the
		 * page cache from here on (the same bytes again). */
		w->direct = false;
		rc = fy_pwrite_all(w->fd, w->buf, n, w->boff);
	}
	if (rc) {
		w->broken = rc;
		return fy_err_wrap(rc, "pack: write %s", w->path);
	}
	memmove(w->buf, w->buf + n, w->blen - n);
	w->blen -= n;
	w->boff += n;
	return 0;
}

/* Adds n bytes to the pack, writing the buffer out whenever it fills. */
static int wbuf_put(struct fy_pack_writer *w, const void *p, size_t n)
{
	const uint8_t *from = p;

	while (n) {
		size_t k = PACK_WBUF - w->blen < n ? PACK_WBUF - w->blen : n;
		int rc;

		memcpy(w->buf + w->blen, from, k);
		w->blen += k;
		from += k;
		n -= k;
		if (w->blen == PACK_WBUF && (rc = wbuf_write(w, false)))
			return rc;
	}
	return 0;
}

int fy_pack_append(struct fy_pack_writer *w,
		   const uint8_t digest[FY_DIGEST_LEN], const void *hdr,
		   size_t hdrlen, const void *data, size_t len)
{
	struct fy_pack_entry *e;
	uint64_t objlen = (uint64_t)hdrlen + len;
	int rc;

	if (w->broken)
		return fy_err_set(w->broken, "pack %s: an earlier write "
				  "failed", w->path);
	if (fy_pack_writer_full(w) || objlen > FY_PACK_OBJECT_MAX ||
	    objlen < FY_BLOCK_HDR_LEN)
		return fy_err_set(-EINVAL, "pack %s: an object of %" PRIu64
				  " bytes does not fit", w->path, objlen);
	if (w->count == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 256;

		e = realloc(w->entries, cap * sizeof(*e));
		if (!e)
			return fy_err_set(-ENOMEM, "pack: out of memory");
		w->entries = e;
		w->cap = cap;
	}
	rc = wbuf_put(w, hdr, hdrlen);
	if (!rc && len)
		rc = wbuf_put(w, data, len);
	if (rc)
		return rc;
	e = &w->entries[w->count++];
	memcpy(e->digest, digest, FY_DIGEST_LEN);
	e->offset = (uint32_t)w->size;
	e->length = (uint32_t)objlen;
	w->size += objlen;
	return 0;
}

/* The trailer: the entries, then the footer. */
int fy_pack_finish(struct fy_pack_writer *w)
{
	return fy_pack_finish_ex(w, true);
}

int fy_pack_finish_ex(struct fy_pack_writer *w, bool sync)
{
	size_t tlen = w->count * FY_PACK_ENTRY_LEN + FY_PACK_FOOTER_LEN;
	uint8_t *t = malloc(tlen), *p;
	unsigned int dlen = 0;
	size_t i;
	int rc;

	if (!t)
		return fy_err_set(-ENOMEM, "pack: out of memory");
	if (w->broken) {
		free(t);
		return fy_err_set(w->broken, "pack %s: an earlier write "
				  "failed", w->path);
	}
	for (i = 0, p = t; i < w->count; i++, p += FY_PACK_ENTRY_LEN) {
		memcpy(p, w->entries[i].digest, FY_DIGEST_LEN);
		fy_put_be32(p + 32, w->entries[i].offset);
		fy_put_be32(p + 36, w->entries[i].length);
	}
	fy_put_be32(p, (uint32_t)w->count);
	fy_put_be32(p + 4, 0);
	EVP_Digest(t, w->count * FY_PACK_ENTRY_LEN, p + 8, &dlen,
		   EVP_sha256(), NULL);
	memcpy(p + 40, FY_PACK_END_MAGIC, 8);
	rc = wbuf_put(w, t, tlen);
	free(t);
	if (!rc)
		rc = wbuf_write(w, true);
	if (rc)
		return rc;
	/* The last write was padded: the file ends where the pack does. */
	if (ftruncate(w->fd, (off_t)(w->size + tlen)))
		rc = -errno;
	/* Without sync, writeback (of what did not go O_DIRECT) starts now
	 * and the owner's fy_pack_sync waits for it later: a backup's
	 * workers do not stall on it. */
	if (!rc && (sync ? fdatasync(w->fd)
			 : sync_file_range(w->fd, 0, 0,
					   SYNC_FILE_RANGE_WRITE)))
		rc = -errno;
	if (rc)
		return fy_err_set(rc, "pack: finish %s: %s", w->path,
				  strerror(-rc));
	w->size += tlen;
	close(w->fd);
	w->fd = -1;
	return 0;
}

int fy_pack_sync(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return fy_err_set(-errno, "pack %s: %s", path, strerror(errno));
	if (fdatasync(fd))
		rc = fy_err_set(-errno, "pack %s: fdatasync: %s", path,
				strerror(errno));
	close(fd);
	return rc;
}

int fy_pack_move_in(const char *tmpdir, const char *packs_dir,
		    const uint8_t id[FY_PACK_ID_LEN])
{
	char tmp[PATH_MAX], path[PATH_MAX], dir[PATH_MAX];
	char hex[FY_PACK_ID_LEN * 2 + 1];
	int rc;

	fy_pack_id_hex(id, hex);
	rc = fy_pack_tmp_path(tmpdir, id, tmp, sizeof(tmp));
	if (!rc)
		rc = fy_pack_path(packs_dir, id, path, sizeof(path));
	if (!rc)
		rc = fy_path_fmt(dir, sizeof(dir), "%s/%.2s", packs_dir, hex);
	if (!rc)
		rc = fy_pack_sync(tmp);
	if (rc)
		return rc;
	if (mkdir(dir, 0755) == 0) {
		rc = fy_fsync_dir(packs_dir);
		if (rc)
			return rc;
	} else if (errno != EEXIST) {
		return fy_err_set(-errno, "pack: mkdir %s: %s", dir,
				  strerror(errno));
	}
	if (rename(tmp, path))
		return fy_err_set(-errno, "pack: rename %s to %s: %s", tmp,
				  path, strerror(errno));
	return fy_fsync_dir(dir);
}

void fy_pack_writer_free(struct fy_pack_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	free(w->buf);
	free(w->entries);
	free(w);
}

void fy_pack_discard(struct fy_pack_writer *w)
{
	if (!w)
		return;
	if (unlink(w->path) && errno != ENOENT)
		fy_warn("pack: cannot remove %s: %s", w->path,
			strerror(errno));
	fy_pack_writer_free(w);
}

/* ---- reading the trailer ----------------------------------------------- */

int fy_pack_parse_trailer(const uint8_t *tail, size_t tail_len,
			  uint64_t file_size, const char *name,
			  struct fy_pack_entry **out, size_t *count)
{
	const uint8_t *foot, *p;
	struct fy_pack_entry *e = NULL;
	uint8_t sum[FY_DIGEST_LEN];
	unsigned int dlen = 0;
	uint64_t n, tlen, expect;
	size_t i;

	*out = NULL;
	*count = 0;
	if (file_size > FY_PACK_FILE_MAX)
		return fy_err_set(-EBADMSG, "pack %s: %" PRIu64 " bytes, more "
				  "than %u", name, file_size,
				  (unsigned)FY_PACK_FILE_MAX);
	if (file_size < FY_PACK_HDR_LEN + FY_PACK_FOOTER_LEN ||
	    tail_len < FY_PACK_FOOTER_LEN || tail_len > file_size)
		return fy_err_set(-EBADMSG, "pack %s: %" PRIu64 " bytes, too "
				  "short for a pack", name, file_size);
	foot = tail + tail_len - FY_PACK_FOOTER_LEN;
	if (memcmp(foot + 40, FY_PACK_END_MAGIC, 8))
		return fy_err_set(-EBADMSG, "pack %s: no trailer (an "
				  "unfinished or damaged pack)", name);
	n = fy_get_be32(foot);
	if (n > FY_PACK_ENTRIES_MAX || fy_get_be32(foot + 4))
		return fy_err_set(-EBADMSG, "pack %s: trailer lists %" PRIu64
				  " entries, at most %u", name, n,
				  FY_PACK_ENTRIES_MAX);
	tlen = n * FY_PACK_ENTRY_LEN;
	if (tlen + FY_PACK_FOOTER_LEN + FY_PACK_HDR_LEN > file_size ||
	    tlen + FY_PACK_FOOTER_LEN > tail_len)
		return fy_err_set(-EBADMSG, "pack %s: trailer of %" PRIu64
				  " entries does not fit in the file", name, n);
	p = foot - tlen;
	EVP_Digest(p, tlen, sum, &dlen, EVP_sha256(), NULL);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	if (memcmp(sum, foot + 8, FY_DIGEST_LEN))
		return fy_err_set(-EBADMSG, "pack %s: trailer checksum "
				  "mismatch", name);
#endif
	if (n) {
		e = calloc(n, sizeof(*e));
		if (!e)
			return fy_err_set(-ENOMEM, "pack %s: out of memory",
					  name);
	}
	/* The entries tile the data area exactly, in order: no gap, no
	 * overlap, nothing outside it. */
	expect = FY_PACK_HDR_LEN;
	for (i = 0; i < n; i++, p += FY_PACK_ENTRY_LEN) {
		memcpy(e[i].digest, p, FY_DIGEST_LEN);
		e[i].offset = fy_get_be32(p + 32);
		e[i].length = fy_get_be32(p + 36);
		if (e[i].offset != expect ||
		    e[i].length < FY_BLOCK_HDR_LEN ||
		    e[i].length > FY_PACK_OBJECT_MAX) {
			uint32_t off = e[i].offset, l = e[i].length;

			free(e);
			return fy_err_set(-EBADMSG, "pack %s: entry %zu "
					  "(offset %u, %u bytes) is out of "
					  "place", name, i, off, l);
		}
		expect += e[i].length;
	}
	if (expect + tlen + FY_PACK_FOOTER_LEN != file_size) {
		free(e);
		return fy_err_set(-EBADMSG, "pack %s: entries end at %" PRIu64
				  ", the trailer starts at %" PRIu64, name,
				  expect, file_size - tlen -
				  FY_PACK_FOOTER_LEN);
	}
	*out = e;
	*count = (size_t)n;
	return 0;
}

int fy_pack_read_trailer(const char *path, struct fy_pack_entry **out,
			 size_t *count)
{
	uint8_t hdr[FY_PACK_HDR_LEN], foot[FY_PACK_FOOTER_LEN];
	uint8_t *tail = NULL;
	struct stat sb;
	size_t tail_len;
	ssize_t got;
	int fd, rc;

	*out = NULL;
	*count = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fy_err_set(-errno, "pack %s: %s", path,
				  strerror(errno));
	if (fstat(fd, &sb)) {
		rc = fy_err_set(-errno, "pack %s: %s", path, strerror(errno));
		goto out;
	}
	if ((uint64_t)sb.st_size > FY_PACK_FILE_MAX ||
	    sb.st_size < FY_PACK_HDR_LEN + FY_PACK_FOOTER_LEN) {
		rc = fy_pack_parse_trailer(foot, 0, (uint64_t)sb.st_size,
					   path, out, count);
		goto out;
	}
	got = pread(fd, hdr, sizeof(hdr), 0);
	if (got != (ssize_t)sizeof(hdr) || memcmp(hdr, FY_PACK_MAGIC, 8) ||
	    fy_get_be32(hdr + 8) != FY_PACK_VERSION || fy_get_be32(hdr + 12)) {
		rc = fy_err_set(-EBADMSG, "pack %s: not a version %u pack "
				"file", path, FY_PACK_VERSION);
		goto out;
	}
	got = pread(fd, foot, sizeof(foot), sb.st_size - (off_t)sizeof(foot));
	if (got != (ssize_t)sizeof(foot)) {
		rc = fy_err_set(got < 0 ? -errno : -EBADMSG, "pack %s: short "
				"read of the trailer", path);
		goto out;
	}
	tail_len = (size_t)fy_get_be32(foot) * FY_PACK_ENTRY_LEN +
		   FY_PACK_FOOTER_LEN;
	if (fy_get_be32(foot) > FY_PACK_ENTRIES_MAX ||
	    tail_len > (uint64_t)sb.st_size) {
		rc = fy_pack_parse_trailer(foot, sizeof(foot),
					   (uint64_t)sb.st_size, path, out,
					   count);
		goto out;
	}
	tail = malloc(tail_len);
	if (!tail) {
		rc = fy_err_set(-ENOMEM, "pack %s: out of memory", path);
		goto out;
	}
	got = pread(fd, tail, tail_len, sb.st_size - (off_t)tail_len);
	if (got != (ssize_t)tail_len) {
		rc = fy_err_set(got < 0 ? -errno : -EBADMSG, "pack %s: short "
				"read of the trailer", path);
		goto out;
	}
	rc = fy_pack_parse_trailer(tail, tail_len, (uint64_t)sb.st_size, path,
				   out, count);
out:
	free(tail);
	close(fd);
	return rc;
}

int fy_pack_read_object(const char *path, uint32_t offset, uint32_t length,
			void *hdr, size_t hdrlen, void *buf, size_t bufcap)
{
	struct iovec iov[2] = { { hdr, hdrlen }, { buf, 0 } };
	ssize_t got;
	int fd, rc = 0;

	if (length < hdrlen || length - hdrlen > bufcap)
		return fy_err_set(-EBADMSG, "pack %s: an object of %u bytes "
				  "at %u does not fit", path, length, offset);
	iov[1].iov_len = length - hdrlen;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		return fy_err_set(-errno, "pack %s: %s", path,
				  strerror(errno));
	}
	got = preadv(fd, iov, 2, offset);
	if (got < 0)
		rc = fy_err_set(-errno, "pack %s: read at %u: %s", path,
				offset, strerror(errno));
	else if ((size_t)got != length)
		rc = fy_err_set(-EBADMSG, "pack %s: the object at %u is cut "
				"short (%zd of %u bytes)", path, offset, got,
				length);
	close(fd);
	return rc;
}

int fy_pack_check(const uint8_t *file, size_t len)
{
	struct fy_pack_entry *e = NULL;
	size_t n = 0;
	int rc;

	if (len < FY_PACK_HDR_LEN || memcmp(file, FY_PACK_MAGIC, 8) ||
	    fy_get_be32(file + 8) != FY_PACK_VERSION || fy_get_be32(file + 12))
		return fy_err_set(-EBADMSG, "pack: not a version %u pack file",
				  FY_PACK_VERSION);
	rc = fy_pack_parse_trailer(file, len, len, "(memory)", &e, &n);
	free(e);
	return rc;
}

/* ---- packs whose data lives in an object store (s3store.c) ------------- */

int fy_pack_range_local(const char *path, uint64_t offset, uint64_t length)
{
	off_t hole;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT
				       : fy_err_set(-errno, "pack %s: %s", path,
						    strerror(errno));
	/* The first hole at or after offset; the end of the file counts as
	 * one, so a fully local range ends at or before it. */
	hole = lseek(fd, (off_t)offset, SEEK_HOLE);
	if (hole < 0)
		rc = errno == ENXIO ? 0
				    : fy_err_set(-errno, "pack %s: seek: %s",
						 path, strerror(errno));
	else
		rc = (uint64_t)hole >= offset + length;
	close(fd);
	return rc;
}

/* The length of the pack's trailer (entries and footer), from its footer. */
static int trailer_len(int fd, uint64_t size, const char *path, uint64_t *len)
{
	uint8_t foot[FY_PACK_FOOTER_LEN];

	if (size < FY_PACK_HDR_LEN + FY_PACK_FOOTER_LEN ||
	    pread(fd, foot, sizeof(foot), (off_t)(size - sizeof(foot))) !=
		    (ssize_t)sizeof(foot) ||
	    memcmp(foot + 40, FY_PACK_END_MAGIC, 8) ||
	    fy_get_be32(foot) > FY_PACK_ENTRIES_MAX)
		return fy_err_set(-EBADMSG, "pack %s: no valid footer", path);
	*len = (uint64_t)fy_get_be32(foot) * FY_PACK_ENTRY_LEN +
	       FY_PACK_FOOTER_LEN;
	if (*len + FY_PACK_HDR_LEN > size)
		return fy_err_set(-EBADMSG, "pack %s: trailer larger than the "
				  "file", path);
	return 0;
}

int fy_pack_evict(const char *path, uint64_t *freed)
{
	uint64_t tlen = 0, start, end, before;
	struct stat sb;
	int fd, rc;

	*freed = 0;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT
				       : fy_err_set(-errno, "pack %s: %s", path,
						    strerror(errno));
	if (fstat(fd, &sb)) {
		rc = fy_err_set(-errno, "pack %s: %s", path, strerror(errno));
		goto out;
	}
	rc = trailer_len(fd, (uint64_t)sb.st_size, path, &tlen);
	if (rc)
		goto out;
	/* Whole file system blocks only: a partly punched block would be
	 * zeroed but stay allocated, and read back as local data. The first
	 * block keeps the header; the trailer's blocks stay. */
	start = (uint64_t)sb.st_blksize;
	end = ((uint64_t)sb.st_size - tlen) / (uint64_t)sb.st_blksize *
	      (uint64_t)sb.st_blksize;
	before = (uint64_t)sb.st_blocks * 512;
	if (end > start &&
	    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)start, (off_t)(end - start))) {
		rc = fy_err_set(-errno, "pack %s: cannot free its cached data "
				"(punch hole): %s", path, strerror(errno));
		goto out;
	}
	if (!fstat(fd, &sb) && before > (uint64_t)sb.st_blocks * 512)
		*freed = before - (uint64_t)sb.st_blocks * 512;
out:
	close(fd);
	return rc;
}

int fy_pack_write_stub(const char *tmpdir, const uint8_t id[FY_PACK_ID_LEN],
		       uint64_t size, const void *tail, size_t tail_len)
{
	uint8_t hdr[FY_PACK_HDR_LEN] = { 0 };
	char path[PATH_MAX];
	int fd, rc;

	if (size > FY_PACK_FILE_MAX || tail_len + FY_PACK_HDR_LEN > size)
		return fy_err_set(-EBADMSG, "pack stub: %zu bytes of trailer "
				  "do not fit a pack of %" PRIu64 " bytes",
				  tail_len, size);
	rc = fy_pack_tmp_path(tmpdir, id, path, sizeof(path));
	if (rc)
		return rc;
	memcpy(hdr, FY_PACK_MAGIC, 8);
	fy_put_be32(hdr + 8, FY_PACK_VERSION);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return fy_err_set(-errno, "pack stub %s: %s", path,
				  strerror(errno));
	if (ftruncate(fd, (off_t)size) ||
	    pwrite(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    pwrite(fd, tail, tail_len, (off_t)(size - tail_len)) !=
		    (ssize_t)tail_len ||
	    fdatasync(fd))
		rc = fy_err_set(errno ? -errno : -EIO, "pack stub %s: %s",
				path, strerror(errno));
	close(fd);
	if (rc)
		unlink(path);
	return rc;
}
