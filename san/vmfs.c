/*
 * The VMFS6 reader: from LUNs to the extent map of one file.
 *
 * Read order: each LUN's partition and LVM header (which segments of the
 * logical volume it holds), the FS descriptor, the file descriptor of
 * .fdc.sf at the place the FS descriptor implies, then every other
 * descriptor through .fdc.sf, the resource files' metadata, directories
 * from the root down, and the file's block pointers. Every number read is
 * checked before it is used as a size, count or offset; errors name the
 * structure and where it was read ("vmfs: .sbc.sf metadata at volume
 * offset 11534336: signature 0x0, expected rfmd").
 */
#include "san/san.h"
#include "san/vmfs_format.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct lun {
	const struct fy_vmfs_lun *io;
	uint64_t part_offset; /* VMFS partition on the LUN */
	uint64_t part_length;
	uint64_t data_offset; /* first segment, from the partition start */
	uint64_t first_seg, num_segs;
	uint32_t index; /* in the caller's array */
};

/* A resource file: its descriptor's block map and its metadata. */
struct resource {
	const char *name;
	bool present;
	uint64_t file_size;
	uint64_t *blocks; /* volume offset of each file block, 0 = none */
	uint64_t nblocks;
	uint32_t block_size;
	uint32_t rpc, cpg, resource_size;
	uint64_t cg_offset, cg_size, num_cg;
};

/* A file descriptor, parsed. */
struct fd {
	uint32_t addr;
	uint32_t type;
	uint32_t zla;
	uint64_t length;
	uint64_t block_size;
	uint64_t volume_offset; /* of the descriptor, for messages */
	uint64_t addrs[FD_ADDRS];
	uint8_t resident[4096];
	size_t resident_len;
};

struct fy_vmfs {
	struct lun luns[FY_VMFS_MAX_LUNS];
	size_t nluns;
	uint64_t size; /* logical volume */
	uint8_t lvm_uuid[16];
	char label[FS_LABEL_LEN + 1];
	uint64_t file_block; /* small file block size */
	unsigned file_block_shift, lfb_shift;
	uint32_t sub_block, md_alignment, fd_size;
	uint32_t sfb_per_cluster;
	struct resource fdc, sbc, pbc, pb2;
};

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static unsigned log2u(uint64_t x)
{
	unsigned n = 0;

	while (x > 1) {
		x >>= 1;
		n++;
	}
	return n;
}

static int lun_read(const struct fy_vmfs_lun *l, void *buf, size_t len,
		    uint64_t offset, const char *what)
{
	int rc;

	if (offset > l->size || len > l->size - offset)
		return fy_err_set(-EIO, "vmfs: %s at offset %" PRIu64 " of %s: "
				  "past its end (%" PRIu64 " bytes)", what,
				  offset, l->name, l->size);
	rc = l->pread(l->opaque, buf, len, offset);
	if (rc < 0)
		return fy_err_wrap(rc, "vmfs: %s at offset %" PRIu64 " of %s",
				   what, offset, l->name);
	return 0;
}

/* ---- the logical volume --------------------------------------------------- */

/* The LUN holding logical offset off, and how many bytes of it follow. */
static const struct lun *vol_lun(const struct fy_vmfs *v, uint64_t off,
				 uint64_t *lun_off, uint64_t *avail)
{
	uint64_t seg = off / LVM_SEGMENT;
	size_t i;

	for (i = 0; i < v->nluns; i++) {
		const struct lun *l = &v->luns[i];

		if (seg >= l->first_seg && seg < l->first_seg + l->num_segs) {
			uint64_t rel = off - l->first_seg * LVM_SEGMENT;

			*lun_off = l->part_offset + l->data_offset + rel;
			*avail = l->num_segs * LVM_SEGMENT - rel;
			return l;
		}
	}
	return NULL;
}

