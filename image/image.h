/*
 * image: what a backup is once it is stored. The repository on disk (block
 * store by content, manifests), the block codec, and the repository-wide
 * operations: verify, prune, gc. Depends on common and on proto's generated
 * messages (the manifest header is a protobuf message, proto/manifest.proto).
 *
 * On-disk formats are written down in docs/FORMAT.md; keep the two in step.
 */
#ifndef FERRY_IMAGE_H
#define FERRY_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/common.h"

#define FY_BLOCK_MIN (64u << 10)
#define FY_BLOCK_MAX (8u << 20)
#define FY_BLOCK_DEFAULT (1u << 20)
/* Largest stored (possibly compressed) block: a block that does not shrink
 * is stored raw, so never more than FY_BLOCK_MAX. */
#define FY_STORED_MAX FY_BLOCK_MAX
#define FY_DISKS_MAX 256
#define FY_DISK_SIZE_MAX (1ull << 46)       /* 64 TiB */
#define FY_MANIFEST_HEADER_MAX (1u << 20)
#define FY_ID_MAX 64
#define FY_LABEL_MAX 1024
/* Namespaces (docs/SECURITY.md) separate tenants or sites in one
 * repository; "" is the root namespace. */
#define FY_NAMESPACE_MAX 64
#define FY_NAMESPACE_RULE "a namespace is 1 to 63 characters of " \
	"[A-Za-z0-9._-] that does not start with '.' or '-'"
/* A client's identity: its certificate's commonName (at most 64 bytes by
 * X.520; 255 leaves room for names made elsewhere). */
#define FY_OWNER_MAX 256
bool fy_namespace_valid(const char *ns);

enum fy_codec { FY_CODEC_NONE = 0, FY_CODEC_ZSTD = 1 };

/* ---- block codec ------------------------------------------------------- */

/* Compresses plain into out (capacity outcap >= len). Sets *codec to
 * FY_CODEC_NONE and copies when compression does not shrink the block. */
int fy_block_encode(const void *plain, size_t len, int level, void *out,
		    size_t outcap, size_t *outlen, enum fy_codec *codec);
/* The same; with probe, a block of 128 KiB or more whose spread sample
 * does not shrink at zstd's fastest level is stored raw without a full
 * zstd pass (image/codec.c). */
int fy_block_encode_ex(const void *plain, size_t len, int level, bool probe,
		       void *out, size_t outcap, size_t *outlen,
		       enum fy_codec *codec);
/* Decodes stored data into out (exactly plain_size bytes) and checks that
 * its SHA-256 equals digest. -EBADMSG (with a message) on any mismatch. */
int fy_block_decode(enum fy_codec codec, const void *data, size_t len,
		    uint32_t plain_size, const uint8_t digest[FY_DIGEST_LEN],
		    void *out, size_t outcap);

/* ---- manifests --------------------------------------------------------- */

struct fy_manifest_disk {
	uint32_t index;
	char label[FY_LABEL_MAX];
	uint64_t size;
	char change_id[256];
	char transport[32];
	char disk_id[128];    /* a VM disk's UUID, or "" */
	uint64_t block_count; /* ceil(size / block_size) */
	uint64_t data_blocks;
	uint64_t hole_blocks;
};

struct fy_manifest {
	char id[FY_ID_MAX];
	char source[FY_LABEL_MAX];
	char source_kind[32];
	int64_t created_unix;
	char parent_id[FY_ID_MAX];
	uint32_t block_size;
	uint32_t disk_count;
	struct fy_manifest_disk *disks; /* disk_count entries, index order */
	char owner[FY_OWNER_MAX];       /* "": a legacy backup */
	char namespace_[FY_NAMESPACE_MAX];
	/* The VM configuration record as stored (checked by
	 * fy_vmconfig_decode on every open), NULL when there is none. */
	uint8_t *vm_config;
	size_t vm_config_len;
	/* private: where the block maps are read from */
	void *priv;
};

/* Parses and fully validates (sizes, counts, checksum) a manifest. open
 * streams the file and keeps it open for read_map; parse_mem does not copy:
 * data must stay alive and unchanged until fy_manifest_free. */
