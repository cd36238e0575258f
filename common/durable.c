/*
 * Durable file writes: nothing renamed into place can be lost by a crash
 * one instruction later, and a failed write leaves no temporary behind.
 */
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Temporary names a process has used: with the pid, unique per host. */
static atomic_uint tmp_counter;

int fy_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int rc = -errno;

			return fy_err_set(rc, "write: %s", strerror(-rc));
		}
		/* write() returns 0 only for len 0; never spin on it. */
		if (n == 0)
			return fy_err_set(-EIO, "write: no progress");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fy_pwrite_all(int fd, const void *buf, size_t len, uint64_t offset)
{
	const char *p = buf;

	if (offset > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - offset)
		return fy_err_set(-EOVERFLOW,
				  "write of %zu bytes at offset %llu: beyond "
				  "the largest file offset",
				  len, (unsigned long long)offset);
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int rc = -errno;

			return fy_err_set(rc, "write at offset %llu: %s",
					  (unsigned long long)offset,
					  strerror(-rc));
		}
		if (n == 0)
			return fy_err_set(-EIO,
					  "write at offset %llu: no progress",
					  (unsigned long long)offset);
		p += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

/* Drops the first n bytes from iov, and the empty entries after them. */
static void iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
	while (*iovcnt > 0 && n >= (*iov)->iov_len) {
		n -= (*iov)->iov_len;
		(*iov)++;
		(*iovcnt)--;
	}
	if (*iovcnt > 0) {
		(*iov)->iov_base = (char *)(*iov)->iov_base + n;
		(*iov)->iov_len -= n;
	}
}

/* writev() (positioned false) or pwritev() at offset, until every byte of
 * iov is written. */
static int writev_full(int fd, struct iovec *iov, int iovcnt, bool positioned,
		       uint64_t offset)
{
	size_t total = 0;
	int i;

	for (i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (positioned && (offset > (uint64_t)INT64_MAX ||
			   total > (uint64_t)INT64_MAX - offset))
		return fy_err_set(-EOVERFLOW,
				  "write of %zu bytes at offset %llu: beyond "
				  "the largest file offset",
				  total, (unsigned long long)offset);
	iov_advance(&iov, &iovcnt, 0);
	while (iovcnt > 0) {
		ssize_t n = positioned ? pwritev(fd, iov, iovcnt, (off_t)offset)
				       : writev(fd, iov, iovcnt);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int rc = -errno;

			if (!positioned)
				return fy_err_set(rc, "write: %s",
						  strerror(-rc));
			return fy_err_set(rc, "write at offset %llu: %s",
					  (unsigned long long)offset,
					  strerror(-rc));
		}
		/* Only an empty write returns 0; never spin on it. */
		if (n == 0)
			return fy_err_set(-EIO, "write: no progress");
		iov_advance(&iov, &iovcnt, (size_t)n);
		offset += (uint64_t)n;
	}
	return 0;
}

int fy_writev_all(int fd, struct iovec *iov, int iovcnt)
{
	return writev_full(fd, iov, iovcnt, false, 0);
}

int fy_pwritev_all(int fd, struct iovec *iov, int iovcnt, uint64_t offset)
{
	return writev_full(fd, iov, iovcnt, true, offset);
}

int fy_fsync_dir(const char *dir)
{
	int fd, rc = 0;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		return fy_err_set(rc, "cannot open directory %s: %s", dir,
				  strerror(-rc));
	}
	/*
	 * Some filesystems cannot sync a directory and say EINVAL; there is
	 * nothing more a caller could do there, so that is not a failure.
	 */
	if (fsync(fd) < 0 && errno != EINVAL) {
		rc = -errno;
		fy_err_set(rc, "fsync of directory %s: %s", dir, strerror(-rc));
	}
	close(fd);
	return rc;
}

/* Opens a new, unique file in dir for name; fills path with its name. */
static int create_temp(const char *dir, const char *name, char *path,
		       size_t pathlen, int *out)
{
	const char *base = strrchr(name, '/');
	unsigned attempt;

	base = base ? base + 1 : name;
	for (attempt = 0; attempt < 100; attempt++) {
		int n, fd;

		n = snprintf(path, pathlen, "%s/.%s.tmp.%ld.%u", dir, base,
			     (long)getpid(), atomic_fetch_add(&tmp_counter, 1));
		if (n < 0 || (size_t)n >= pathlen)
			return fy_err_set(-ENAMETOOLONG,
					  "temporary name for %s in %s is too "
					  "long", name, dir);
		/* O_EXCL: never reuse a file someone else is writing. */
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0) {
			*out = fd;
			return 0;
		}
		if (errno != EEXIST) {
			int rc = -errno;

			return fy_err_set(rc, "cannot create %s: %s", path,
					  strerror(-rc));
		}
	}
	return fy_err_set(-EEXIST, "cannot find a free temporary name for %s "
			  "in %s", name, dir);
}

