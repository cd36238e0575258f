/*
 * libFuzzer target for the whole VMFS6 reader: a volume image in, extent
 * maps out. A real volume is at least 273 MiB, so the input describes
 * sparse LUNs (zeros except for the pages it lists):
 *   u8 luns (1-2), u8 segments per LUN (1-4),
 *   then records: u8 lun, u32 page (4 KiB units, little-endian),
 *                 u16 length, length bytes.
 * Every file of the root directory and of one level below is mapped; a
 * map must cover its file in order and point inside the LUNs.
 * tests/tools/vmfs_seed turns mkvmfs6 images into seeds.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "san/san.h"

#define PAGE 4096
#define MAX_NAMES 64

struct page {
	uint64_t offset;
	const uint8_t *data;
	size_t len;
};

struct vlun {
	struct page pages[512];
	size_t n;
};

static int vlun_pread(void *opaque, void *buf, size_t len, uint64_t offset)
{
	struct vlun *l = opaque;
	size_t i;

	memset(buf, 0, len);
	for (i = 0; i < l->n; i++) {
		const struct page *p = &l->pages[i];
		uint64_t a = p->offset > offset ? p->offset : offset;
		uint64_t b = p->offset + p->len < offset + len
				     ? p->offset + p->len : offset + len;

		if (a < b)
			memcpy((uint8_t *)buf + (a - offset),
			       p->data + (a - p->offset), (size_t)(b - a));
	}
	return 0;
}

struct names {
	char name[MAX_NAMES][260];
	bool dir[MAX_NAMES];
	size_t n;
};

static int collect(void *opaque, const char *name, bool is_dir)
{
	struct names *ns = opaque;

	if (ns->n == MAX_NAMES)
		return 1;
	snprintf(ns->name[ns->n], sizeof(ns->name[0]), "%s", name);
	ns->dir[ns->n++] = is_dir;
	return 0;
}

static void map_one(struct fy_vmfs *v, const char *path,
		    const struct fy_vmfs_lun *luns, size_t nluns)
{
	struct fy_vmfs_map m;
	uint64_t at = 0;
	size_t i;

	if (fy_vmfs_map_file(v, path, &m) < 0)
		return;
	for (i = 0; i < m.n; i++) {
		const struct fy_vmfs_run *r = &m.runs[i];

		if (r->offset != at || r->length == 0)
			abort();
		at += r->length;
		if (r->kind == FY_VMFS_RUN_DATA &&
		    (r->lun >= nluns || r->lun_offset > luns[r->lun].size ||
		     r->length > luns[r->lun].size - r->lun_offset))
			abort();
		if (r->kind == FY_VMFS_RUN_RESIDENT &&
		    r->offset + r->length > m.resident_len)
			abort();
	}
	if (at != m.size)
		abort();
	fy_vmfs_map_release(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vlun vl[2];
	struct fy_vmfs_lun luns[2];
	struct fy_vmfs *v = NULL;
	static struct names top, sub;
	size_t nluns, i, j, pos = 2;
	unsigned segs;

	if (size < 2)
		return 0;
	nluns = data[0] % 2 + 1;
	segs = data[1] % 4 + 1;
	for (i = 0; i < nluns; i++) {
		vl[i].n = 0;
		luns[i] = (struct fy_vmfs_lun){ &vl[i],
			(17ull << 20) + segs * (256ull << 20),
			i ? "lun1" : "lun0", vlun_pread };
	}
	while (pos + 7 <= size) {
		unsigned l = data[pos] % nluns;
		uint64_t page = (uint64_t)data[pos + 1] | data[pos + 2] << 8 |
				(uint64_t)data[pos + 3] << 16 |
				(uint64_t)data[pos + 4] << 24;
		size_t len = (size_t)(data[pos + 5] | data[pos + 6] << 8);

		pos += 7;
		if (len > size - pos)
			len = size - pos;
		if (vl[l].n < 512)
			vl[l].pages[vl[l].n++] = (struct page){ page * PAGE,
								data + pos, len };
		pos += len;
	}
	if (fy_vmfs_open(luns, nluns, &v) < 0)
		return 0;
	top.n = 0;
	fy_vmfs_list(v, ".", collect, &top);
	for (i = 0; i < top.n; i++) {
		char path[600];

		if (!top.dir[i]) {
			map_one(v, top.name[i], luns, nluns);
			continue;
		}
		sub.n = 0;
		fy_vmfs_list(v, top.name[i], collect, &sub);
		for (j = 0; j < sub.n; j++) {
			snprintf(path, sizeof(path), "%s/%s", top.name[i],
				 sub.name[j]);
			map_one(v, path, luns, nluns);
		}
	}
	fy_vmfs_free(v);
	return 0;
}