int fy_manifest_open(const char *path, struct fy_manifest **out);
int fy_manifest_parse_mem(const void *data, size_t len,
			  struct fy_manifest **out);
void fy_manifest_free(struct fy_manifest *m);
/* Copies count digests of disk's map starting at block first. A hole is
 * FY_DIGEST_LEN zero bytes. */
int fy_manifest_read_map(struct fy_manifest *m, uint32_t disk, uint64_t first,
			 uint64_t count, uint8_t (*digests)[FY_DIGEST_LEN]);
bool fy_digest_is_hole(const uint8_t digest[FY_DIGEST_LEN]);

/* Builds a manifest from streamed block maps (bounded memory: the maps go
 * to temporary files in the repository's tmp directory). */
struct fy_manifest_builder;
int fy_manifest_builder_new(const char *tmpdir, const struct fy_manifest *hdr,
			    struct fy_manifest_builder **out);
int fy_manifest_builder_begin_disk(struct fy_manifest_builder *b,
				   const struct fy_manifest_disk *disk);
/* Entries must come in order: first == number of entries so far. */
int fy_manifest_builder_add(struct fy_manifest_builder *b, uint32_t disk,
			    uint64_t first,
			    const uint8_t (*digests)[FY_DIGEST_LEN],
			    size_t count);
int fy_manifest_builder_end_disk(struct fy_manifest_builder *b, uint32_t disk);
/* Stores a VM configuration record (fy_vmconfig_encode's bytes, which it
 * decodes and checks) in the manifest; finish checks its backup disks
 * against the disks the manifest has. */
int fy_manifest_builder_set_vm_config(struct fy_manifest_builder *b,
				      const void *data, size_t len);
/* Calls cb for every non-hole digest referenced so far (with repeats). */
int fy_manifest_builder_for_each(struct fy_manifest_builder *b,
				 int (*cb)(void *opaque,
					   const uint8_t digest[FY_DIGEST_LEN]),
				 void *opaque);
/* Encodes the whole manifest to a new temporary file, fsync'd; the
 * repository renames it into place. Returns its path in path. The file is
 * the caller's from then on: commit it, or unlink it. */
int fy_manifest_builder_finish(struct fy_manifest_builder *b, char *path,
			       size_t pathlen);
/* Removes the builder's temporary files. NULL is a no-op. */
void fy_manifest_builder_free(struct fy_manifest_builder *b);

/* ---- a VM's configuration (image/vmconfig.c, docs/FORMAT.md) ----------- */

/* What a VM backup records of the VM so that it can be built again. Bytes
 * of a VmConfig message (proto/manifest.proto) on the wire and in the
 * manifest; this struct once decoded, every count and string bounded. */
#define FY_VMCONFIG_VERSION 1
#define FY_VMCONFIG_MAX (64u << 10)            /* encoded bytes */
#define FY_VMCONFIG_CONTROLLERS_MAX 32
#define FY_VMCONFIG_DISKS_MAX 512
#define FY_VMCONFIG_NICS_MAX 16                /* vSphere allows 10 */
#define FY_VMCONFIG_CDROMS_MAX 32
#define FY_VMCONFIG_EXTRA_MAX 32
#define FY_VMCONFIG_WORD_MAX 64                /* types, modes, guest id */
#define FY_VMCONFIG_NAME_MAX 512               /* VM and network names */
#define FY_VMCONFIG_KEY_MAX 128                /* an extraConfig key */
#define FY_VMCONFIG_VALUE_MAX 1024             /* an extraConfig value */
#define FY_VMCONFIG_CPUS_MAX 768
#define FY_VMCONFIG_MEMORY_MB_MAX (24ull << 20) /* 24 TiB */
#define FY_VMCONFIG_BUS_MAX 63
#define FY_VMCONFIG_UNIT_MAX 63

