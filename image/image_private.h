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
#include "s3/s3.h"

/* ---- on-disk constants (docs/FORMAT.md) -------------------------------- */

#define FY_BLOCK_MAGIC "FYBK"
#define FY_BLOCK_VERSION 1
#define FY_BLOCK_HDR_LEN 16

#define FY_MANIFEST_MAGIC "FYMANIF1"
#define FY_MANIFEST_VERSION 1
#define FY_MANIFEST_PREAMBLE_LEN 16 /* magic, version, header_len */

#define FY_REPO_CONFIG_LINE "ferry-repository"
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

/* The block object's header (docs/FORMAT.md) for what is to be stored;
 * -EINVAL when out of bounds. repo.c. */
int fy_block_header(const uint8_t digest[FY_DIGEST_LEN], enum fy_codec codec,
		    uint32_t plain_size, size_t len,
		    uint8_t hdr[FY_BLOCK_HDR_LEN]);

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
struct fy_store_session;
struct fy_digest_set;

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

	/* A backup's blocks. session_put may be called from many threads;
	 * what it stores becomes visible to block_stat/block_get only at
	 * session_commit (durably); session_end without a commit removes
	 * what the session stored. */
	int (*session_begin)(struct fy_store *st,
			     struct fy_store_session **out);
	int (*session_put)(struct fy_store_session *ss,
			   const uint8_t digest[FY_DIGEST_LEN],
			   const void *hdr, size_t hdrlen, const void *data,
			   size_t len);
	int (*session_commit)(struct fy_store_session *ss);
	void (*session_end)(struct fy_store_session *ss);
	/* Catches up with what other processes changed (after taking the
	 * repository lock); NULL when the store keeps no state. */
	int (*refresh)(struct fy_store *st);
	/* gc of unreferenced blocks under the exclusive lock; NULL: gc
	 * walks block_list and deletes block by block. */
	int (*collect)(struct fy_store *st, const struct fy_digest_set *refs,
		       bool dry_run, struct fy_gc_result *res);
	/* Where the block's object is: a file, and the object's offset and
	 * length in it (ferry-repo locate). 0 or -ENOENT. */
	int (*block_locate)(struct fy_store *st,
			    const uint8_t digest[FY_DIGEST_LEN], char *path,
			    size_t pathlen, uint64_t *offset,
			    uint64_t *length);
	/* Forgets many blocks at once (verify --repair). */
	int (*block_forget)(struct fy_store *st,
			    const uint8_t (*digests)[FY_DIGEST_LEN], size_t n);
	/* A server stopping lets others use what it held; NULL: nothing. */
	void (*release)(struct fy_store *st);
};

/* Every store embeds this first. */
struct fy_store {
	const struct fy_store_ops *ops;
};

/* The store under root/blocks and root/backups, staging in tmpdir (the
 * same filesystem, so rename is atomic). */
int fy_store_posix_open(const char *root, const char *tmpdir,
			struct fy_store **out);

/* ---- repository format 2: pack files (pack.c) -------------------------- */

#define FY_REPO_VERSION_BLOCKS 1 /* one file per block (store.c) */
#define FY_REPO_VERSION_PACKS 2  /* pack files and an index (packstore.c) */
#define FY_REPO_VERSION_S3 3     /* format 2's objects in an S3 bucket, with
				    a local cache (s3store.c) */

#define FY_PACK_MAGIC "FYPACK01"
#define FY_PACK_VERSION 1
#define FY_PACK_HDR_LEN 16 /* magic, version u32, reserved u32 */
#define FY_PACK_END_MAGIC "FYPKEND1"
/* count u32, reserved u32, SHA-256 of the entries, end magic */
#define FY_PACK_FOOTER_LEN 48
/* digest, offset u32, length u32 */
#define FY_PACK_ENTRY_LEN 40
#define FY_PACK_ID_LEN 16
#define FY_PACK_SUFFIX ".pack"
/* A writer closes its pack once this much is written or this many
 * objects are in it. */
#define FY_PACK_TARGET (32u << 20)
#define FY_PACK_ENTRIES_MAX 65536u
/* One block object: its header and at most FY_STORED_MAX bytes. */
#define FY_PACK_OBJECT_MAX (FY_BLOCK_HDR_LEN + FY_STORED_MAX)
/* Target + one object + the largest trailer, rounded up. */
#define FY_PACK_FILE_MAX (64u << 20)

