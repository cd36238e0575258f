/*
 * image internals shared by the files of this folder only. Nothing outside
 * image/ may include this header.
 */
#ifndef FERRY_IMAGE_PRIVATE_H
#define FERRY_IMAGE_PRIVATE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

/* ---- on-disk constants (docs/FORMAT.md) -------------------------------- */

#define FY_BLOCK_MAGIC "FYBK"
#define FY_BLOCK_VERSION 1
#define FY_BLOCK_HDR_LEN 16

#define FY_MANIFEST_MAGIC "FYMANIF1"
#define FY_MANIFEST_VERSION 1
#define FY_MANIFEST_PREAMBLE_LEN 16 /* magic, version, header_len */

#define FY_REPO_CONFIG_LINE "ferry-repository"
#define FY_REPO_VERSION 1
#define FY_REPO_ID_HEX 32
#define FY_REPO_CONFIG_MAX 4096

/* Longest repository root we accept, so that every path below it (the
 * deepest is blocks/ab/cd/<64 hex>) fits in PATH_MAX. */
#define FY_REPO_ROOT_MAX (PATH_MAX - 128)

/*
 * Protobuf's wire format, for counting a message's repeated fields before
 * protobuf-c unpacks it (the unpacker allocates every entry first): reads
 * the field key at *i and steps past its value. -1 when the bytes end
 * inside the field or the wire type is unknown. manifest.c.
 */
int fy_pb_next_field(const uint8_t *p, size_t len, size_t *i, uint64_t *key);

static inline void fy_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t fy_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ---- identifiers ------------------------------------------------------- */

/* Backup ids come from clients and from file names: only [0-9A-Za-z-],
 * non-empty and shorter than FY_ID_MAX, so that an id can never name a
 * path outside the repository. */
bool fy_id_valid(const char *id);
/* The same as an error: -EINVAL with a message naming what (e.g. "backup
 * id"). */
int fy_id_check(const char *what, const char *id);

/* snprintf into a path buffer; truncation is -ENAMETOOLONG (with a
 * message), never a silently shortened path. */