struct fy_vmconfig_controller {
	int32_t key;
	char type[FY_VMCONFIG_WORD_MAX];    /* "pvscsi" */
	uint32_t bus;
	char sharing[FY_VMCONFIG_WORD_MAX]; /* SCSI: "noSharing"; else "" */
};

struct fy_vmconfig_disk {
	int32_t key, controller_key;
	uint32_t unit;
	uint64_t capacity;                       /* bytes */
	char provisioning[FY_VMCONFIG_WORD_MAX]; /* "thin", "thick-eager" */
	char mode[FY_VMCONFIG_WORD_MAX];         /* "persistent" */
	bool in_backup;
	uint32_t backup_disk;                    /* the manifest's index */
};

struct fy_vmconfig_nic {
	int32_t key;
	char adapter[FY_VMCONFIG_WORD_MAX];  /* "vmxnet3" */
	char network[FY_VMCONFIG_NAME_MAX];
	char mac_type[FY_VMCONFIG_WORD_MAX]; /* "manual", "generated" */
	char mac[18];                        /* "00:50:56:aa:bb:01" or "" */
};

struct fy_vmconfig_cdrom {
	int32_t key, controller_key;
	uint32_t unit;
};

struct fy_vmconfig_option {
	char key[FY_VMCONFIG_KEY_MAX];
	char value[FY_VMCONFIG_VALUE_MAX];
};

struct fy_vmconfig {
	uint32_t version;
	/* A version after FY_VMCONFIG_VERSION: nothing else is filled (its
	 * fields may mean something else); shown as "newer". */
	bool newer;
	char name[FY_VMCONFIG_NAME_MAX];
	char guest_id[FY_VMCONFIG_WORD_MAX];
	char hardware_version[FY_VMCONFIG_WORD_MAX]; /* "vmx-19" */
	char firmware[FY_VMCONFIG_WORD_MAX];         /* "bios" or "efi" */
	bool secure_boot;
	uint32_t cpus, cores_per_socket;
	uint64_t memory_mb;
	size_t n_controllers, n_disks, n_nics, n_cdroms, n_extra;
	struct fy_vmconfig_controller controllers[FY_VMCONFIG_CONTROLLERS_MAX];
	struct fy_vmconfig_disk disks[FY_VMCONFIG_DISKS_MAX];
	struct fy_vmconfig_nic nics[FY_VMCONFIG_NICS_MAX];
	struct fy_vmconfig_cdrom cdroms[FY_VMCONFIG_CDROMS_MAX];
	struct fy_vmconfig_option extra[FY_VMCONFIG_EXTRA_MAX];
};

/* The extraConfig keys a record keeps (NULL-terminated; docs/RESTORE.md
 * says why each). */
extern const char *const fy_vmconfig_extra_keys[];
bool fy_vmconfig_extra_allowed(const char *key);
/* The list's spelling of KEY, matched without regard to case as VMX keys
 * are, or NULL when it is not on the list. */
const char *fy_vmconfig_extra_canonical(const char *key);
/* Whether S may stand in a record's free text: UTF-8 without control
 * characters (C0, DEL, C1). */
bool fy_vmconfig_text_ok(const char *s);
/* An empty record of this version (about 130 KiB: allocate, never on the
 * stack). NULL with a message when out of memory. */
struct fy_vmconfig *fy_vmconfig_new(void);
void fy_vmconfig_free(struct fy_vmconfig *c);
/* Every bound and rule of docs/FORMAT.md; -EBADMSG naming the first
 * violation. */
int fy_vmconfig_check(const struct fy_vmconfig *c);
/* The record's backup disks exist in a backup of disk_count disks. */
int fy_vmconfig_check_backup(const struct fy_vmconfig *c, uint32_t disk_count);
/* Checks, then packs into a new buffer (the caller frees it). */
int fy_vmconfig_encode(const struct fy_vmconfig *c, uint8_t **out,
		       size_t *len);
/* Bounded: at most FY_VMCONFIG_MAX bytes, counts checked on the wire
 * before unpacking, then fy_vmconfig_check. A later version decodes as
 * newer. -EBADMSG with a message for anything else. */
