/*
 * The san source: a flat file on a VMFS6 volume, read through its extent
 * map. Each LUN is one of common's file sources (O_RDONLY | O_DIRECT,
 * libaio); a batch of reads becomes, per LUN, one batch of pieces at the
 * mapped offsets, so several requests are in flight. Holes and
 * to-be-zeroed ranges are zero-filled and never read from the LUN.
 */
#include "san/san.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define SAN_ALIGN 4096
/* The most pieces one batch may split into (bounded, allocated per call). */
#define MAX_PIECES (1u << 16)

struct san_source {
	struct fy_source base; /* first: the table's functions cast back */
	struct fy_source *lun_src[FY_VMFS_MAX_LUNS];
	struct fy_vmfs_lun luns[FY_VMFS_MAX_LUNS];
	char lun_names[FY_VMFS_MAX_LUNS][256];
	size_t nluns;
	struct fy_vmfs_map map;
};

/* Metadata reads of the reader: any offset and length, through the
 * aligned file source (bounce buffer). */
static int lun_pread(void *opaque, void *buf, size_t len, uint64_t offset)
{
	struct fy_source *src = opaque;
	uint64_t start = offset & ~(uint64_t)(SAN_ALIGN - 1);
	uint64_t end = (offset + len + SAN_ALIGN - 1) & ~(uint64_t)(SAN_ALIGN - 1);
	uint8_t *b;
	int rc;

	if (end > src->size && offset + len <= src->size)
		end = (src->size + SAN_ALIGN - 1) & ~(uint64_t)(SAN_ALIGN - 1);
	b = fy_aligned_alloc((size_t)(end - start));
	if (!b)
		return -ENOMEM;
	rc = fy_source_read(src, b, (size_t)(end - start), start);
	if (rc == 0)
		memcpy(buf, b + (offset - start), len);
	free(b);
	return rc;
}

/* The first run at or after offset (runs are sorted and contiguous). */
static size_t run_find(const struct fy_vmfs_map *m, uint64_t offset)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->runs[mid].offset + m->runs[mid].length <= offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int san_read_batch(struct fy_source *base, struct fy_io *ios, size_t n)
{
	struct san_source *s = (struct san_source *)base;
	const struct fy_vmfs_map *m = &s->map;
	struct fy_io *pieces = NULL;
	size_t *owner = NULL, np = 0, cap = 0, i, l;
	int first = 0, rc;

	for (i = 0; i < n; i++) {
		struct fy_io *io = &ios[i];
		uint64_t pos = io->offset, end = io->offset + io->len;
		size_t r = run_find(m, pos);

		io->result = 0;
		/* Past the end of the file: zeros. */
		if (end > m->size) {
			uint64_t from = pos > m->size ? pos : m->size;

			memset((char *)io->buf + (from - io->offset), 0,
			       (size_t)(end - from));
			end = from;
		}
		for (; pos < end && r < m->n; r++) {
			const struct fy_vmfs_run *run = &m->runs[r];
			uint64_t a = pos, b = run->offset + run->length;
			char *dst = (char *)io->buf + (a - io->offset);

			if (b > end)
				b = end;
			switch (run->kind) {
			case FY_VMFS_RUN_DATA:
				if (np == cap) {
					size_t nc = cap ? cap * 2 : 64;
					void *p1, *p2;

					if (nc > MAX_PIECES) {
						first = fy_err_set(-E2BIG,
							"%s: a batch of %zu reads "
							"is in more than %u pieces",
							base->name, n, MAX_PIECES);
						goto out;
					}
					p1 = realloc(pieces, nc * sizeof(*pieces));
					if (p1)
						pieces = p1;
					p2 = realloc(owner, nc * sizeof(*owner));
					if (p2)
						owner = p2;
					if (!p1 || !p2) {
						first = fy_err_set(-ENOMEM,
							"out of memory");
						goto out;
					}
					cap = nc;
				}
				/* The last piece of the file is rounded up
				 * to the alignment; its tail is zeroed after
				 * the read. */
				pieces[np].buf = dst;
				pieces[np].len = (size_t)(b - a);
				if (b == m->size)
					pieces[np].len = (pieces[np].len +
							  SAN_ALIGN - 1) &
							 ~(size_t)(SAN_ALIGN - 1);
				pieces[np].offset = run->lun_offset +
						    (a - run->offset);
				pieces[np].result = (int)run->lun;
				owner[np] = i;
				np++;
				break;
			case FY_VMFS_RUN_RESIDENT:
				memcpy(dst, s->map.resident + a, (size_t)(b - a));
				break;
			default:
				memset(dst, 0, (size_t)(b - a));
				break;
			}
			pos = b;
		}
	}
	/* One batch per LUN, all of its pieces in flight together. */
	for (l = 0; l < s->nluns; l++) {
		struct fy_io *mine;
		size_t k, nm = 0;

		for (k = 0; k < np; k++)
			nm += pieces[k].result == (int)l;
		if (!nm)
			continue;
		mine = malloc(nm * sizeof(*mine));
		if (!mine) {
			first = fy_err_set(-ENOMEM, "out of memory");
			goto out;
		}
		nm = 0;
		for (k = 0; k < np; k++)
			if (pieces[k].result == (int)l)
				mine[nm++] = pieces[k];
		rc = fy_source_read_batch(s->lun_src[l], mine, nm);
		nm = 0;
		for (k = 0; k < np; k++) {
			if (pieces[k].result != (int)l)
				continue;
			if (mine[nm].result < 0 && ios[owner[k]].result == 0)
				ios[owner[k]].result = mine[nm].result;
			nm++;
		}
		free(mine);
		if (rc < 0 && !first)
			first = fy_err_wrap(rc, "%s", base->name);
	}
	/* Zero what lies past the file's end inside the rounded last piece. */
	for (i = 0; i < n; i++) {
		uint64_t end = ios[i].offset + ios[i].len;

		if (ios[i].offset < m->size && end > m->size)
			memset((char *)ios[i].buf + (m->size - ios[i].offset), 0,
			       (size_t)(end - m->size));
	}
out:
	if (first)
		for (i = 0; i < n; i++)
			if (ios[i].result == 0)
				ios[i].result = first;
	free(pieces);
	free(owner);
	return first;
}

