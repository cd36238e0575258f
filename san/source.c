/*
 * The san source: a flat file on a VMFS6 volume, read through its extent
 * map. Each LUN is one of common's file sources (O_RDONLY | O_DIRECT,
 * libaio); a batch of reads becomes, per LUN, one batch of pieces at the
 * mapped offsets, started on every LUN before any is waited for, so
 * several requests are in flight on each. Holes and to-be-zeroed ranges
 * are zero-filled and never read from the LUN.
 */
#include "san/san.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define SAN_ALIGN 4096
/* The most pieces one batch may split into (bounded, grown as needed). */
#define MAX_PIECES (1u << 16)

/* One LUN's share of a batch: the pieces handed to its file source. */
struct lun_pieces {
	struct fy_io *ios;
	size_t *owner; /* the index of the caller's io each piece is of */
	size_t n, cap;
};

/* A batch started on the LUNs and not yet waited for. */
struct san_batch {
	struct fy_io *ios;
	size_t n;
	struct lun_pieces lun[FY_VMFS_MAX_LUNS];
	/* A start that failed on a LUN after others had started: those
	 * read into the caller's buffers, so the batch stays started, is
	 * waited for in its turn, and fails then with this. */
	size_t nluns_started;
	int start_rc;
	char start_msg[FY_ERR_MAX];
};

struct san_source {
	struct fy_source base; /* first: the table's functions cast back */
	struct fy_source *lun_src[FY_VMFS_MAX_LUNS];
	struct fy_vmfs_lun luns[FY_VMFS_MAX_LUNS];
	char lun_names[FY_VMFS_MAX_LUNS][256];
	size_t nluns;
	struct fy_vmfs_map map;
	/* Oldest first, in a ring; the piece arrays are kept for reuse. */
	struct san_batch started[FY_SOURCE_MAX_STARTED];
	unsigned oldest, nstarted;
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

/* Appends a piece for the caller's io number owner to lp. */
static int add_piece(struct san_source *s, struct lun_pieces *lp,
		     size_t total, struct fy_io piece, size_t owner)
{
	if (total >= MAX_PIECES)
		return fy_err_set(-E2BIG, "%s: a batch of reads is in more "
				  "than %u pieces", s->base.name, MAX_PIECES);
	if (lp->n == lp->cap) {
		size_t nc = lp->cap ? lp->cap * 2 : 64;
		void *p;

		p = realloc(lp->ios, nc * sizeof(*lp->ios));
		if (!p)
			return fy_err_set(-ENOMEM, "out of memory");
		lp->ios = p;
		p = realloc(lp->owner, nc * sizeof(*lp->owner));
		if (!p)
			return fy_err_set(-ENOMEM, "out of memory");
		lp->owner = p;
		lp->cap = nc;
	}
	lp->ios[lp->n] = piece;
	lp->owner[lp->n] = owner;
	lp->n++;
	return 0;
}

/*
 * Fills b's ios from the map: holes and to-be-zeroed ranges with zeros,
 * resident data from the descriptor, and the data runs as pieces of the
 * LUNs that hold them.
 */
static int split(struct san_source *s, struct san_batch *b)
{
	const struct fy_vmfs_map *m = &s->map;
	size_t i, l, total = 0;
	int rc;

	for (l = 0; l < s->nluns; l++)
		b->lun[l].n = 0;
	for (i = 0; i < b->n; i++)
		b->ios[i].result = 0;
	for (i = 0; i < b->n; i++) {
		struct fy_io *io = &b->ios[i];
		uint64_t pos = io->offset, end = io->offset + io->len;
		size_t r = run_find(m, pos);

		/* Past the end of the file: zeros. */
		if (end > m->size) {
			uint64_t from = pos > m->size ? pos : m->size;

			memset((char *)io->buf + (from - io->offset), 0,
			       (size_t)(end - from));
			end = from;
		}
		for (; pos < end && r < m->n; r++) {
			const struct fy_vmfs_run *run = &m->runs[r];
			uint64_t a = pos, e = run->offset + run->length;
			char *dst = (char *)io->buf + (a - io->offset);
			struct fy_io piece;

			if (e > end)
				e = end;
			switch (run->kind) {
			case FY_VMFS_RUN_DATA:
				/* The last piece of the file is rounded up
				 * to the alignment; its tail is zeroed after
				 * the read. */
				piece = (struct fy_io){
					.buf = dst,
					.len = (size_t)(e - a),
					.offset = run->lun_offset +
						  (a - run->offset),
				};
				if (e == m->size)
					piece.len = (piece.len + SAN_ALIGN - 1) &
						    ~(size_t)(SAN_ALIGN - 1);
				rc = add_piece(s, &b->lun[run->lun], total,
					       piece, i);
				if (rc < 0)
					return rc;
				total++;
				break;
			case FY_VMFS_RUN_RESIDENT:
				memcpy(dst, s->map.resident + a, (size_t)(e - a));
				break;
			default:
				memset(dst, 0, (size_t)(e - a));
				break;
			}
			pos = e;
		}
	}
	return 0;
}

/*
 * Waits for b's pieces on every LUN, in LUN order, and gives each caller's
 * io its pieces' first failure. Returns the first LUN's failure, with its
 * message.
 */
static int wait_luns(struct san_source *s, struct san_batch *b, size_t nluns)
{
	char msg[FY_ERR_MAX] = "";
	size_t l, k;
	int first = 0, rc;

	for (l = 0; l < nluns; l++) {
		struct lun_pieces *lp = &b->lun[l];

		if (!lp->n)
			continue;
		rc = fy_source_wait(s->lun_src[l], lp->ios, lp->n);
		for (k = 0; k < lp->n; k++)
			if (lp->ios[k].result < 0 &&
			    b->ios[lp->owner[k]].result == 0)
				b->ios[lp->owner[k]].result = lp->ios[k].result;
		if (rc < 0 && !first) {
			first = fy_err_wrap(rc, "%s", s->base.name);
			snprintf(msg, sizeof(msg), "%s", fy_err_msg());
		}
	}
	if (first)
		fy_err_set(first, "%s", msg);
	return first;
}

/* Every io of b without a failure of its own gets the batch's. */
static int fail_batch(struct san_batch *b, int rc)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		if (b->ios[i].result == 0)
			b->ios[i].result = rc;
	return rc;
}