int fy_vmconfig_decode(const void *data, size_t len, struct fy_vmconfig **out);
/* Human-readable (for ferry show) or one JSON object. */
void fy_vmconfig_print(const struct fy_vmconfig *c, FILE *f, bool json);

/* ---- the repository ---------------------------------------------------- */

struct fy_repo;

/* Creates the layout under root (which may exist, empty), in the
 * current format (2, pack files); fy_repo_init_format also makes format 1
 * repositories, for tests of migrate and of old repositories. */
#define FY_REPO_FORMAT_CURRENT 2
int fy_repo_init(const char *root);
int fy_repo_init_format(const char *root, unsigned format);
/* Converts a format 1 repository to format 2 in place (exclusive lock;
 * crash-safe: the config switches only when every block is in a
 * durable pack and the index is written; a second run finishes the
 * removal of the old block files). Reports to out. */
int fy_repo_migrate(const char *root, FILE *out);
/* Format 3: drops the local cache and builds it again from the bucket
 * (no server may be serving root). Reports to out. */
int fy_repo_rebuild(const char *root, FILE *out);
/* Opens an initialised repository. FY_REPO_CLEAN_TMP clears leftovers of
 * a crash from tmp/ (the server does it at start, under the exclusive
 * lock). */
#define FY_REPO_CLEAN_TMP 1u
/* A server: holds root/serve.lock shared while open, so that migrate can
 * refuse to change the format under a running server. */
#define FY_REPO_SERVING 2u
/* The configuration only, no store (a cache that is to be rebuilt). */
#define FY_REPO_CONFIG_ONLY 4u
int fy_repo_open(const char *root, unsigned flags, struct fy_repo **out);
void fy_repo_close(struct fy_repo *repo);
const char *fy_repo_id(const struct fy_repo *repo);
const char *fy_repo_tmpdir(const struct fy_repo *repo);

/* Blocks, by SHA-256 of their plain content. put is durable when it
 * returns (temp file, fsync, rename); the directory entries become durable
 * at fy_repo_sync. */
int fy_repo_block_exists(struct fy_repo *repo,
			 const uint8_t digest[FY_DIGEST_LEN]); /* 1, 0, -errno */
int fy_repo_block_put(struct fy_repo *repo,
		      const uint8_t digest[FY_DIGEST_LEN], enum fy_codec codec,
		      uint32_t plain_size, const void *data, size_t len);
/* Reads the stored form into buf (capacity bufcap >= FY_STORED_MAX). */
int fy_repo_block_get(struct fy_repo *repo,
		      const uint8_t digest[FY_DIGEST_LEN], enum fy_codec *codec,
		      uint32_t *plain_size, void *buf, size_t bufcap,
		      size_t *len);
int fy_repo_block_delete(struct fy_repo *repo,
			 const uint8_t digest[FY_DIGEST_LEN]);
int fy_repo_block_list(struct fy_repo *repo,
		       int (*cb)(void *opaque,
				 const uint8_t digest[FY_DIGEST_LEN]),
		       void *opaque);
/* Makes everything written so far durable (syncfs). */
int fy_repo_sync(struct fy_repo *repo);

/* A backup's blocks (the server's backup session). Puts may come from
 * many threads. What a session stores is visible to others only after
 * fy_repo_session_commit, which makes it durable; ending a session that
 * did not commit removes what it stored (format 2; format 1 leaves it to
 * gc). exists() answers for the repository and for this session's own
 * blocks, remembered up to FY_SESSION_SEEN_MAX digests (past that, a
 * repeated block of the session is stored again: correct, only larger). */
#define FY_SESSION_SEEN_MAX (1u << 20)
struct fy_repo_session;
int fy_repo_session_begin(struct fy_repo *repo, struct fy_repo_session **out);
/* Before the block is stored: exists() answers 1 for it from now on. */
void fy_repo_session_note(struct fy_repo_session *s,
			  const uint8_t digest[FY_DIGEST_LEN]);
int fy_repo_session_exists(struct fy_repo_session *s,
			   const uint8_t digest[FY_DIGEST_LEN]);