int fy_write_durable(const char *tmpdir, const char *dir, const char *name,
		     const void *data, size_t len, bool sync_dir)
{
	char tmp[PATH_MAX], target[PATH_MAX], parent[PATH_MAX];
	bool tmp_exists = false;
	char *slash;
	int fd = -1, rc, n;

	if (!tmpdir)
		tmpdir = dir;
	n = snprintf(target, sizeof(target), "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof(target))
		return fy_err_set(-ENAMETOOLONG, "path %s/%s is too long", dir,
				  name);

	rc = create_temp(tmpdir, name, tmp, sizeof(tmp), &fd);
	if (rc < 0)
		goto out;
	tmp_exists = true;
	rc = fy_write_all(fd, data, len);
	if (rc < 0) {
		fy_err_wrap(rc, "%s", tmp);
		goto out;
	}
	if (fsync(fd) < 0) {
		rc = -errno;
		fy_err_set(rc, "fsync of %s: %s", tmp, strerror(-rc));
		goto out;
	}
	/* close() can report a delayed write error (NFS); do not lose it. */
	rc = close(fd);
	fd = -1;
	if (rc < 0) {
		rc = -errno;
		fy_err_set(rc, "close of %s: %s", tmp, strerror(-rc));
		goto out;
	}
	if (rename(tmp, target) < 0) {
		rc = -errno;
		fy_err_set(rc, "cannot rename %s to %s: %s", tmp, target,
			   strerror(-rc));
		goto out;
	}
	tmp_exists = false;
	if (sync_dir) {
		/* name may have folders of its own: sync the real parent. */
		memcpy(parent, target, (size_t)n + 1);
		slash = strrchr(parent, '/');
		*slash = '\0';
		rc = fy_fsync_dir(parent[0] ? parent : "/");
		if (rc < 0)
			goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (tmp_exists)
		unlink(tmp);
	if (rc < 0)
		fy_err_wrap(rc, "durable write of %s", target);
	return rc;
}

int fy_read_file(const char *path, size_t max, void **data, size_t *len)
{
	size_t cap, used = 0;
	struct stat st;
	char *buf = NULL;
	int fd, rc;

	/* max + 1 below must not wrap. */
	if (max > SIZE_MAX / 2)
		max = SIZE_MAX / 2;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		return fy_err_set(rc, "cannot open %s: %s", path,
				  strerror(-rc));
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		fy_err_set(rc, "cannot stat %s: %s", path, strerror(-rc));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = fy_err_set(-EISDIR, "%s is a directory", path);
		goto out;
	}
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max)
		goto too_large;
	/*
	 * Start from the size stat reports (0 for /proc and pipes) and grow,
	 * never beyond max + 1: one byte more than allowed proves "too big".
	 * The extra byte also keeps the data NUL-terminated for text callers.
	 */
	cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096;
	if (cap > max + 1)
		cap = max + 1;
	for (;;) {
		ssize_t got;

		if (used == cap) {
			size_t ncap;
			char *nbuf;

			if (cap > max)
				goto too_large;
			ncap = cap > max / 2 ? max + 1 : cap * 2;
			nbuf = realloc(buf, ncap);
			if (!nbuf) {
				rc = fy_err_set(-ENOMEM, "reading %s: out of "
						"memory", path);
				goto out;
			}
			buf = nbuf;
			cap = ncap;
		}
		if (!buf) {
			buf = malloc(cap);
			if (!buf) {
				rc = fy_err_set(-ENOMEM, "reading %s: out of "
						"memory", path);
				goto out;
			}
		}
		got = read(fd, buf + used, cap - used);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			fy_err_set(rc, "read of %s: %s", path, strerror(-rc));
			goto out;
		}
		if (got == 0)
			break;
		used += (size_t)got;
	}
	/* The loop keeps used < cap <= max + 1, so the NUL fits. */
	buf[used] = '\0';
	*data = buf;
	*len = used;
	buf = NULL;
	rc = 0;
	goto out;

too_large:
	rc = fy_err_set(-EFBIG, "%s is larger than the limit of %zu bytes",
			path, max);
out:
	free(buf);
	close(fd);
	return rc;
}

int fy_mkdirs(const char *path, unsigned mode)
{
	char buf[PATH_MAX];
	size_t len = strnlen(path, sizeof(buf));
	char *p;
	int rc;

	if (len == 0)
		return fy_err_set(-EINVAL, "cannot create a directory with an "
				  "empty name");
	if (len >= sizeof(buf))
		return fy_err_set(-ENAMETOOLONG, "path %.64s... is too long",
				  path);
	memcpy(buf, path, len + 1);

	/* Create each prefix ending before a '/', then the whole path. */
	for (p = buf + 1;; p++) {
		struct stat st;
		char saved = *p;

		if (saved != '/' && saved != '\0')
			continue;
		*p = '\0';
		if (mkdir(buf, (mode_t)mode) < 0) {
			rc = -errno;
			if (rc != -EEXIST) {
				fy_err_set(rc, "cannot create directory %s: %s",
					   buf, strerror(-rc));
				return rc;
			}
			/* An existing file in the way is not a directory. */
			if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode))
				return fy_err_set(-ENOTDIR,
						  "cannot create directory %s: "
						  "a file of that name exists",
						  buf);
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	return 0;
}
