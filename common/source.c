/*
 * The dispatcher in front of every source: it checks the caller's side of
 * the contract (alignment, offset overflow) once, so each source can trust
 * what reaches its table, and supplies read_batch for sources without one
 * and start / wait for sources that read only synchronously.
 */
#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FY_ALIGN 4096

static int check_io(const struct fy_source *src, const void *buf, size_t len,
		    uint64_t offset)
{
	size_t align = src->align ? src->align : 1;

	if (len > UINT64_MAX - offset)
		return fy_err_set(-EINVAL, "%s: read of %zu bytes at offset "
				  "%llu overflows", src->name, len,
				  (unsigned long long)offset);
	if ((uintptr_t)buf % align || len % align || offset % align)
		return fy_err_set(-EINVAL, "%s: read of %zu bytes at offset "
				  "%llu into %p is not aligned to %zu bytes",
				  src->name, len, (unsigned long long)offset,
				  buf, align);
	return 0;
}

int fy_source_read(struct fy_source *src, void *buf, size_t len,
		   uint64_t offset)
{
	int rc;

	if (len == 0)
		return 0;
	rc = check_io(src, buf, len, offset);
	if (rc < 0)
		return rc;
	return src->ops->read(src, buf, len, offset);
}

/* A contract violation fails the whole batch before any I/O. */
static int check_batch(const struct fy_source *src, struct fy_io *ios,
		       size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		int rc = check_io(src, ios[i].buf, ios[i].len, ios[i].offset);

		if (rc < 0) {
			for (j = 0; j < n; j++)
				ios[j].result = -ECANCELED;
			ios[i].result = rc;
			return rc;
		}
	}
	return 0;
}

int fy_source_read_batch(struct fy_source *src, struct fy_io *ios, size_t n)
{
	int first = 0, rc;
	size_t i;

	rc = check_batch(src, ios, n);
	if (rc < 0)
		return rc;
	if (src->ops->read_batch)
		return src->ops->read_batch(src, ios, n);
	for (i = 0; i < n; i++) {
		ios[i].result = ios[i].len ? src->ops->read(src, ios[i].buf,
							    ios[i].len,
							    ios[i].offset) : 0;
		if (ios[i].result < 0 && first == 0)
			first = ios[i].result;
	}
	return first;
}

int fy_source_start(struct fy_source *src, struct fy_io *ios, size_t n)
{
	int rc = check_batch(src, ios, n);

	if (rc < 0 || !src->ops->start)
		return rc;
	return src->ops->start(src, ios, n);
}

int fy_source_wait(struct fy_source *src, struct fy_io *ios, size_t n)
{
	/* Without start, nothing was read yet: read it all now. */
	if (!src->ops->wait)
		return fy_source_read_batch(src, ios, n);
	return src->ops->wait(src, ios, n);
}

int fy_source_extents(struct fy_source *src, uint64_t offset, uint64_t length,
		      fy_extent_cb cb, void *opaque)
{
	if (!src->ops->extents)
		return fy_err_set(-ENOTSUP, "%s: the %s transport does not "
				  "report extents", src->name, src->ops->name);
	if (length > UINT64_MAX - offset)
		return fy_err_set(-EINVAL, "%s: extents of %llu bytes at "
				  "offset %llu overflow", src->name,
				  (unsigned long long)length,
				  (unsigned long long)offset);
	if (length == 0)
		return 0;
	return src->ops->extents(src, offset, length, cb, opaque);
}

void fy_source_close(struct fy_source *src)
{
	if (src)
		src->ops->close(src);
}

void *fy_aligned_alloc(size_t len)
{
	void *p = NULL;
	int rc;

	/* posix_memalign(0) may return NULL, which reads as a failure. */
	rc = posix_memalign(&p, FY_ALIGN, len ? len : 1);
	if (rc) {
		fy_err_set(-rc, "cannot allocate %zu bytes: %s", len,
			   strerror(rc));
		errno = rc;
		return NULL;
	}
	return p;
}

/* ---- a source in front of another ------------------------------------- */

static struct fy_source *inner_of(struct fy_source *src)
{
	return ((struct fy_source_wrap *)src)->inner;
}

int fy_source_wrap_read(struct fy_source *src, void *buf, size_t len,
			uint64_t offset)
{
	return fy_source_read(inner_of(src), buf, len, offset);
}

int fy_source_wrap_read_batch(struct fy_source *src, struct fy_io *ios,
			      size_t n)
{
	return fy_source_read_batch(inner_of(src), ios, n);
}

int fy_source_wrap_start(struct fy_source *src, struct fy_io *ios, size_t n)
{
	return fy_source_start(inner_of(src), ios, n);
}

int fy_source_wrap_wait(struct fy_source *src, struct fy_io *ios, size_t n)
{
	return fy_source_wait(inner_of(src), ios, n);
}