int fy_repo_session_put(struct fy_repo_session *s,
			const uint8_t digest[FY_DIGEST_LEN],
			enum fy_codec codec, uint32_t plain_size,
			const void *data, size_t len);
int fy_repo_session_commit(struct fy_repo_session *s);
void fy_repo_session_end(struct fy_repo_session *s);
/* The file that holds a block's stored object, and where in it (a block
 * file at 0 in format 1, a place in a pack in format 2). */
int fy_repo_block_locate(struct fy_repo *repo,
			 const uint8_t digest[FY_DIGEST_LEN], char *path,
			 size_t pathlen, uint64_t *offset, uint64_t *length);
/* The format 2 parsers of outside data, for fuzzing and tests: a whole
 * pack file in memory (header and trailer, every bound), and an index
 * file (docs/FORMAT.md). 0, or -EBADMSG with a message. */
int fy_pack_check(const uint8_t *file, size_t len);
/* The lease object of a repository in a bucket (format 3), for fuzzing:
 * 0 or -EBADMSG. */
int fy_s3_lease_check(const uint8_t *data, size_t len);
int fy_index_check(const uint8_t *file, size_t len);
/* The repository's format: 1 (a file per block) or 2 (pack files). */
unsigned fy_repo_format(const struct fy_repo *repo);

/* Backups. A new id: "YYYYMMDDTHHMMSSZ-xxxxxxxx" (sorts by time). */
void fy_repo_new_backup_id(char id[FY_ID_MAX]);
/* Moves a finished manifest (from fy_manifest_builder_finish) into
 * place: rename, fsync the directory. From then on it is listed. */
int fy_repo_backup_commit(struct fy_repo *repo, const char *tmp_path,
			  const char *id);
/* Ids in ascending order. */
int fy_repo_backup_list(struct fy_repo *repo,
			int (*cb)(void *opaque, const char *id), void *opaque);
int fy_repo_backup_open(struct fy_repo *repo, const char *id,
			struct fy_manifest **out);
int fy_repo_backup_delete(struct fy_repo *repo, const char *id);

/* Coordination between backups (shared) and gc (exclusive): flock on
 * root/lock. Returns an fd to pass to unlock, or -errno. */
int fy_repo_lock(struct fy_repo *repo, bool exclusive);
/* The same; an exclusive caller that must wait says so as who. Waiting
 * exclusive callers hold back shared ones that arrive after them. */
int fy_repo_lock_as(struct fy_repo *repo, bool exclusive, const char *who);
void fy_repo_unlock(int fd);

/* ---- who may do what (image/acl.c, docs/SECURITY.md) -------------------- */

#define FY_ACL_FILE_MAX (1u << 20)
#define FY_ACL_LINE_MAX 4096
#define FY_ACL_ENTRIES_MAX 10000
/* In a grant or adoption: any namespace, owner or group. */
#define FY_ACL_ANY "*"

enum fy_acl_kind { FY_ACL_GRANT = 1, FY_ACL_ADOPT };

/* grant: client may read (list, restore) the backups of owner's group in
 * namespace (each may be FY_ACL_ANY). adopt: legacy backups (written
 * before owners existed) of that namespace and group belong to owner. */
struct fy_acl_entry {
	enum fy_acl_kind kind;
	char client[FY_OWNER_MAX];
	char namespace_[FY_NAMESPACE_MAX];
	char owner[FY_OWNER_MAX];
	char group[FY_LABEL_MAX];
};

struct fy_acl;
/* ROOT/acl; a repository without one has an empty list. */
int fy_acl_load(struct fy_repo *repo, struct fy_acl **out);
/* The parser behind fy_acl_load, bounded (FY_ACL_*), for tests and fuzzing. */
int fy_acl_parse_mem(const void *data, size_t len, struct fy_acl **out);
void fy_acl_free(struct fy_acl *acl);
size_t fy_acl_count(const struct fy_acl *acl);
const struct fy_acl_entry *fy_acl_entry(const struct fy_acl *acl, size_t i);
/* Adds (or removes) one entry durably, under the list's lock, and audits
 * it as who. -EEXIST / -ENOENT when it is there already / not there. */