/* Format 3: threads uploading finished packs while a backup goes on. */
#define FY_PACK_UPLOADERS 4

struct fy_pack_entry {
	uint8_t digest[FY_DIGEST_LEN];
	uint32_t offset; /* of the object (block header first) */
	uint32_t length; /* of the object, header included */
};

struct fy_pack_writer;

void fy_pack_id_hex(const uint8_t id[FY_PACK_ID_LEN], char *out /* 33 */);
bool fy_pack_id_unhex(const char *hex, uint8_t id[FY_PACK_ID_LEN]);
/* packs_dir/<2 hex>/<32 hex>.pack and tmpdir/<32 hex>.pack */
int fy_pack_path(const char *packs_dir, const uint8_t id[FY_PACK_ID_LEN],
		 char *path, size_t len);
int fy_pack_tmp_path(const char *tmpdir, const uint8_t id[FY_PACK_ID_LEN],
		     char *path, size_t len);

/* A new pack with a random id in tmpdir. Not thread-safe: one user. */
int fy_pack_create(const char *tmpdir, struct fy_pack_writer **out);
const uint8_t *fy_pack_writer_id(const struct fy_pack_writer *w);
size_t fy_pack_writer_count(const struct fy_pack_writer *w);
/* True once the pack should be finished (size or entry count). */
bool fy_pack_writer_full(const struct fy_pack_writer *w);
int fy_pack_append(struct fy_pack_writer *w,
		   const uint8_t digest[FY_DIGEST_LEN], const void *hdr,
		   size_t hdrlen, const void *data, size_t len);
/* Writes the trailer and fdatasyncs; the file stays in tmpdir. */
int fy_pack_finish(struct fy_pack_writer *w);
/* Without sync: writeback is started, and fy_pack_sync(path) must make
 * the pack durable before it is published. */
int fy_pack_finish_ex(struct fy_pack_writer *w, bool sync);
int fy_pack_sync(const char *path);
/* A finished pack from tmpdir into packs_dir/<xx>/, durably: its data,
 * a new <xx> directory, the rename. */
int fy_pack_move_in(const char *tmpdir, const char *packs_dir,
		    const uint8_t id[FY_PACK_ID_LEN]);
void fy_pack_writer_free(struct fy_pack_writer *w);
/* Removes the temporary file too. */
void fy_pack_discard(struct fy_pack_writer *w);

/* The trailer from the last tail_len bytes of a file of file_size bytes:
 * every bound checked (entries tile the data area exactly); -EBADMSG
 * naming the pack. *out is malloc'd (NULL for an empty pack). */
int fy_pack_parse_trailer(const uint8_t *tail, size_t tail_len,
			  uint64_t file_size, const char *name,
			  struct fy_pack_entry **out, size_t *count);
int fy_pack_read_trailer(const char *path, struct fy_pack_entry **out,
			 size_t *count);
/* One object: its first hdrlen bytes into hdr, the rest into buf.
 * -ENOENT (without a message) when the pack is gone. */
int fy_pack_read_object(const char *path, uint32_t offset, uint32_t length,
			void *hdr, size_t hdrlen, void *buf, size_t bufcap);

/* Packs whose data lives in an object store: the local file is a cache
 * that may have holes where its data was evicted (s3store.c). */
/* 1 when bytes [offset, offset + length) are on local disk, 0 when a part
 * of them is a hole, -ENOENT when the pack is gone. */
int fy_pack_range_local(const char *path, uint64_t offset, uint64_t length);
/* Punches out the pack's data area (whole file system blocks between its
 * header's block and its trailer): the file keeps its size, header and
 * trailer, so the index still reads it. Bytes freed into *freed. */
int fy_pack_evict(const char *path, uint64_t *freed);
/* tmpdir/<id>.pack of size bytes holding only a header and the given
 * trailer (the pack's last tail_len bytes), the rest a hole; fdatasync'd,
 * ready for fy_pack_move_in. */
int fy_pack_write_stub(const char *tmpdir, const uint8_t id[FY_PACK_ID_LEN],
		       uint64_t size, const void *tail, size_t tail_len);

/* ---- the repository index of format 2 (index.c) ------------------------ */