static int vol_read(const struct fy_vmfs *v, void *buf, size_t len,
		    uint64_t off, const char *what)
{
	uint8_t *p = buf;

	if (off > v->size || len > v->size - off)
		return fy_err_set(-EIO, "vmfs: %s at volume offset %" PRIu64
				  " (%zu bytes) is outside the volume (%" PRIu64
				  " bytes)", what, off, len, v->size);
	while (len) {
		uint64_t lo, avail;
		const struct lun *l = vol_lun(v, off, &lo, &avail);
		size_t n;
		int rc;

		if (!l)
			return fy_err_set(-EIO, "vmfs: %s at volume offset %"
					  PRIu64 ": no LUN holds it", what, off);
		n = len < avail ? len : (size_t)avail;
		rc = lun_read(l->io, p, n, lo, what);
		if (rc < 0)
			return rc;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* ---- partitions and the LVM -------------------------------------------- */

static bool guid_is_vmfs(const uint8_t *g)
{
	/* AA31E02A-400F-11DB-9590-000C2911D1B8 as GPT stores it */
	static const uint8_t vmfs[16] = {
		0x2a, 0xe0, 0x31, 0xaa, 0x0f, 0x40, 0xdb, 0x11,
		0x95, 0x90, 0x00, 0x0c, 0x29, 0x11, 0xd1, 0xb8,
	};

	return !memcmp(g, vmfs, 16);
}

static uint32_t crc32_table[256];

static uint32_t crc32(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	size_t i;

	if (!crc32_table[1]) {
		for (i = 0; i < 256; i++) {
			uint32_t x = (uint32_t)i;
			int k;

			for (k = 0; k < 8; k++)
				x = x & 1 ? 0xedb88320u ^ (x >> 1) : x >> 1;
			crc32_table[i] = x;
		}
	}
	for (i = 0; i < n; i++)
		c = crc32_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

static int gpt_find(const struct fy_vmfs_lun *l, uint64_t *offset,
		    uint64_t *length)
{
	uint8_t hdr[512], *entries = NULL;
	uint32_t hsize, nent, esize, i;
	uint64_t elba, sectors = l->size / 512;
	size_t total;
	int rc, found = 0;

	rc = lun_read(l, hdr, sizeof(hdr), 512, "GPT header");
	if (rc < 0)
		return rc;
	if (memcmp(hdr, GPT_SIGNATURE, 8))
		return fy_err_set(-EINVAL, "vmfs: %s: protective MBR but no "
				  "GPT header at offset 512", l->name);
	hsize = le32(hdr + 12);
	if (hsize < 92 || hsize > 512)
		return fy_err_set(-EINVAL, "vmfs: %s: GPT header at offset 512 "
				  "claims %u bytes", l->name, hsize);
	{
		uint32_t want = le32(hdr + 16);

		memset(hdr + 16, 0, 4);
		if (crc32(hdr, hsize) != want)
			return fy_err_set(-EINVAL, "vmfs: %s: GPT header at "
					  "offset 512: checksum mismatch",
					  l->name);
	}
	elba = le64(hdr + 72);
	nent = le32(hdr + 80);
	esize = le32(hdr + 84);
	if (nent == 0 || nent > GPT_MAX_ENTRIES || esize < 128 ||
	    esize > 1024 || esize % 8 || elba < 2 || elba >= sectors)
		return fy_err_set(-EINVAL, "vmfs: %s: GPT header at offset 512: "
				  "%u entries of %u bytes at sector %" PRIu64
				  " is not a partition table", l->name, nent,
				  esize, elba);
	total = (size_t)nent * esize;
	entries = malloc(total);
	if (!entries)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = lun_read(l, entries, total, elba * 512, "GPT entries");
	if (rc < 0)
		goto out;
	if (crc32(entries, total) != le32(hdr + 88)) {
		rc = fy_err_set(-EINVAL, "vmfs: %s: GPT entries at offset %"
				PRIu64 ": checksum mismatch", l->name,
				elba * 512);
		goto out;
	}
	for (i = 0; i < nent; i++) {
		const uint8_t *e = entries + (size_t)i * esize;
		uint64_t first = le64(e + 32), last = le64(e + 40);

		if (!guid_is_vmfs(e))
			continue;
		if (found++) {
			rc = fy_err_set(-EINVAL, "vmfs: %s: GPT has more than "
					"one VMFS partition", l->name);
			goto out;
		}
		if (first == 0 || last < first || last >= sectors) {
			rc = fy_err_set(-EINVAL, "vmfs: %s: GPT entry %u: VMFS "
					"partition at sectors %" PRIu64 "-%" PRIu64
					" is not inside the LUN (%" PRIu64
					" sectors)", l->name, i, first, last,
					sectors);
			goto out;
		}
		*offset = first * 512;
		*length = (last - first + 1) * 512;
	}
	if (!found)
		rc = fy_err_set(-ENOENT, "vmfs: %s: its GPT has no VMFS "
				"partition (type AA31E02A-400F-11DB-9590-"
				"000C2911D1B8)", l->name);
out:
	free(entries);
	return rc;
}

int fy_vmfs_find_partition(const struct fy_vmfs_lun *l, uint64_t *offset,
			   uint64_t *length)
{
	uint8_t mbr[512], magic[4];
	int rc, i;

	if (l->size < LVM_HEADER_OFFSET + 4096)
		return fy_err_set(-EINVAL, "vmfs: %s is %" PRIu64 " bytes: too "
				  "small to hold a VMFS volume", l->name,
				  l->size);
	rc = lun_read(l, mbr, sizeof(mbr), 0, "partition table");
	if (rc < 0)
		return rc;
	if (mbr[510] == 0x55 && mbr[511] == 0xaa) {
		for (i = 0; i < 4; i++) {
			const uint8_t *e = mbr + 446 + 16 * i;
			uint64_t start = le32(e + 8), count = le32(e + 12);

			if (e[4] == MBR_TYPE_GPT)
				return gpt_find(l, offset, length);
			if (e[4] == MBR_TYPE_VMFS && start && count &&
			    (start + count) * 512 <= l->size) {
				*offset = start * 512;
				*length = count * 512;
				return 0;
			}
		}
	}
	rc = lun_read(l, magic, 4, LVM_HEADER_OFFSET, "LVM header");
	if (rc < 0)
		return rc;
	if (le32(magic) == LVM_MAGIC) {
		*offset = 0;
		*length = l->size;
		return 0;
	}
	return fy_err_set(-ENOENT, "vmfs: %s: no VMFS partition (no GPT or MBR "
			  "entry of VMFS type, no LVM header at offset %u)",
			  l->name, LVM_HEADER_OFFSET);
}

static int lvm_read(struct fy_vmfs *v, struct lun *l, uint8_t uuid[16],
		    uint64_t *logical, uint32_t *ndevs)
{
	uint8_t h[8192];
	const uint8_t *vol;
	uint64_t at = l->part_offset + LVM_HEADER_OFFSET, need;
	uint32_t major, md;
	int rc;

	rc = lun_read(l->io, h, sizeof(h), at, "LVM header");
	if (rc < 0)
		return rc;
	if (le32(h) != LVM_MAGIC)
		return fy_err_set(-EINVAL, "vmfs: %s: LVM header at offset %"
				  PRIu64 ": magic 0x%08x, expected 0x%08x",
				  l->io->name, at, le32(h), LVM_MAGIC);
	major = le32(h + LVM_OFS_MAJOR);
	if (major == LVM_MAJOR_VMFS5 || major < LVM_MAJOR_VMFS5)
		return fy_err_set(-ENOTSUP, "vmfs: %s: LVM header at offset %"
				  PRIu64 ": version %u is a VMFS5 (or older) "
				  "volume; Ferry reads VMFS6 only", l->io->name,
				  at, major);
	if (major != LVM_MAJOR_VMFS6)
		return fy_err_set(-ENOTSUP, "vmfs: %s: LVM header at offset %"
				  PRIu64 ": unknown version %u", l->io->name,
				  at, major);
	md = le32(h + LVM_OFS_MD_ALIGNMENT);
	if (md != 4096)
		return fy_err_set(-ENOTSUP, "vmfs: %s: LVM header at offset %"
				  PRIu64 ": metadata alignment %u is not "
				  "supported (4096 only)", l->io->name, at, md);
	vol = h + md;
	l->data_offset = le64(h + LVM_OFS_DATA_OFFSET);
	l->num_segs = le32(vol + LVM_VOL_OFS_NUM_PES);
	l->first_seg = le64(vol + LVM_VOL_OFS_FIRST_PE);
	if (l->data_offset < LVM_HEADER_OFFSET + 2 * md ||
	    l->data_offset >= l->part_length || l->data_offset % 512)
		return fy_err_set(-EINVAL, "vmfs: %s: LVM header at offset %"
				  PRIu64 ": data offset %" PRIu64 " is outside "
				  "the partition (%" PRIu64 " bytes)",
				  l->io->name, at, l->data_offset,
				  l->part_length);
	if (l->num_segs == 0 || l->num_segs > LVM_MAX_SEGMENTS ||
	    l->first_seg > LVM_MAX_SEGMENTS ||
	    le64(vol + LVM_VOL_OFS_LAST_PE) != l->first_seg + l->num_segs - 1)
		return fy_err_set(-EINVAL, "vmfs: %s: LVM volume descriptor at "
				  "offset %" PRIu64 ": segments %" PRIu64 "-%"
				  PRIu64 " (%" PRIu64 " of them) do not add up",
				  l->io->name, at + md, l->first_seg,
				  le64(vol + LVM_VOL_OFS_LAST_PE),
				  l->num_segs);
	need = l->data_offset + l->num_segs * LVM_SEGMENT;
	if (need > l->part_length)
		return fy_err_set(-EINVAL, "vmfs: %s: its VMFS partition is %"
				  PRIu64 " bytes, its LVM extent (segments %"
				  PRIu64 "-%" PRIu64 ") needs %" PRIu64
				  ": truncated, or not the LUN the volume was "
				  "made on", l->io->name, l->part_length,
				  l->first_seg,
				  l->first_seg + l->num_segs - 1, need);
	memcpy(uuid, vol + LVM_VOL_OFS_UUID, 16);
	*logical = le64(vol + LVM_VOL_OFS_SIZE);
	*ndevs = le32(vol + LVM_VOL_OFS_NUM_DEVS);
	(void)v;
	return 0;
}

static int cmp_lun(const void *a, const void *b)
{
	const struct lun *x = a, *y = b;

	return x->first_seg < y->first_seg ? -1 : x->first_seg > y->first_seg;
}

static int volume_open(struct fy_vmfs *v, const struct fy_vmfs_lun *luns,
		       size_t n)
{
	uint64_t logical = 0, next = 0;
	uint32_t ndevs = 0;
	size_t i;
	int rc;

	if (n == 0 || n > FY_VMFS_MAX_LUNS)
		return fy_err_set(-EINVAL, "vmfs: %zu LUNs given (1 to %d)", n,
				  FY_VMFS_MAX_LUNS);
	v->nluns = n;
	for (i = 0; i < n; i++) {
		struct lun *l = &v->luns[i];
		uint8_t uuid[16];
		uint64_t lsize;
		uint32_t nd;

		l->io = &luns[i];
		l->index = (uint32_t)i;
		rc = fy_vmfs_find_partition(l->io, &l->part_offset,
					    &l->part_length);
		if (rc < 0)
			return rc;
		rc = lvm_read(v, l, uuid, &lsize, &nd);
		if (rc < 0)
			return rc;
		if (i == 0) {
			memcpy(v->lvm_uuid, uuid, 16);
			logical = lsize;
			ndevs = nd;
		} else if (memcmp(uuid, v->lvm_uuid, 16)) {
			return fy_err_set(-EINVAL, "vmfs: %s belongs to another "
					  "volume than %s (LVM uuids differ)",
					  l->io->name, luns[0].name);
		} else if (lsize != logical || nd != ndevs) {
			return fy_err_set(-EINVAL, "vmfs: %s and %s disagree on "
					  "the volume's size or LUN count",
					  l->io->name, luns[0].name);
		}
	}
	if (ndevs != n)
		return fy_err_set(-EINVAL, "vmfs: the volume spans %u LUNs, %zu "
				  "given", ndevs, n);
	qsort(v->luns, n, sizeof(v->luns[0]), cmp_lun);
	for (i = 0; i < n; i++) {
		if (v->luns[i].first_seg != next)
			return fy_err_set(-EINVAL, "vmfs: %s holds segments from "
					  "%" PRIu64 ", expected %" PRIu64 ": %s",
					  v->luns[i].io->name,
					  v->luns[i].first_seg, next,
					  v->luns[i].first_seg < next
					  ? "two LUNs hold the same segments"
					  : "a LUN of the volume is missing");
		next += v->luns[i].num_segs;
	}
	v->size = next * LVM_SEGMENT;
	if (logical == 0 || logical > v->size)
		return fy_err_set(-EINVAL, "vmfs: LVM volume size %" PRIu64
				  " does not fit its %" PRIu64 " segments",
				  logical, next);
	v->size = logical;
	return 0;
}

/* ---- the FS descriptor ------------------------------------------------- */

static int fs_read(struct fy_vmfs *v)
{
	uint8_t d[FS_DESC_LEN];
	uint32_t magic, major, sfb_to_lfb;
	int rc;

	rc = vol_read(v, d, sizeof(d), FS_DESC_OFFSET, "FS descriptor");
	if (rc < 0)
		return rc;
	magic = le32(d);
	major = le32(d + FS_OFS_MAJOR);
	if (magic == FS_MAGIC_VMFSL)
		return fy_err_set(-ENOTSUP, "vmfs: FS descriptor at volume "
				  "offset %u: a VMFS-L (ESXi system) volume, "
				  "not a datastore", FS_DESC_OFFSET);
	if (magic != FS_MAGIC)
		return fy_err_set(-EINVAL, "vmfs: FS descriptor at volume offset "
				  "%u: magic 0x%08x, expected 0x%08x",
				  FS_DESC_OFFSET, magic, FS_MAGIC);
	if (major < FS_MAJOR_VMFS6)
		return fy_err_set(-ENOTSUP, "vmfs: FS descriptor at volume "
				  "offset %u: version %u is VMFS5 or older; "
				  "Ferry reads VMFS6 only", FS_DESC_OFFSET,
				  major);
	if (major != FS_MAJOR_VMFS6)
		return fy_err_set(-ENOTSUP, "vmfs: FS descriptor at volume "
				  "offset %u: unknown version %u",
				  FS_DESC_OFFSET, major);
	if (memcmp(d + FS_OFS_LVM_UUID, v->lvm_uuid, 16))
		return fy_err_set(-EINVAL, "vmfs: FS descriptor at volume offset "
				  "%u belongs to another LVM volume",
				  FS_DESC_OFFSET);
	memcpy(v->label, d + FS_OFS_LABEL, FS_LABEL_LEN);
	v->label[FS_LABEL_LEN] = '\0';
	v->file_block = le64(d + FS_OFS_FILE_BLOCK_SIZE);
	v->sub_block = le32(d + FS_OFS_SUB_BLOCK_SIZE);
	v->md_alignment = le32(d + FS_OFS_MD_ALIGNMENT);
	sfb_to_lfb = le16(d + FS_OFS_SFB_TO_LFB_SHIFT);
	if (!is_pow2(v->file_block) || v->file_block < (64u << 10) ||
	    v->file_block > (64u << 20))
		return fy_err_set(-EINVAL, "vmfs: FS descriptor at volume "
				  "offset %u: file block size %" PRIu64
				  " is not a power of two from 64 KiB to "
				  "64 MiB", FS_DESC_OFFSET, v->file_block);
	if (v->sub_block != 65536)
		return fy_err_set(-ENOTSUP, "vmfs: FS descriptor at volume "
				  "offset %u: sub-block size %u is not "
				  "supported (64 KiB only)", FS_DESC_OFFSET,
				  v->sub_block);
	if (v->md_alignment != 4096)
		return fy_err_set(-ENOTSUP, "vmfs: FS descriptor at volume "
				  "offset %u: metadata alignment %u is not "
				  "supported (4096 only)", FS_DESC_OFFSET,
				  v->md_alignment);
	if (sfb_to_lfb > 12)
		return fy_err_set(-EINVAL, "vmfs: FS descriptor at volume "
				  "offset %u: large file block shift %u",
				  FS_DESC_OFFSET, sfb_to_lfb);
	v->file_block_shift = log2u(v->file_block);
	v->lfb_shift = v->file_block_shift + sfb_to_lfb;
	v->fd_size = 2 * v->md_alignment;
	/* min(0x2000, 512 MiB / file block), as ESXi lays out .fbb.sf */
	v->sfb_per_cluster = (uint32_t)((512ull << 20) >> v->file_block_shift);
	if (v->sfb_per_cluster > 0x2000)
		v->sfb_per_cluster = 0x2000;
	return 0;
}

/* ---- addresses to volume ranges ---------------------------------------- */

/* A data block: where it starts on the volume and how long it is. */
static int block_volume(const struct fy_vmfs *v, uint64_t addr,
			uint64_t *off, uint64_t *len, const char *what)
{
	uint64_t block;
	unsigned shift;

	switch (ADDR_TYPE(addr)) {
	case ADDR_SFB:
		if (SFB_RESOURCE(addr) >= v->sfb_per_cluster)
			return fy_err_set(-EINVAL, "vmfs: %s: small file block "
					  "address 0x%" PRIx64 " has resource "
					  "%" PRIu64 " of %u per cluster", what,
					  addr, SFB_RESOURCE(addr),
					  v->sfb_per_cluster);
		block = SFB_CLUSTER(addr) * v->sfb_per_cluster +
			SFB_RESOURCE(addr);
		shift = v->file_block_shift;
		break;
	case ADDR_LFB:
		block = LFB_BLOCK(addr);
		shift = v->lfb_shift;
		break;
	default:
		return fy_err_set(-EINVAL, "vmfs: %s: address 0x%" PRIx64
				  " of type %u where a file block is expected",
				  what, addr, ADDR_TYPE(addr));
	}
	*len = 1ull << shift;
	if (block > (v->size >> shift) || (block << shift) > v->size - *len)
		return fy_err_set(-EINVAL, "vmfs: %s: file block address 0x%"
				  PRIx64 " (volume offset %" PRIu64 ") is "
				  "outside the volume (%" PRIu64 " bytes)",
				  what, addr, block << shift, v->size);
	*off = block << shift;
	return 0;
}

/* Reads [off, off+len) of a resource file through its block map. */
static int res_file_read(const struct fy_vmfs *v, const struct resource *r,
			 void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	if (off > r->file_size || len > r->file_size - off)
		return fy_err_set(-EIO, "vmfs: %s: %zu bytes at offset %" PRIu64
				  " are past its end (%" PRIu64 " bytes)",
				  r->name, len, off, r->file_size);
	while (len) {
		uint64_t bi = off / r->block_size, in = off % r->block_size;
		size_t n = r->block_size - in < len ? r->block_size - in : len;
		int rc;

		if (!r->blocks[bi])
			return fy_err_set(-EIO, "vmfs: %s: block %" PRIu64
					  " is not allocated", r->name, bi);
		rc = vol_read(v, p, n, r->blocks[bi] + in, r->name);
		if (rc < 0)
			return rc;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* Offset in the resource file of (cluster, resource). */
static int res_offset(const struct resource *r, uint64_t cluster,
		      uint64_t resource, uint64_t *off, uint64_t addr)
{
	uint64_t group = cluster / r->cpg, o;

	if (!r->present)
		return fy_err_set(-EINVAL, "vmfs: address 0x%" PRIx64 " points "
				  "into %s, which holds no resources", addr,
				  r->name);
	if (resource >= r->rpc || group >= r->num_cg)
		return fy_err_set(-EINVAL, "vmfs: address 0x%" PRIx64 " (cluster "
				  "%" PRIu64 ", resource %" PRIu64 ") is outside "
				  "%s (%" PRIu64 " groups of %u clusters of %u)",
				  addr, cluster, resource, r->name, r->num_cg,
				  r->cpg, r->rpc);
	o = r->cg_offset + group * r->cg_size +
	    (uint64_t)r->cpg * 8192 +
	    (cluster % r->cpg) * (uint64_t)r->rpc * r->resource_size +
	    resource * r->resource_size;
	if (o + r->resource_size > r->file_size)
		return fy_err_set(-EINVAL, "vmfs: address 0x%" PRIx64 " is past "
				  "the end of %s", addr, r->name);
	*off = o;
	return 0;
}

/* ---- file descriptors ------------------------------------------------ */

static int fd_parse(struct fy_vmfs *v, const uint8_t *b, uint32_t addr,
		    uint64_t at, struct fd *fd)
{
	const uint8_t *m = b + v->md_alignment;
	uint32_t shift;
	size_t i;

	memset(fd, 0, sizeof(*fd));
	fd->addr = addr;
	fd->volume_offset = at;
	if (le32(b) != FD_LOCK_MAGIC)
		return fy_err_set(-EINVAL, "vmfs: file descriptor 0x%08x at "
				  "volume offset %" PRIu64 ": lock magic 0x%08x, "
				  "expected 0x%08x", addr, at, le32(b),
				  FD_LOCK_MAGIC);
	if (le32(m + FDM_OFS_ADDR) != addr)
		return fy_err_set(-EINVAL, "vmfs: file descriptor 0x%08x at "
				  "volume offset %" PRIu64 " says it is 0x%08x",
				  addr, at, le32(m + FDM_OFS_ADDR));
	fd->type = le32(m + FDM_OFS_TYPE);
	fd->zla = le32(m + FDM_OFS_ZLA);
	fd->length = le64(m + FDM_OFS_LENGTH);
	fd->block_size = le64(m + FDM_OFS_BLOCK_SIZE);
	shift = m[FDM_OFS_BLOCK_SHIFT];
	if (fd->type < FD_TYPE_DIR || fd->type > FD_TYPE_RDM)
		return fy_err_set(-EINVAL, "vmfs: file descriptor 0x%08x at "
				  "volume offset %" PRIu64 ": type %u", addr,
				  at, fd->type);
	if (fd->length > (1ull << 46))
		return fy_err_set(-EINVAL, "vmfs: file descriptor 0x%08x at "
				  "volume offset %" PRIu64 ": length %" PRIu64
				  " is larger than any VMFS6 file", addr, at,
				  fd->length);
	if (fd->block_size != v->sub_block &&
	    fd->block_size != v->file_block &&
	    fd->block_size != (1ull << v->lfb_shift))
		return fy_err_set(-EINVAL, "vmfs: file descriptor 0x%08x at "
				  "volume offset %" PRIu64 ": block size %"
				  PRIu64 " is none of the volume's", addr, at,
				  fd->block_size);
	if (shift && (1ull << shift) != fd->block_size)
		return fy_err_set(-EINVAL, "vmfs: file descriptor 0x%08x at "
				  "volume offset %" PRIu64 ": block shift %u "
				  "does not match block size %" PRIu64, addr,
				  at, shift, fd->block_size);
	if (fd->zla == ZLA_RESIDENT) {
		size_t room = v->md_alignment - FD_RESIDENT_HEADER;

		if (fd->length > room)
			return fy_err_set(-EINVAL, "vmfs: file descriptor 0x%08x "
					  "at volume offset %" PRIu64 ": %" PRIu64
					  " resident bytes do not fit in %zu",
					  addr, at, fd->length, room);
		fd->resident_len = (size_t)fd->length;
		memcpy(fd->resident, b + v->fd_size - room, fd->resident_len);
		return 0;
	}
	for (i = 0; i < FD_ADDRS; i++)
		fd->addrs[i] = le64(b + v->fd_size - FD_ADDRS_BYTES + 8 * i);
	return 0;
}

static int fd_read(struct fy_vmfs *v, uint32_t addr, struct fd *fd)
{
	uint8_t *b;
	uint64_t off = 0;
	int rc;

	if (ADDR_TYPE(addr) != ADDR_FD)
		return fy_err_set(-EINVAL, "vmfs: address 0x%08x of type %u "
				  "where a file descriptor is expected", addr,
				  ADDR_TYPE(addr));
	rc = res_offset(&v->fdc, FD_CLUSTER(addr), FD_RESOURCE(addr), &off,
			addr);
	if (rc < 0)
		return rc;
	b = malloc(v->fd_size);
	if (!b)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = res_file_read(v, &v->fdc, b, v->fd_size, off);
	if (rc == 0) {
		uint64_t bi = off / v->fdc.block_size;

		rc = fd_parse(v, b, addr, v->fdc.blocks[bi] +
			      off % v->fdc.block_size, fd);
	}
	free(b);
	return rc;
}

/* ---- walking a file's blocks --------------------------------------------- */

/* The pointer blocks already read for one file: a pointer block met twice
 * is a loop or a cross-link, and the file is refused. */
struct pb_seen {
	uint64_t *addrs;
	size_t n, cap;
};

#define PB_SEEN_MAX (1u << 20)

static int pb_seen_add(struct pb_seen *s, uint64_t addr, const struct fd *fd)
{
	size_t i;

	/* A file has at most 320 + 320 * 8192 pointer blocks; the set is
	 * kept as an open-addressing table. */
	if (s->n * 2 >= s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024, j;
		uint64_t *t;

		if (cap > 2 * PB_SEEN_MAX)
			return fy_err_set(-E2BIG, "vmfs: file descriptor 0x%08x "
					  "uses more than %u pointer blocks",
					  fd->addr, PB_SEEN_MAX);
		t = calloc(cap, sizeof(*t));
		if (!t)
			return fy_err_set(-ENOMEM, "out of memory");
		for (j = 0; j < s->cap; j++) {
			if (!s->addrs[j])
				continue;
			i = (size_t)(s->addrs[j] * 0x9E3779B97F4A7C15ull) &
			    (cap - 1);
			while (t[i])
				i = (i + 1) & (cap - 1);
			t[i] = s->addrs[j];
		}
		free(s->addrs);
		s->addrs = t;
		s->cap = cap;
	}
	i = (size_t)(addr * 0x9E3779B97F4A7C15ull) & (s->cap - 1);
	while (s->addrs[i]) {
		if (s->addrs[i] == addr)
			return fy_err_set(-ELOOP, "vmfs: file descriptor 0x%08x "
					  "at volume offset %" PRIu64 ": pointer "
					  "block 0x%" PRIx64 " is reached twice "
					  "(a loop or a cross-link)", fd->addr,
					  fd->volume_offset, addr);
		i = (i + 1) & (s->cap - 1);
	}
	s->addrs[i] = addr;
	s->n++;
	return 0;
}

/* Reads the pointer block at addr (in .sbc.sf, .pbc.sf, .pb2.sf or a
 * small file block: each pointer says where by its own type). */
static int pb_read(struct fy_vmfs *v, uint64_t addr, uint64_t *ptrs,
		   const struct fd *fd, struct pb_seen *seen)
{
	uint8_t *b;
	uint64_t off, len;
	const struct resource *r = NULL;
	size_t i;
	int rc;

	rc = pb_seen_add(seen, addr, fd);
	if (rc < 0)
		return rc;
	switch (ADDR_TYPE(addr)) {
	case ADDR_SB:
		r = &v->sbc;
		break;
	case ADDR_PB:
		r = &v->pbc;
		break;
	case ADDR_PB2:
		r = &v->pb2;
		break;
	case ADDR_SFB:
		break;
	default:
		return fy_err_set(-EINVAL, "vmfs: file descriptor 0x%08x at "
				  "volume offset %" PRIu64 ": address 0x%" PRIx64
				  " of type %u where a pointer block is "
				  "expected", fd->addr, fd->volume_offset, addr,
				  ADDR_TYPE(addr));
	}
	b = malloc(PB_POINTERS * 8);
	if (!b)
		return fy_err_set(-ENOMEM, "out of memory");
	if (r) {
		rc = res_offset(r, SB_CLUSTER(addr), SB_RESOURCE(addr), &off,
				addr);
		if (rc == 0 && r->resource_size < PB_POINTERS * 8)
			rc = fy_err_set(-EINVAL, "vmfs: %s resources are %u "
					"bytes, too small for a pointer block",
					r->name, r->resource_size);
		if (rc == 0)
			rc = res_file_read(v, r, b, PB_POINTERS * 8, off);
	} else {
		rc = block_volume(v, addr, &off, &len, "pointer block");
		if (rc == 0)
			rc = vol_read(v, b, PB_POINTERS * 8, off,
				      "pointer block");
	}
	if (rc == 0)
		for (i = 0; i < PB_POINTERS; i++)
			ptrs[i] = le64(b + 8 * i);
	free(b);
	if (rc < 0)
		return fy_err_wrap(rc, "file descriptor 0x%08x at volume "
				   "offset %" PRIu64, fd->addr,
				   fd->volume_offset);
	return rc;
}

/* Receives each block of a file in order: its address (0 = hole). */
typedef int (*block_cb)(void *opaque, uint64_t index, uint64_t addr);

static int fd_walk(struct fy_vmfs *v, const struct fd *fd, block_cb cb,
		   void *opaque)
{
	uint64_t nblocks, i, *l1 = NULL, *l2 = NULL, have1 = UINT64_MAX,
			     have2 = UINT64_MAX;
	struct pb_seen seen = { 0 };
	int rc = 0;

	nblocks = (fd->length + fd->block_size - 1) / fd->block_size;
	switch (fd->zla) {
	case ZLA_SFB:
	case ZLA_SB:
		if (nblocks > FD_ADDRS)
			return fy_err_set(-EINVAL, "vmfs: file descriptor 0x%08x "
					  "at volume offset %" PRIu64 ": %" PRIu64
					  " blocks in %d direct addresses",
					  fd->addr, fd->volume_offset, nblocks,
					  FD_ADDRS);
		for (i = 0; i < nblocks && rc == 0; i++)
			rc = cb(opaque, i, fd->addrs[i]);
		return rc;
	case ZLA_PB:
	case ZLA_PB2:
	case ZLA_DOUBLE:
		break;
	default:
		return fy_err_set(-ENOTSUP, "vmfs: file descriptor 0x%08x at "
				  "volume offset %" PRIu64 ": zero-level "
				  "address type 0x%x is not known", fd->addr,
				  fd->volume_offset, fd->zla);
	}
	{
		uint64_t per = fd->zla == ZLA_DOUBLE
				       ? (uint64_t)PB_POINTERS * PB_POINTERS
				       : PB_POINTERS;

		if (nblocks > per * FD_ADDRS)
			return fy_err_set(-EINVAL, "vmfs: file descriptor 0x%08x "
					  "at volume offset %" PRIu64 ": %" PRIu64
					  " blocks do not fit its pointer "
					  "blocks", fd->addr,
					  fd->volume_offset, nblocks);
	}
	l1 = malloc(PB_POINTERS * 8);
	l2 = malloc(PB_POINTERS * 8);
	if (!l1 || !l2) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < nblocks && rc == 0; i++) {
		uint64_t top, addr;

		if (fd->zla != ZLA_DOUBLE) {
			top = fd->addrs[i / PB_POINTERS];
			if (!top) {
				rc = cb(opaque, i, 0);
				continue;
			}
			if (have1 != i / PB_POINTERS) {
				rc = pb_read(v, top, l1, fd, &seen);
				if (rc < 0)
					break;
				have1 = i / PB_POINTERS;
			}
			rc = cb(opaque, i, l1[i % PB_POINTERS]);
			continue;
		}
		top = fd->addrs[i / ((uint64_t)PB_POINTERS * PB_POINTERS)];
		if (!top) {
			rc = cb(opaque, i, 0);
			continue;
		}
		if (have1 != i / ((uint64_t)PB_POINTERS * PB_POINTERS)) {
			rc = pb_read(v, top, l1, fd, &seen);
			if (rc < 0)
				break;
			have1 = i / ((uint64_t)PB_POINTERS * PB_POINTERS);
			have2 = UINT64_MAX;
		}
		addr = l1[(i / PB_POINTERS) % PB_POINTERS];
		if (!addr) {
			rc = cb(opaque, i, 0);
			continue;
		}
		if (have2 != i / PB_POINTERS) {
			rc = pb_read(v, addr, l2, fd, &seen);
			if (rc < 0)
				break;
			have2 = i / PB_POINTERS;
		}
		rc = cb(opaque, i, l2[i % PB_POINTERS]);
	}
out:
	free(l1);
	free(l2);
	free(seen.addrs);
	return rc;
}

/* ---- resource files -------------------------------------------------------- */

struct sys_blocks {
	struct fy_vmfs *v;
	struct resource *r;
};

static int sys_block_cb(void *opaque, uint64_t index, uint64_t addr)
{
	struct sys_blocks *s = opaque;
	uint64_t off = 0, len = 0;
	int rc;

	if (!addr) {
		s->r->blocks[index] = 0;
		return 0;
	}
	if (ADDR_TYPE(addr) != ADDR_SFB)
		return fy_err_set(-EINVAL, "vmfs: %s: block %" PRIu64 " has "
				  "address 0x%" PRIx64 " of type %u, not a "
				  "small file block", s->r->name, index, addr,
				  ADDR_TYPE(addr));
	rc = block_volume(s->v, addr, &off, &len, s->r->name);
	if (rc < 0)
		return rc;
	s->r->blocks[index] = off;
	return 0;
}

/* Maps a system file's blocks (small file blocks, direct or through
 * pointer blocks) from its descriptor. */
static int sys_map(struct fy_vmfs *v, struct resource *r, const struct fd *fd)
{
	struct sys_blocks s = { v, r };

	if (fd->type != FD_TYPE_SYSFILE)
		return fy_err_set(-EINVAL, "vmfs: %s: descriptor 0x%08x at "
				  "volume offset %" PRIu64 " has type %u, not "
				  "a system file", r->name, fd->addr,
				  fd->volume_offset, fd->type);
	if (fd->block_size != v->file_block || fd->zla == ZLA_RESIDENT)
		return fy_err_set(-EINVAL, "vmfs: %s: descriptor 0x%08x at "
				  "volume offset %" PRIu64 " is not made of "
				  "file blocks", r->name, fd->addr,
				  fd->volume_offset);
	if (fd->length > (1ull << 40))
		return fy_err_set(-EINVAL, "vmfs: %s is %" PRIu64 " bytes",
				  r->name, fd->length);
	r->file_size = fd->length;
	r->block_size = (uint32_t)v->file_block;
	r->nblocks = (fd->length + v->file_block - 1) / v->file_block;
	r->blocks = calloc(r->nblocks ? r->nblocks : 1, sizeof(uint64_t));
	if (!r->blocks)
		return fy_err_set(-ENOMEM, "out of memory");
	return fd_walk(v, fd, sys_block_cb, &s);
}

static int res_meta(struct fy_vmfs *v, struct resource *r, uint64_t at,
		    bool need_resources)
{
	uint8_t m[RES_META_LEN];
	uint64_t num, data;
	int rc;

	if (r->file_size < RES_META_LEN || at > r->file_size - RES_META_LEN)
		return fy_err_set(-EINVAL, "vmfs: %s is %" PRIu64 " bytes, too "
				  "small for its metadata", r->name,
				  r->file_size);
	rc = res_file_read(v, r, m, sizeof(m), at);
	if (rc < 0)
		return rc;
	if (le32(m + RES_OFS_SIGNATURE) != RES_SIGNATURE)
		return fy_err_set(-EINVAL, "vmfs: %s metadata at file offset %"
				  PRIu64 ": signature 0x%08x, expected 0x%08x "
				  "(rfmd)", r->name, at,
				  le32(m + RES_OFS_SIGNATURE), RES_SIGNATURE);
	r->rpc = le32(m + RES_OFS_RPC);
	r->cpg = le32(m + RES_OFS_CPG);
	r->cg_offset = le32(m + RES_OFS_CG_OFFSET);
	r->resource_size = le32(m + RES_OFS_RESOURCE_SIZE);
	r->cg_size = le32(m + RES_OFS_CG_SIZE);
	r->num_cg = le32(m + RES_OFS_NUM_CG);
	num = le32(m + RES_OFS_NUM_LO) | (uint64_t)le32(m + RES_OFS_NUM_HI) << 32;
	r->present = num > 0;
	if (!need_resources && !r->present)
		return 0;
	if (le32(m + RES_OFS_FLAGS) & RES_FLAG_PARENT)
		return fy_err_set(-ENOTSUP, "vmfs: %s metadata at file offset %"
				  PRIu64 ": nested cluster groups are not "
				  "supported", r->name, at);
	if (r->rpc == 0 || r->rpc > 65536 || r->cpg == 0 || r->cpg > 65536 ||
	    r->resource_size == 0 || r->resource_size > (1u << 30) ||
	    r->num_cg == 0 || r->num_cg > (1u << 24))
		return fy_err_set(-EINVAL, "vmfs: %s metadata at file offset %"
				  PRIu64 ": %u resources of %u bytes per "
				  "cluster, %u clusters per group, %" PRIu64
				  " groups: out of bounds", r->name, at, r->rpc,
				  r->resource_size, r->cpg, r->num_cg);
	data = (uint64_t)r->cpg * 8192 +
	       (uint64_t)r->cpg * r->rpc * r->resource_size;
	if (r->cg_size < data)
		return fy_err_set(-EINVAL, "vmfs: %s metadata at file offset %"
				  PRIu64 ": cluster group size %" PRIu64
				  " is smaller than its clusters (%" PRIu64 ")",
				  r->name, at, r->cg_size, data);
	if (r->cg_offset >= r->file_size)
		return fy_err_set(-EINVAL, "vmfs: %s metadata at file offset %"
				  PRIu64 ": first cluster group at %" PRIu64
				  " is past the file's end", r->name, at,
				  r->cg_offset);
	if (need_resources && !r->present)
		return fy_err_set(-EINVAL, "vmfs: %s holds no resources",
				  r->name);
	return 0;
}

static int open_resource(struct fy_vmfs *v, struct resource *r,
			 const char *name, uint32_t addr, bool need)
{
	struct fd *fd = malloc(sizeof(*fd));
	int rc;

	if (!fd)
		return fy_err_set(-ENOMEM, "out of memory");
	r->name = name;
	rc = fd_read(v, addr, fd);
	if (rc == 0)
		rc = sys_map(v, r, fd);
	if (rc == 0)
		rc = res_meta(v, r, 0, need);
	free(fd);
	return rc;
}

/* .fdc.sf is found where the FS descriptor implies, before any other
 * descriptor can be read. */
static int open_fdc(struct fy_vmfs *v)
{
	uint8_t d[FS_DESC_LEN], *b = NULL;
	struct fd *fd = NULL;
	uint64_t base, cg_off, cpg, at;
	int rc;

	rc = vol_read(v, d, sizeof(d), FS_DESC_OFFSET, "FS descriptor");
	if (rc < 0)
		return rc;
	cg_off = le32(d + FS_OFS_FDC_CG_OFFSET);
	cpg = le32(d + FS_OFS_FDC_CLUSTERS_PER_GROUP);
	if (cpg == 0 || cpg > 65536 || cg_off > (64u << 20))
		return fy_err_set(-EINVAL, "vmfs: FS descriptor at volume offset "
				  "%u: file descriptor cluster groups at %"
				  PRIu64 ", %" PRIu64 " clusters each: out of "
				  "bounds", FS_DESC_OFFSET, cg_off, cpg);
	/* ESXi's Res3_GetSFDOffset: the first cluster group of .fdc.sf
	 * starts at the first MiB boundary past the heartbeat region. */
	base = (((uint64_t)v->md_alignment << 10) + 0x3FFFFF) & ~0xFFFFFull;
	at = base + cg_off + cpg * v->fd_size + FD_RESOURCE(FDC_ADDR) * v->fd_size;
	b = malloc(v->fd_size);
	fd = malloc(sizeof(*fd));
	if (!b || !fd) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	rc = vol_read(v, b, v->fd_size, at, ".fdc.sf descriptor");
	if (rc < 0)
		goto out;
	rc = fd_parse(v, b, FDC_ADDR, at, fd);
	if (rc < 0)
		goto out;
	v->fdc.name = ".fdc.sf";
	rc = sys_map(v, &v->fdc, fd);
	if (rc < 0)
		goto out;
	rc = res_meta(v, &v->fdc, 0, true);
	if (rc < 0)
		goto out;
	if (v->fdc.cg_offset != cg_off || v->fdc.cpg != cpg ||
	    v->fdc.resource_size != v->fd_size)
		rc = fy_err_set(-EINVAL, "vmfs: .fdc.sf metadata disagrees with "
				"the FS descriptor (cluster groups at %" PRIu64
				" vs %" PRIu64 ", %u vs %" PRIu64 " clusters, "
				"descriptors of %u bytes)", v->fdc.cg_offset,
				cg_off, v->fdc.cpg, cpg,
				v->fdc.resource_size);
out:
	free(b);
	free(fd);
	return rc;
}

/* .fbb.sf: only the small-file-block layout (resources per cluster) is
 * needed to turn addresses into offsets. */
static int open_fbb(struct fy_vmfs *v)
{
	struct resource fbb = { 0 };
	struct fd *fd = malloc(sizeof(*fd));
	uint8_t m[RES_META_LEN];
	int rc;

	if (!fd)
		return fy_err_set(-ENOMEM, "out of memory");
	fbb.name = ".fbb.sf";
	rc = fd_read(v, FBB_ADDR, fd);
	if (rc == 0)
		rc = sys_map(v, &fbb, fd);
	if (rc == 0)
		rc = res_file_read(v, &fbb, m, sizeof(m), 0);
	if (rc == 0 && le32(m + RES_OFS_SIGNATURE) != RES_SIGNATURE)
		rc = fy_err_set(-EINVAL, "vmfs: .fbb.sf metadata at file offset "
				"0: signature 0x%08x, expected 0x%08x (rfmd)",
				le32(m + RES_OFS_SIGNATURE), RES_SIGNATURE);
	if (rc == 0) {
		uint32_t at = le32(m + RES_OFS_CHILD), rpc;

		/* Only the child's resources per cluster matter: small file
		 * blocks are on the volume, not in the file. */
		if (at < RES_META_LEN || at > fbb.file_size - RES_META_LEN)
			rc = fy_err_set(-EINVAL, "vmfs: .fbb.sf metadata: small "
					"file block metadata at file offset %u "
					"is outside the file", at);
		if (rc == 0)
			rc = res_file_read(v, &fbb, m, sizeof(m), at);
		if (rc == 0 && le32(m + RES_OFS_SIGNATURE) != RES_SIGNATURE)
			rc = fy_err_set(-EINVAL, "vmfs: .fbb.sf small file block "
					"metadata at file offset %u: signature "
					"0x%08x, expected 0x%08x (rfmd)", at,
					le32(m + RES_OFS_SIGNATURE),
					RES_SIGNATURE);
		rpc = le32(m + RES_OFS_RPC);
		if (rc == 0 && rpc != v->sfb_per_cluster)
			rc = fy_err_set(-ENOTSUP, "vmfs: .fbb.sf small file "
					"block metadata at file offset %u: %u "
					"blocks per cluster, expected %u", at,
					rpc, v->sfb_per_cluster);
	}
	free(fbb.blocks);
	free(fd);
	return rc;
}

/* ---- directories ---------------------------------------------------------- */

struct file_buf {
	struct fy_vmfs *v;
	uint8_t *data;
	uint64_t size;
	uint64_t block_size;
};

static int dir_block_cb(void *opaque, uint64_t index, uint64_t addr)
{
	struct file_buf *f = opaque;
	uint64_t off = 0, len = 0, at = index * f->block_size, n;
	int rc;

	n = f->size - at < f->block_size ? f->size - at : f->block_size;
	if (!addr)
		return 0; /* a hole in a directory reads as zeros */
	if (ADDR_TYPE(addr) == ADDR_SB) {
		uint64_t ro;

		rc = res_offset(&f->v->sbc, SB_CLUSTER(addr), SB_RESOURCE(addr),
				&ro, addr);
		if (rc == 0 && f->v->sbc.resource_size < n)
			rc = fy_err_set(-EINVAL, "vmfs: sub-block 0x%" PRIx64
					" is smaller than the directory's block",
					addr);
		return rc < 0 ? rc
			      : res_file_read(f->v, &f->v->sbc, f->data + at,
					      (size_t)n, ro);
	}
	rc = block_volume(f->v, addr, &off, &len, "directory");
	if (rc < 0)
		return rc;
	return vol_read(f->v, f->data + at, (size_t)n, off, "directory block");
}

static int dir_load(struct fy_vmfs *v, const struct fd *fd, uint8_t **data,
		    uint64_t *size)
{
	struct file_buf f = { v, NULL, fd->length, fd->block_size };
	int rc;

	if (fd->type != FD_TYPE_DIR && fd->type != FD_TYPE_SYSFILE)
		return fy_err_set(-ENOTDIR, "vmfs: descriptor 0x%08x is not a "
				  "directory", fd->addr);
	if (fd->length < DIR_HEADER_BLOCK || fd->length > DIR_MAX_SIZE)
		return fy_err_set(-EINVAL, "vmfs: directory 0x%08x at volume "
				  "offset %" PRIu64 " is %" PRIu64 " bytes (%u "
				  "to %u)", fd->addr, fd->volume_offset,
				  fd->length, DIR_HEADER_BLOCK, DIR_MAX_SIZE);
	if (fd->zla == ZLA_RESIDENT)
		return fy_err_set(-EINVAL, "vmfs: directory 0x%08x is resident",
				  fd->addr);
	f.data = calloc(1, (size_t)fd->length);
	if (!f.data)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = fd_walk(v, fd, dir_block_cb, &f);
	if (rc < 0) {
		free(f.data);
		return rc;
	}
	*data = f.data;
	*size = fd->length;
	return 0;
}

/* Calls cb(name, type, addr) for each entry of a loaded directory, the
 * way ESXi's readdir walks it: the allocation map blocks name the entry
 * blocks; in those, a clear bit marks a used slot. */
typedef int (*entry_cb)(void *opaque, const char *name, uint32_t type,
			uint32_t addr);

static int dir_iterate(const struct fy_vmfs *v, const struct fd *fd,
		       const uint8_t *d, uint64_t size, entry_cb cb,
		       void *opaque)
{
	uint32_t namap = le32(d + DIR_OFS_NUM_AMAP), a;
	uint64_t bs = v->md_alignment;
	uint64_t per_amap = 2 * (bs - DIR_BLOCK_HEADER);
	int rc;

	if (le32(d) != DIR_VERSION && le32(d) != DIR_VERSION_DEBUG)
		return fy_err_set(-EINVAL, "vmfs: directory 0x%08x at volume "
				  "offset %" PRIu64 ": version 0x%x, expected "
				  "0x%x", fd->addr, fd->volume_offset, le32(d),
				  DIR_VERSION);
	if (namap > DIR_MAX_AMAP)
		return fy_err_set(-EINVAL, "vmfs: directory 0x%08x at volume "
				  "offset %" PRIu64 ": %u allocation map "
				  "blocks (at most %d)", fd->addr,
				  fd->volume_offset, namap, DIR_MAX_AMAP);
	for (a = 0; a < namap; a++) {
		uint64_t ab = le32(d + DIR_OFS_AMAP + 4 * a), k;
		uint64_t aoff = DIR_HEADER_BLOCK + ab * bs;

		if (ab > size || aoff + bs > size)
			return fy_err_set(-EINVAL, "vmfs: directory 0x%08x: "
					  "allocation map block %" PRIu64
					  " is past its end", fd->addr, ab);
		for (k = 0; k < per_amap; k++) {
			uint8_t byte = d[aoff + DIR_BLOCK_HEADER + k / 2];
			unsigned nib = k % 2 ? byte & 0xf : byte >> 4;
			uint64_t blk = a * per_amap + k, boff, slots, s;
			const uint8_t *bh;

			if ((nib & 3) != DIR_BLOCK_DIRENT || (nib & 4))
				continue;
			boff = DIR_HEADER_BLOCK + blk * bs;
			if (boff + bs > size)
				break; /* not written yet: past the end */
			bh = d + boff;
			slots = le16(bh + 4);
			if (slots > (bs - DIR_BLOCK_HEADER) / DIR_ENTRY_LEN)
				return fy_err_set(-EINVAL, "vmfs: directory "
						  "0x%08x block %" PRIu64 ": %"
						  PRIu64 " slots", fd->addr,
						  blk, slots);
			for (s = 0; s < slots; s++) {
				const uint8_t *e = bh + DIR_BLOCK_HEADER +
						   s * DIR_ENTRY_LEN;
				char name[DIR_NAME_LEN + 1];

				if ((bh[8 + s / 8] >> (s % 8)) & 1)
					continue; /* free slot */
				memcpy(name, e + DIR_ENTRY_OFS_NAME,
				       DIR_NAME_LEN);
				name[DIR_NAME_LEN] = '\0';
				rc = cb(opaque, name,
					le32(e + DIR_ENTRY_OFS_TYPE),
					le32(e + DIR_ENTRY_OFS_ADDR));
				if (rc)
					return rc;
			}
		}
	}
	return 0;
}

struct lookup {
	const char *name;
	uint32_t addr, type;
	int found;
};

static int lookup_cb(void *opaque, const char *name, uint32_t type,
		     uint32_t addr)
{
	struct lookup *l = opaque;

	if (strcmp(name, l->name))
		return 0;
	l->found++;
	l->addr = addr;
	l->type = type;
	return 0;
}

/* Walks path from the root; fd gets the descriptor it names. */
static int resolve(struct fy_vmfs *v, const char *path, struct fd *fd)
{
	char buf[FY_VMFS_MAX_PATH + 1], *save = NULL, *tok;
	unsigned depth = 0;
	int rc;

	if (strlen(path) > FY_VMFS_MAX_PATH)
		return fy_err_set(-ENAMETOOLONG, "vmfs: path of %zu bytes (at "
				  "most %d)", strlen(path), FY_VMFS_MAX_PATH);
	snprintf(buf, sizeof(buf), "%s", path);
	rc = fd_read(v, ROOT_DIR_ADDR, fd);
	if (rc < 0)
		return fy_err_wrap(rc, "root directory");
	for (tok = strtok_r(buf, "/", &save); tok;
	     tok = strtok_r(NULL, "/", &save)) {
		struct lookup l = { tok, 0, 0, 0 };
		uint8_t *d = NULL;
		uint64_t size;

		if (!strcmp(tok, "."))
			continue;
		if (++depth > FY_VMFS_MAX_DEPTH)
			return fy_err_set(-ELOOP, "vmfs: %s: more than %d "
					  "levels", path, FY_VMFS_MAX_DEPTH);
		if (fd->type != FD_TYPE_DIR && fd->addr != ROOT_DIR_ADDR)
			return fy_err_set(-ENOTDIR, "vmfs: %s: a component "
					  "before '%s' is not a directory",
					  path, tok);
		rc = dir_load(v, fd, &d, &size);
		if (rc == 0)
			rc = dir_iterate(v, fd, d, size, lookup_cb, &l);
		free(d);
		if (rc < 0)
			return rc;
		if (!l.found)
			return fy_err_set(-ENOENT, "vmfs: %s: no '%s' on volume "
					  "%s", path, tok, v->label);
		if (l.found > 1)
			return fy_err_set(-EINVAL, "vmfs: %s: '%s' is in its "
					  "directory %d times", path, tok,
					  l.found);
		rc = fd_read(v, l.addr, fd);
		if (rc < 0)
			return fy_err_wrap(rc, "'%s'", tok);
	}
	return 0;
}

/* ---- the extent map ------------------------------------------------------- */

struct map_build {
	struct fy_vmfs *v;
	const struct fd *fd;
	struct fy_vmfs_map *m;
	size_t cap;
};

static int run_add(struct map_build *b, uint64_t off, uint64_t len,
		   uint32_t kind, uint32_t lun, uint64_t lun_off)
{
	struct fy_vmfs_map *m = b->m;
	struct fy_vmfs_run *last = m->n ? &m->runs[m->n - 1] : NULL;

	if (off >= m->size || len == 0)
		return 0;
	if (len > m->size - off)
		len = m->size - off;
	if (kind == FY_VMFS_RUN_DATA)
		m->data_bytes += len;
	else if (kind == FY_VMFS_RUN_HOLE)
		m->hole_bytes += len;
	else if (kind == FY_VMFS_RUN_TBZ)
		m->tbz_bytes += len;
	if (last && last->kind == kind && last->offset + last->length == off &&
	    (kind != FY_VMFS_RUN_DATA ||
	     (last->lun == lun && last->lun_offset + last->length == lun_off))) {
		last->length += len;
		return 0;
	}
	if (m->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		struct fy_vmfs_run *r;

		if (cap > FY_VMFS_MAX_EXTENTS)
			cap = FY_VMFS_MAX_EXTENTS;
		if (m->n == cap)
			return fy_err_set(-E2BIG, "vmfs: the file is in more "
					  "than %u pieces", FY_VMFS_MAX_EXTENTS);
		r = realloc(m->runs, cap * sizeof(*r));
		if (!r)
			return fy_err_set(-ENOMEM, "out of memory");
		m->runs = r;
		b->cap = cap;
	}
	m->runs[m->n++] = (struct fy_vmfs_run){ off, len, lun_off, lun, kind };
	return 0;
}

/* A volume range of file data, split where it crosses from LUN to LUN. */
static int run_add_volume(struct map_build *b, uint64_t off, uint64_t len,
			  uint64_t vol_off)
{
	while (len) {
		uint64_t lo, avail, n;
		const struct lun *l = vol_lun(b->v, vol_off, &lo, &avail);
		int rc;

		if (!l)
			return fy_err_set(-EIO, "vmfs: volume offset %" PRIu64
					  " is on no LUN", vol_off);
		n = len < avail ? len : avail;
		rc = run_add(b, off, n, FY_VMFS_RUN_DATA, l->index, lo);
		if (rc < 0)
			return rc;
		off += n;
		vol_off += n;
		len -= n;
	}
	return 0;
}

static int map_block_cb(void *opaque, uint64_t index, uint64_t addr)
{
	struct map_build *b = opaque;
	const struct fd *fd = b->fd;
	uint64_t off = index * fd->block_size, voff, vlen;
	char what[96];
	unsigned tbz, e;
	int rc;

	if (!addr)
		return run_add(b, off, fd->block_size, FY_VMFS_RUN_HOLE, 0, 0);
	snprintf(what, sizeof(what), "file descriptor 0x%08x block %" PRIu64,
		 fd->addr, index);
	if (ADDR_TYPE(addr) == ADDR_SB) {
		uint64_t ro, in = 0, bs = fd->block_size;
		const struct resource *r = &b->v->sbc;

		if (fd->zla != ZLA_SB)
			return fy_err_set(-EINVAL, "vmfs: %s: a sub-block in a "
					  "file of %" PRIu64 "-byte blocks",
					  what, bs);
		rc = res_offset(r, SB_CLUSTER(addr), SB_RESOURCE(addr), &ro,
				addr);
		if (rc < 0)
			return fy_err_wrap(rc, "vmfs: %s", what);
		/* A sub-block may straddle two blocks of .sbc.sf. */
		while (in < bs) {
			uint64_t fo = ro + in, bi = fo / r->block_size;
			uint64_t n = r->block_size - fo % r->block_size;

			if (n > bs - in)
				n = bs - in;
			if (!r->blocks[bi])
				return fy_err_set(-EIO, "vmfs: %s: .sbc.sf block "
						  "%" PRIu64 " is not allocated",
						  what, bi);
			rc = run_add_volume(b, off + in, n,
					    r->blocks[bi] + fo % r->block_size);
			if (rc < 0)
				return rc;
			in += n;
		}
		return 0;
	}
	if (fd->zla == ZLA_SB)
		return fy_err_set(-EINVAL, "vmfs: %s: address 0x%" PRIx64
				  " of type %u in a file of sub-blocks", what,
				  addr, ADDR_TYPE(addr));
	rc = block_volume(b->v, addr, &voff, &vlen, what);
	if (rc < 0)
		return rc;
	if (vlen != fd->block_size)
		return fy_err_set(-EINVAL, "vmfs: %s: a %s file block in a file "
				  "of %" PRIu64 "-byte blocks", what,
				  ADDR_TYPE(addr) == ADDR_LFB ? "large" : "small",
				  fd->block_size);
	tbz = ADDR_TBZ(addr);
	if (!tbz)
		return run_add_volume(b, off, vlen, voff);
	/* Each bit covers an eighth of the block: those read as zeros, the
	 * LUN holds a deleted file's bytes there. */
	for (e = 0; e < 8; e++) {
		uint64_t part = vlen / 8;

		if (tbz & (1u << e))
			rc = run_add(b, off + e * part, part, FY_VMFS_RUN_TBZ, 0,
				     0);
		else
			rc = run_add_volume(b, off + e * part, part,
					    voff + e * part);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int fy_vmfs_map_file(struct fy_vmfs *v, const char *path,
		     struct fy_vmfs_map *out)
{
	struct fd *fd = malloc(sizeof(*fd));
	struct map_build b = { v, fd, out, 0 };
	int rc;

	memset(out, 0, sizeof(*out));
	if (!fd)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = resolve(v, path, fd);
	if (rc < 0)
		goto out;
	if (fd->type == FD_TYPE_RDM) {
		rc = fy_err_set(-ENOTSUP, "vmfs: %s is a raw device mapping; "
				"its data is on another LUN", path);
		goto out;
	}
	if (fd->type != FD_TYPE_FILE) {
		rc = fy_err_set(-EINVAL, "vmfs: %s is not a regular file (type "
				"%u)", path, fd->type);
		goto out;
	}
	out->size = fd->length;
	if (fd->zla == ZLA_RESIDENT) {
		out->resident = malloc(fd->resident_len ? fd->resident_len : 1);
		if (!out->resident) {
			rc = fy_err_set(-ENOMEM, "out of memory");
			goto out;
		}
		memcpy(out->resident, fd->resident, fd->resident_len);
		out->resident_len = fd->resident_len;
		rc = run_add(&b, 0, fd->length, FY_VMFS_RUN_RESIDENT, 0, 0);
		goto out;
	}
	rc = fd_walk(v, fd, map_block_cb, &b);
out:
	free(fd);
	if (rc < 0) {
		fy_vmfs_map_release(out);
		return fy_err_wrap(rc, "vmfs: %s", path);
	}
	return 0;
}

void fy_vmfs_map_release(struct fy_vmfs_map *m)
{
	if (!m)
		return;
	free(m->runs);
	free(m->resident);
	memset(m, 0, sizeof(*m));
}

struct list_ctx {
	fy_vmfs_dir_cb cb;
	void *opaque;
};

static int list_cb(void *opaque, const char *name, uint32_t type,
		   uint32_t addr)
{
	struct list_ctx *c = opaque;

	(void)addr;
	return c->cb(c->opaque, name, type == FD_TYPE_DIR);
}

int fy_vmfs_list(struct fy_vmfs *v, const char *path, fy_vmfs_dir_cb cb,
		 void *opaque)
{
	struct fd *fd = malloc(sizeof(*fd));
	struct list_ctx c = { cb, opaque };
	uint8_t *d = NULL;
	uint64_t size;
	int rc;

	if (!fd)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = resolve(v, path, fd);
	if (rc == 0)
		rc = dir_load(v, fd, &d, &size);
	if (rc == 0)
		rc = dir_iterate(v, fd, d, size, list_cb, &c);
	free(d);
	free(fd);
	return rc;
}

/* ---- open and close ------------------------------------------------------- */

int fy_vmfs_open(const struct fy_vmfs_lun *luns, size_t n,
		 struct fy_vmfs **out)
{
	struct fy_vmfs *v = calloc(1, sizeof(*v));
	int rc;

	*out = NULL;
	if (!v)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = volume_open(v, luns, n);
	if (rc == 0)
		rc = fs_read(v);
	if (rc == 0)
		rc = open_fdc(v);
	if (rc == 0)
		rc = open_fbb(v);
	if (rc == 0)
		rc = open_resource(v, &v->sbc, ".sbc.sf", SBC_ADDR, true);
	if (rc == 0)
		rc = open_resource(v, &v->pbc, ".pbc.sf", PBC_ADDR, false);
	if (rc == 0)
		rc = open_resource(v, &v->pb2, ".pb2.sf", PB2_ADDR, false);
	if (rc < 0) {
		fy_vmfs_free(v);
		return rc;
	}
	*out = v;
	return 0;
}

void fy_vmfs_free(struct fy_vmfs *v)
{
	if (!v)
		return;
	free(v->fdc.blocks);
	free(v->sbc.blocks);
	free(v->pbc.blocks);
	free(v->pb2.blocks);
	free(v);
}

const char *fy_vmfs_label(const struct fy_vmfs *v)
{
	return v->label;
}

uint64_t fy_vmfs_size(const struct fy_vmfs *v)
{
	return v->size;
}