int fy_acl_change(struct fy_repo *repo, const struct fy_acl_entry *e,
		  bool add, const char *who);
void fy_acl_print(const struct fy_acl *acl, FILE *out, bool json);
/* The backup's owner: its manifest's, else an adoption's, else "" (a
 * legacy backup only admins may read). */
const char *fy_acl_owner_of(const struct fy_acl *acl,
			    const struct fy_manifest *m);
/* Whether client (of role) may list and restore m. */
bool fy_acl_may_read(const struct fy_acl *acl, const char *client,
		     enum fy_role role, const struct fy_manifest *m);

/* A group (namespace + source) has one owner for good, recorded in
 * ROOT/groups/ by its first backup. claim makes owner the owner of a group
 * without one and returns 0 when owner owns it; -EACCES naming the owner
 * otherwise. */
int fy_repo_group_claim(struct fy_repo *repo, const char *ns,
			const char *group, const char *owner);
int fy_repo_group_owner(struct fy_repo *repo, const char *ns,
			const char *group, char *owner, size_t owner_len);

/* Appends one line to ROOT/audit.log (JSON, fdatasync'd) and the log:
 * who did what from where. Never fails the caller's operation. */
void fy_repo_audit(struct fy_repo *repo, const char *who, const char *from,
		   const char *action, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* "local:USER" for audit lines of commands run on the repository host. */
const char *fy_local_user(char *buf, size_t len);

/* ---- repository-wide operations ---------------------------------------- */

struct fy_verify_result {
	uint64_t backups, damaged_backups;
	uint64_t blocks_checked, blocks_bad, blocks_missing;
	uint64_t blocks_deleted; /* by repair */
};
/* Re-reads and re-hashes every referenced block once; reports damaged
 * backups and their bad blocks on out (may be NULL). Returns 0 (result
 * says whether damage was found) or -errno when the check itself failed.
 * Holds the shared lock, so gc cannot run meanwhile. */
int fy_repo_verify(struct fy_repo *repo, FILE *out,
		   struct fy_verify_result *res);
/* The same; with repair, corrupt blocks are also deleted (under the
 * exclusive lock) so that the next backup holding their data stores them
 * again. Backups that referenced them stay damaged and are reported. */
int fy_repo_verify_ex(struct fy_repo *repo, FILE *out, bool repair,
		      struct fy_verify_result *res);

struct fy_prune_policy {
	int keep_last, keep_daily, keep_weekly, keep_monthly; /* 0 = unset */
	bool dry_run;
	const char *namespace_; /* only this namespace; NULL: all */
	const char *owner;      /* only this owner's groups; NULL: all */
	const char *who;        /* for the audit log; NULL: the local user */
};
/* Per group (namespace, owner, source: never across owners), keeps what
 * the policy keeps and deletes the other manifests
 * (blocks are freed by gc). Prints what it keeps and removes on out (may
 * be NULL); with dry_run, *removed counts what would be removed. */
int fy_repo_prune(struct fy_repo *repo, const struct fy_prune_policy *p,
		  FILE *out, uint64_t *removed);

struct fy_gc_result {
	uint64_t referenced, stored, deleted, bytes_freed;
	/* format 2: packs seen, deleted whole, repacked (their live blocks
	 * copied into packs_written new ones, bytes_written bytes) */
	uint64_t packs, packs_deleted, packs_repacked, packs_written;
	uint64_t bytes_written;
	/* format 3: packs gc would delete or repack that Object Lock
	 * retention still keeps */
	uint64_t packs_retained;
	/* format 3 with Object Lock: objects whose retention gc extended */
	uint64_t retention_extended;
	/* format 3: packs found only in the bucket, multipart uploads
	 * aborted */
	uint64_t packs_found, uploads_aborted;
};
/* Deletes blocks no backup references, under the exclusive lock. */
int fy_repo_gc(struct fy_repo *repo, bool dry_run, FILE *out,
	       struct fy_gc_result *res);

#endif