#define FY_INDEX_MAGIC "FYINDEX1"
#define FY_INDEX_VERSION 1
#define FY_INDEX_HDR_LEN 32 /* magic, version, reserved, packs u64, entries u64 */
#define FY_INDEX_ENTRY_LEN 48 /* digest, pack u32, offset u32, length u32, 0 */
#define FY_INDEX_PACKS_MAX (1u << 24)
#define FY_INDEX_ENTRIES_MAX (1ull << 32)
/* Entries kept in memory before they are merged into the mapped file. */
#define FY_INDEX_DELTA_MAX (1u << 20)

struct fy_index;

struct fy_index_loc {
	uint8_t pack[FY_PACK_ID_LEN];
	uint32_t offset, length;
};

/* root/index/main.idx mapped, plus the trailers of every pack under
 * root/packs it does not cover. A missing or damaged index (or one naming
 * a pack that is gone) is rebuilt from every trailer and written again. */
int fy_index_open(const char *root, const char *tmpdir, struct fy_index **out);
/* Writes the entries added since the file was mapped into it, when there
 * are some and no other process rewrote it meanwhile; then frees. */
void fy_index_close(struct fy_index *ix, bool save);
/* 1 and where, or 0. Thread-safe. */
int fy_index_lookup(struct fy_index *ix, const uint8_t digest[FY_DIGEST_LEN],
		    struct fy_index_loc *loc);
/* A pack now under packs/: its entries become visible. With replace, they
 * win over entries of the same digests (a repack), else the first stays. */
int fy_index_add_pack(struct fy_index *ix, const uint8_t id[FY_PACK_ID_LEN],
		      const struct fy_pack_entry *e, size_t n, bool replace);
/* Catches up with other processes: a rewritten index file is loaded
 * again; packs that appeared are read. */
int fy_index_refresh(struct fy_index *ix);
/* Everything again from disk (after packs were deleted). */
int fy_index_reload(struct fy_index *ix);
/* Every entry, in no particular order, under the read lock (cb must not
 * call back into the index). */
int fy_index_for_each(struct fy_index *ix,
		      int (*cb)(void *opaque,
				const uint8_t digest[FY_DIGEST_LEN],
				const struct fy_index_loc *loc),
		      void *opaque);
/* Every known pack. */
int fy_index_for_each_pack(struct fy_index *ix,
			   int (*cb)(void *opaque,
				     const uint8_t id[FY_PACK_ID_LEN]),
			   void *opaque);
/* Rewrites the file with every entry that keep() accepts (NULL: all),
 * without the packs keep_pack() refuses (NULL: none), durably, and maps
 * it. Holds the index's write lock throughout. */
int fy_index_rewrite(struct fy_index *ix,
		     bool (*keep)(void *opaque,
				  const uint8_t digest[FY_DIGEST_LEN],
				  const struct fy_index_loc *loc),
		     bool (*keep_pack)(void *opaque,
				       const uint8_t id[FY_PACK_ID_LEN]),
		     void *opaque);
uint64_t fy_index_count(struct fy_index *ix);
/* The file's validation on a buffer (fuzzing, tests): -EBADMSG with a
 * message, or 0 and the counts. */
int fy_index_parse(const uint8_t *buf, size_t len, const char *name,
		   uint64_t *packs, uint64_t *entries);

/* ---- sessions and the format 2 store (packstore.c) ---------------------- */

int fy_store_pack_open(const char *root, const char *tmpdir,
		       struct fy_store **out);

/*
 * An object store behind the pack store (repository format 3, s3store.c):
 * every pack and manifest is stored there before it is visible locally,
 * so the local packs/, index/ and backups/ are a cache of the bucket.
 */