static int san_start(struct fy_source *base, struct fy_io *ios, size_t n)
{
	struct san_source *s = (struct san_source *)base;
	struct san_batch *b;
	size_t l, k;
	int rc = 0;

	if (s->nstarted == FY_SOURCE_MAX_STARTED) {
		rc = fy_err_set(-EBUSY, "%s: %u batches started already",
				base->name, s->nstarted);
		for (l = 0; l < n; l++)
			ios[l].result = rc;
		return rc;
	}
	b = &s->started[(s->oldest + s->nstarted) % FY_SOURCE_MAX_STARTED];
	b->ios = ios;
	b->n = n;
	rc = split(s, b);
	if (rc < 0)
		return fail_batch(b, rc);
	for (l = 0; l < s->nluns; l++) {
		if (!b->lun[l].n)
			continue;
		rc = fy_source_start(s->lun_src[l], b->lun[l].ios, b->lun[l].n);
		if (rc < 0)
			break;
	}
	b->nluns_started = l;
	b->start_rc = 0;
	if (rc < 0) {
		rc = fy_err_wrap(rc, "%s", base->name);
		for (k = 0; k < l; k++)
			if (b->lun[k].n)
				break;
		if (k == l)
			return fail_batch(b, rc); /* nothing was started */
		/* The LUNs started before this one read into the caller's
		 * buffers, behind any batch started earlier: the batch is
		 * waited for in its turn (san_wait), and fails then. */
		b->start_rc = rc;
		snprintf(b->start_msg, sizeof(b->start_msg), "%s",
			 fy_err_msg());
	}
	s->nstarted++;
	return 0;
}

static int san_wait(struct fy_source *base, struct fy_io *ios, size_t n)
{
	struct san_source *s = (struct san_source *)base;
	const struct fy_vmfs_map *m = &s->map;
	struct san_batch *b = &s->started[s->oldest];
	size_t i;
	int rc;

	if (s->nstarted == 0 || b->ios != ios || b->n != n)
		return fy_err_set(-EINVAL, "%s: wait for a batch that is not "
				  "the oldest one started", base->name);
	rc = wait_luns(s, b, b->nluns_started);
	if (b->start_rc < 0) {
		rc = fy_err_set(b->start_rc, "%s", b->start_msg);
		s->oldest = (s->oldest + 1) % FY_SOURCE_MAX_STARTED;
		s->nstarted--;
		return fail_batch(b, rc);
	}
	/* Zero what lies past the file's end inside the rounded last piece. */
	for (i = 0; i < n; i++) {
		uint64_t end = ios[i].offset + ios[i].len;

		if (ios[i].offset < m->size && end > m->size)
			memset((char *)ios[i].buf + (m->size - ios[i].offset), 0,
			       (size_t)(end - m->size));
	}
	s->oldest = (s->oldest + 1) % FY_SOURCE_MAX_STARTED;
	s->nstarted--;
	return rc < 0 ? fail_batch(b, rc) : 0;
}

static int san_read_batch(struct fy_source *base, struct fy_io *ios, size_t n)
{
	struct san_source *s = (struct san_source *)base;
	size_t i;
	int rc;

	if (s->nstarted > 0) {
		for (i = 0; i < n; i++)
			ios[i].result = -EBUSY;
		return fy_err_set(-EBUSY, "%s: read while %u batches are "
				  "started", base->name, s->nstarted);
	}
	rc = san_start(base, ios, n);
	return rc < 0 ? rc : san_wait(base, ios, n);
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
	size_t i, l;

	for (i = 0; i < s->nluns; i++)
		fy_source_close(s->lun_src[i]);
	for (i = 0; i < FY_SOURCE_MAX_STARTED; i++) {
		for (l = 0; l < FY_VMFS_MAX_LUNS; l++) {
			free(s->started[i].lun[l].ios);
			free(s->started[i].lun[l].owner);
		}
	}
	fy_vmfs_map_release(&s->map);
	free(s);
}

static const struct fy_source_ops san_ops = {
	.name = "san",
	.read = san_read,
	.read_batch = san_read_batch,
	.start = san_start,
	.wait = san_wait,
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
	/* Data is read with O_DIRECT in SAN_ALIGN units: a volume whose
	 * data sits off that grid (a partition at sector 63, an LVM data
	 * offset of 512-byte units) is refused here, not mid-backup. */
	for (i = 0; i < s->map.n; i++) {
		const struct fy_vmfs_run *run = &s->map.runs[i];

		if (run->kind == FY_VMFS_RUN_DATA &&
		    run->lun_offset % SAN_ALIGN) {
			rc = fy_err_set(-ENOTSUP, "vmfs: %s: data at LUN "
					"offset %" PRIu64 " of %s is not %u-byte "
					"aligned: not supported", path,
					run->lun_offset, s->lun_names[run->lun],
					SAN_ALIGN);
			goto fail;
		}
	}
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
