/*
 * san: reading a VM's flat disk straight off the LUNs of its VMFS6
 * datastore (VDDK's "san" transport), read-only.
 *
 *  - the VMFS6 reader: LVM header and the volume's extents over one or
 *    more LUNs, the FS descriptor, the resource files (.fdc.sf, .fbb.sf,
 *    .sbc.sf, .pbc.sf, .pb2.sf), directories, and file descriptors with
 *    every address form. It turns one file into an extent map: LUN ranges,
 *    holes, to-be-zeroed ranges (which read as zeros, never as the LUN's
 *    stale bytes) and data resident in the descriptor;
 *  - the san source: a flat file read through that map with common's
 *    O_DIRECT + libaio reader, several requests in flight per LUN;
 *  - finding a datastore extent's LUN on the proxy by its NAA id under a
 *    configurable sysfs root, and the VMFS partition in the LUN's GPT.
 *
 * Depends on common only. Every structure read from a LUN is bounded and
 * checked before use; a damaged or unsupported volume is an error naming
 * the structure and its offset. VMFS5 volumes are refused by name (see
 * docs/SAN.md). Nothing here ever opens a LUN for writing.
 */
#ifndef FERRY_SAN_H
#define FERRY_SAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* A volume spans at most this many LUNs (VMFS allows 32 extents). */
#define FY_VMFS_MAX_LUNS 32
/* An extent map holds at most this many runs (32 bytes each): a fully
 * fragmented 4 TiB disk of 1 MiB blocks. */
#define FY_VMFS_MAX_EXTENTS (4u << 20)
/* Longest path inside a volume, and most components in it. */
#define FY_VMFS_MAX_PATH 1024
#define FY_VMFS_MAX_DEPTH 32

/* One LUN as the reader sees it: pread of any offset and length. The san
 * source fills these from its O_DIRECT file sources; the fuzzer and tests
 * from memory. Returns 0 or -errno (a short read is -EIO). */
struct fy_vmfs_lun {
	void *opaque;
	uint64_t size;
	const char *name;
	int (*pread)(void *opaque, void *buf, size_t len, uint64_t offset);
};

enum fy_vmfs_run_kind {
	FY_VMFS_RUN_DATA = 0,   /* read lun at lun_offset */
	FY_VMFS_RUN_HOLE = 1,   /* not allocated (thin): zeros, never read */
	FY_VMFS_RUN_TBZ = 2,    /* allocated, to be zeroed: zeros, never read */
	FY_VMFS_RUN_RESIDENT = 3, /* in the descriptor: map->resident */
};

struct fy_vmfs_run {
	uint64_t offset;     /* in the file */
	uint64_t length;
	uint64_t lun_offset; /* DATA: byte offset on the LUN (partition
			      * start included) */
	uint32_t lun;        /* DATA: index into the LUNs given to open */
	uint32_t kind;       /* enum fy_vmfs_run_kind */
};

struct fy_vmfs_map {
	uint64_t size;            /* the file's length */
	struct fy_vmfs_run *runs; /* in order, covering [0, size) */
	size_t n;
	uint8_t *resident;        /* RESIDENT runs index into this */
	size_t resident_len;
	uint64_t data_bytes;      /* totals, for messages and tests */
	uint64_t hole_bytes;
	uint64_t tbz_bytes;
};

struct fy_vmfs;

/* Opens the volume whose extents are on luns[0..n-1] (any order). Each
 * LUN is a whole LUN (its GPT names the VMFS partition) or the partition
 * itself (LVM header 1 MiB in). The luns must outlive the handle. */
int fy_vmfs_open(const struct fy_vmfs_lun *luns, size_t n,
		 struct fy_vmfs **out);
void fy_vmfs_free(struct fy_vmfs *v);
/* The volume's label and its size in bytes. */
const char *fy_vmfs_label(const struct fy_vmfs *v);
uint64_t fy_vmfs_size(const struct fy_vmfs *v);

/* The extent map of a regular file ("vm1/vm1-flat.vmdk", '/'-separated,
 * from the volume's root). Release with fy_vmfs_map_release. */
int fy_vmfs_map_file(struct fy_vmfs *v, const char *path,
		     struct fy_vmfs_map *out);
void fy_vmfs_map_release(struct fy_vmfs_map *m);

/* Calls cb for each entry of directory path ("" is the root) with its
 * name and whether it is a directory; stops at the first nonzero return. */
typedef int (*fy_vmfs_dir_cb)(void *opaque, const char *name, bool is_dir);
int fy_vmfs_list(struct fy_vmfs *v, const char *path, fy_vmfs_dir_cb cb,
		 void *opaque);

/* Where the VMFS partition of a LUN is: its GPT partition of type
 * AA31E02A-400F-11DB-9590-000C2911D1B8 (or an MBR entry of type 0xfb), or
 * the whole LUN when an LVM header sits 1 MiB into it. */
int fy_vmfs_find_partition(const struct fy_vmfs_lun *lun, uint64_t *offset,
			   uint64_t *length);

/* ---- the san source ------------------------------------------------------ */

/* Opens the flat file path on the volume made of the LUNs (block devices
 * or image files), each opened O_RDONLY | O_DIRECT through common's file
 * source with opts (queue depth, request size). The source's transport
 * name is "san"; its extents report holes and to-be-zeroed ranges as
 * zeros, and they are never read. */
int fy_san_source_open(const char *const *luns, size_t n, const char *path,
		       const struct fy_file_source_opts *opts,
		       struct fy_source **out);

/* Parses "LUN[,LUN2...]:PATH/IN/VOLUME" (the part after "vmfs:") into
 * LUN paths (pointers into buf, a copy of spec) and the path. */
int fy_san_parse_spec(const char *spec, char *buf, size_t buflen,
		      const char **luns, size_t max_luns, size_t *n,
		      const char **path);

/* ---- LUNs on the proxy ------------------------------------------------------ */

/* Finds the block device whose SCSI identity is naa (an NAA id such as
 * "naa.600508b1001c3a8f...", case-insensitive, with or without "naa.")
 * under sysfs_root/sys/block/<dev>/device/wwid or the designators of VPD
 * page 0x83 (device/vpd_pg83), and checks that it holds at least
 * min_bytes. dev gets dev_root/dev/<name>. A LUN that is missing, too
 * small or seen twice (several paths without multipath) is an error whose
 * message says which. sysfs_root and dev_root "" or "/" mean the real
 * ones (ferry.san.sysfsRoot, ferry.san.devRoot, as for hotadd). */
int fy_san_find_lun(const char *sysfs_root, const char *dev_root,
		    const char *naa, uint64_t min_bytes, char *dev,
		    size_t devlen);

/* Whether any block device under sysfs_root (its node under dev_root)
 * holds a VMFS volume (a VMFS partition or an LVM header 1 MiB in); false
 * with why. For `ferry-agent transports` and the service's status. */
bool fy_san_any_vmfs_lun(const char *sysfs_root, const char *dev_root,
			 char *why, size_t whylen);

/* The configuration keys san reads (NULL-terminated):
 *   ferry.san.sysfsRoot, ferry.san.devRoot (/, /: for tests) */
extern const char *const fy_san_config_keys[];

#endif