static int san_read(struct fy_source *base, void *buf, size_t len,
		    uint64_t offset)
{
	struct fy_io io = { buf, len, offset, 0 };

	return san_read_batch(base, &io, 1);
}

static int san_extents(struct fy_source *base, uint64_t offset,
		       uint64_t length, fy_extent_cb cb, void *opaque)
{
	struct san_source *s = (struct san_source *)base;
	const struct fy_vmfs_map *m = &s->map;
	uint64_t end = offset + length;
	size_t r = run_find(m, offset);
	int rc;

	for (; r < m->n && offset < end; r++) {
		const struct fy_vmfs_run *run = &m->runs[r];
		uint64_t b = run->offset + run->length;
		bool zero = run->kind == FY_VMFS_RUN_HOLE ||
			    run->kind == FY_VMFS_RUN_TBZ;

		if (b > end)
			b = end;
		rc = cb(opaque, offset, b - offset,
			zero ? FY_EXTENT_ZERO : FY_EXTENT_DATA);
		if (rc)
			return rc;
		offset = b;
	}
	return 0;
}

static void san_close(struct fy_source *base)
{
	struct san_source *s = (struct san_source *)base;
	size_t i;

	for (i = 0; i < s->nluns; i++)
		fy_source_close(s->lun_src[i]);
	fy_vmfs_map_release(&s->map);
	free(s);
}

static const struct fy_source_ops san_ops = {
	.name = "san",
	.read = san_read,
	.read_batch = san_read_batch,
	.extents = san_extents,
	.close = san_close,
};

int fy_san_source_open(const char *const *luns, size_t n, const char *path,
		       const struct fy_file_source_opts *opts,
		       struct fy_source **out)
{
	struct san_source *s;
	struct fy_vmfs *v = NULL;
	size_t i;
	int rc;

	*out = NULL;
	if (n == 0 || n > FY_VMFS_MAX_LUNS)
		return fy_err_set(-EINVAL, "san: %zu LUNs (1 to %d)", n,
				  FY_VMFS_MAX_LUNS);
	s = calloc(1, sizeof(*s));
	if (!s)
		return fy_err_set(-ENOMEM, "out of memory");
	s->base.ops = &san_ops;
	s->base.align = SAN_ALIGN;
	s->nluns = n;
	for (i = 0; i < n; i++) {
		struct fy_file_source_opts fo = { 0 };

		if (opts)
			fo = *opts;
		/* The LUN is read only where the map says, once: no cache. */
		fo.cached = false;
		rc = fy_file_source_open(luns[i], &fo, &s->lun_src[i]);
		if (rc < 0) {
			rc = fy_err_wrap(rc, "san: LUN %s", luns[i]);
			goto fail;
		}
		snprintf(s->lun_names[i], sizeof(s->lun_names[i]), "%s",
			 luns[i]);
		s->luns[i] = (struct fy_vmfs_lun){
			.opaque = s->lun_src[i],
			.size = s->lun_src[i]->size,
			.name = s->lun_names[i],
			.pread = lun_pread,
		};
	}
	rc = fy_vmfs_open(s->luns, n, &v);
	if (rc == 0)
		rc = fy_vmfs_map_file(v, path, &s->map);
	fy_vmfs_free(v);
	if (rc < 0)
		goto fail;
	s->base.size = s->map.size;
	snprintf(s->base.name, sizeof(s->base.name), "vmfs:%s:%s", luns[0],
		 path);
	fy_debug("san: %s: %" PRIu64 " bytes in %zu runs (%" PRIu64 " data, %"
		 PRIu64 " holes, %" PRIu64 " to be zeroed)", s->base.name,
		 s->map.size, s->map.n, s->map.data_bytes, s->map.hole_bytes,
		 s->map.tbz_bytes);
	*out = &s->base;
	return 0;
fail:
	san_close(&s->base);
	return rc;
}

int fy_san_parse_spec(const char *spec, char *buf, size_t buflen,
		      const char **luns, size_t max_luns, size_t *n,
		      const char **path)
{
	char *colon, *p, *save = NULL, *tok;

	*n = 0;
	if (strlen(spec) >= buflen)
		return fy_err_set(-ENAMETOOLONG, "vmfs:%s: too long", spec);
	snprintf(buf, buflen, "%s", spec);
	colon = strchr(buf, ':');
	if (!colon || colon == buf || !colon[1])
		return fy_err_set(-EINVAL, "vmfs:%s: expected vmfs:LUN[,LUN2...]"
				  ":PATH/IN/VOLUME-flat.vmdk", spec);
	*colon = '\0';
	*path = colon + 1;
	for (p = buf; (tok = strtok_r(p, ",", &save)); p = NULL) {
		if (*n == max_luns)
			return fy_err_set(-E2BIG, "vmfs:%s: more than %zu LUNs",
					  spec, max_luns);
		luns[(*n)++] = tok;
	}
	if (!*n)
		return fy_err_set(-EINVAL, "vmfs:%s: no LUN", spec);
	return 0;
}