int fy_path_fmt(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Lower-case hex of a digest into out (FY_DIGEST_HEX bytes). */
void fy_digest_hex(const uint8_t digest[FY_DIGEST_LEN], char *out);
/* Strict inverse: exactly 64 lower-case hex characters. */
bool fy_digest_unhex(const char *hex, uint8_t digest[FY_DIGEST_LEN]);

/* ---- the block store behind an operations table ------------------------ */

/*
 * Where blocks and manifests live. The POSIX directory store (store.c) is
 * the first implementation; an object-storage store fills the same table.
 * A store keeps opaque objects: the block file format (header + data) and
 * the manifest format are applied above it, in repo.c and manifest.c, so
 * every store holds byte-identical objects. Block calls may come from many
 * threads at once; a store must allow that.
 */
typedef int (*fy_digest_cb)(void *opaque, const uint8_t digest[FY_DIGEST_LEN]);
typedef int (*fy_id_cb)(void *opaque, const char *id);

struct fy_store;

struct fy_store_ops {
	const char *name;
	/* Stores hdr followed by data under digest, durably (directory
	 * entries may wait for sync). An existing object is left alone. */
	int (*block_put)(struct fy_store *st,
			 const uint8_t digest[FY_DIGEST_LEN], const void *hdr,
			 size_t hdrlen, const void *data, size_t len);
	/* Reads the object's first hdrlen bytes into hdr and the rest into
	 * buf when it fits in bufcap; always reports the object's size, which
	 * the caller checks. -ENOENT when absent. */
	int (*block_get)(struct fy_store *st,
			 const uint8_t digest[FY_DIGEST_LEN], void *hdr,
			 size_t hdrlen, void *buf, size_t bufcap,
			 uint64_t *size);
	/* 0 and the object's size, or -ENOENT. */
	int (*block_stat)(struct fy_store *st,
			  const uint8_t digest[FY_DIGEST_LEN], uint64_t *size);
	/* Every stored digest, in no particular order. A non-zero return of
	 * cb stops the walk and is returned. cb may delete the digest it was
	 * given. */
	int (*block_list)(struct fy_store *st, fy_digest_cb cb, void *opaque);
	int (*block_delete)(struct fy_store *st,
			    const uint8_t digest[FY_DIGEST_LEN]);

	/* Moves a finished manifest file in as backup id, durably; never
	 * replaces an existing backup (-EEXIST). */
	int (*manifest_put)(struct fy_store *st, const char *tmp_path,
			    const char *id);
	int (*manifest_open)(struct fy_store *st, const char *id,
			     struct fy_manifest **out);
	/* 0 or -ENOENT. */
	int (*manifest_exists)(struct fy_store *st, const char *id);
	/* Every backup id, in no particular order; stops like block_list. */
	int (*manifest_list)(struct fy_store *st, fy_id_cb cb, void *opaque);
	/* Removes durably. */
	int (*manifest_delete)(struct fy_store *st, const char *id);

	/* Makes everything put so far durable. */
	int (*sync)(struct fy_store *st);
	void (*close)(struct fy_store *st);
};

/* Every store embeds this first. */
struct fy_store {
	const struct fy_store_ops *ops;
};

/* The store under root/blocks and root/backups, staging in tmpdir (the
 * same filesystem, so rename is atomic). */
int fy_store_posix_open(const char *root, const char *tmpdir,
			struct fy_store **out);

struct fy_repo {
	char root[PATH_MAX];
	char tmpdir[PATH_MAX];
	char lock_path[PATH_MAX];
	char id[FY_REPO_ID_HEX + 1];
	struct fy_store *store;
};

/* Removes everything inside dir (not dir itself). Returns how many entries
 * could not be removed in *failed; 0 or -errno for dir itself. */
int fy_clear_dir(const char *dir, uint64_t *removed, uint64_t *failed);

/* Backup ids of the repository, sorted ascending, as one array of
 * FY_ID_MAX-byte strings; free() it. */
int fy_repo_list_ids(struct fy_repo *repo, char (**ids)[FY_ID_MAX],
		     size_t *count);

/* ---- sets of digests (refs.c) ------------------------------------------ */

/*
 * The distinct blocks that backups reference, as one sorted array of
 * digests: 32 bytes per distinct block. Digests are appended unsorted and
 * the array is sorted and de-duplicated whenever it fills, and grown only
 * when that leaves it more than half full, so repeats (the same block in
 * many backups) never cost more than the array's slack: at most twice 32
 * bytes per distinct block while collecting.
 */
struct fy_digest_set {
	uint8_t (*d)[FY_DIGEST_LEN];
	size_t count;
	size_t cap;
	bool sorted; /* d[0..count) sorted and unique */
};

void fy_digest_set_init(struct fy_digest_set *s);
void fy_digest_set_release(struct fy_digest_set *s);
int fy_digest_set_add(struct fy_digest_set *s,
		      const uint8_t digest[FY_DIGEST_LEN]);
/* Sorts and de-duplicates; contains() needs it. */
void fy_digest_set_finish(struct fy_digest_set *s);
bool fy_digest_set_contains(const struct fy_digest_set *s,
			    const uint8_t digest[FY_DIGEST_LEN]);

/* Calls cb for every non-hole digest of m's maps (with repeats), reading
 * the maps in bounded chunks. */
int fy_manifest_for_each(struct fy_manifest *m,
			 int (*cb)(void *opaque, uint32_t disk, uint64_t block,
				   const uint8_t digest[FY_DIGEST_LEN]),
			 void *opaque);

/* Adds every block referenced by every backup to set, in ascending id
 * order. A manifest that cannot be read is reported to bad (which returns
 * 0 to go on, or an error to stop); without bad, it stops the walk. */
int fy_repo_collect_refs(struct fy_repo *repo, struct fy_digest_set *set,
			 int (*bad)(void *opaque, const char *id, int rc),
			 void *opaque, uint64_t *backups);

#endif