struct fy_pack_remote {
	void *ctx;
	/* A finished, durable pack (path) stored remotely: called before it
	 * is moved into packs/. */
	int (*pack_put)(void *ctx, const uint8_t id[FY_PACK_ID_LEN],
			const char *path);
	/* length bytes at offset of a pack whose local copy has a hole
	 * there. */
	int (*pack_read)(void *ctx, const uint8_t id[FY_PACK_ID_LEN],
			 uint64_t offset, uint32_t length, void *buf);
	/* 1 when the pack may be deleted now, 0 while retention keeps it
	 * (counted and said by gc). */
	int (*pack_deletable)(void *ctx, const uint8_t id[FY_PACK_ID_LEN]);
	int (*pack_delete)(void *ctx, const uint8_t id[FY_PACK_ID_LEN]);
	/* A finished manifest file stored remotely as backup id; called
	 * before it is moved in locally. */
	int (*manifest_put)(void *ctx, const char *id, const char *path);
	/* -EPERM with a message while retention keeps it. */
	int (*manifest_delete)(void *ctx, const char *id);
	/* After packs were published: keeps the cache within its size. */
	void (*trim)(void *ctx);
	/* Before gc, under the exclusive lock (no backup is running):
	 * packs in the bucket the cache does not know (a crash between an
	 * upload and its commit) are brought in, so gc sees them; multipart
	 * uploads left behind are aborted (not in a dry run). How many of
	 * each into the result. */
	int (*gc_begin)(void *ctx, bool dry_run, struct fy_gc_result *res);
	/* After gc: the retention of the packs still referenced (and of
	 * every manifest) extended before it runs out; how many in
	 * *extended. */
	int (*upkeep)(void *ctx, const uint8_t (*packs)[FY_PACK_ID_LEN],
		      size_t n, uint64_t *extended);
	/* A server stopping: the bucket is let go (its lease released). */
	void (*release)(void *ctx);
	void (*close)(void *ctx);
};

/* The pack store with remote (NULL: a local format 2 repository). The
 * store owns remote->ctx from now on (its close is called), also on
 * failure. */
int fy_store_pack_open_remote(const char *root, const char *tmpdir,
			      const struct fy_pack_remote *remote,
			      struct fy_store **out);

/* ---- repository format 3: an S3 bucket and a local cache (s3store.c) ---- */

#define FY_S3_CACHE_DEFAULT (8ull << 30)

/* The s3.* lines of a format 3 repository's config. */
struct fy_repo_s3conf {
	char url[FY_S3_URL_MAX + FY_S3_BUCKET_MAX + 2];
	char region[FY_S3_REGION_MAX];
	bool path_style;
	char ca[PATH_MAX];
	char credentials[PATH_MAX];
	unsigned lock_days;   /* 0: no Object Lock */
	bool lock_governance; /* else COMPLIANCE */
	uint64_t cache_size;  /* bytes of pack data kept locally */
};

void fy_s3conf_init(struct fy_repo_s3conf *c);
/* One config line: 0 when it was an s3.* line (taken), 1 when it is not
 * one, or -EINVAL with a message. */
int fy_s3conf_line(struct fy_repo_s3conf *c, const char *root,
		   const char *line, size_t n);
/* The s3.* lines, for the config file; the length written, or -errno. */
int fy_s3conf_format(const struct fy_repo_s3conf *c, char *out, size_t len);
/* A client with the configured credentials. */
int fy_s3conf_client(const struct fy_repo_s3conf *c, struct fy_s3 **out);
/* init: checks the bucket (Object Lock when asked) and gives the
 * repository id: a new one, written to the bucket's identity object, or
 * the id of the repository the bucket already holds (*adopted). */
int fy_s3_repo_prepare(const struct fy_repo_s3conf *conf,
		       char id[FY_REPO_ID_HEX + 1], bool *adopted);

struct lease_view {
	char owner[33];
	char host[256];
	long long pid, expires;
};
/* The bucket's lease object, every field bounded (fuzzed). */
int fy_s3_lease_parse(const char *text, size_t len, struct lease_view *out);

struct fy_repo;
/* The store of a format 3 repository: the bucket checked against the
 * repository id, the lease taken, the cache reconciled with the bucket
 * (always when serving, else when the cache is new or was lost). */
int fy_store_s3_open(struct fy_repo *repo, const struct fy_repo_s3conf *conf,
		     unsigned flags, struct fy_store **out);
/* A new format 3 repository at root (a new or empty directory) for the
 * bucket of conf: a new repository, or, when the bucket already holds
 * one, a new cache of it. */
int fy_repo_init_s3(const char *root, const struct fy_repo_s3conf *conf);
/* Empties the cache (index, packs, backups): the next open rebuilds it
 * from the bucket. The caller holds the repository exclusively. */
int fy_repo_rebuild_cache(const char *root);

struct fy_repo {
	char root[PATH_MAX];
	unsigned version; /* FY_REPO_VERSION_BLOCKS or _PACKS */
	int serve_fd;     /* shared flock on serve.lock while serving, or -1 */
	char tmpdir[PATH_MAX];
	char lock_path[PATH_MAX];
	char id[FY_REPO_ID_HEX + 1];
	struct fy_store *store;
	struct fy_repo_s3conf *s3; /* format 3, else NULL */
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
