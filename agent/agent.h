/*
 * agent: ferry-agent (the backup side) and ferry (the admin's and central
 * server's command line). This private header joins the folder's files;
 * agent is the only folder that ties the others together.
 */
#ifndef FERRY_AGENT_H
#define FERRY_AGENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/common.h"
#include "image/image.h"
#include "proto/wire.h"

/* ---- configuration shared by ferry-agent and ferry --------------------- */

/* The keys of the repository connection and the pipeline. */
extern const char *const fy_known_keys[];
/* Every key this build knows (ours, nbd's, vsphere's); others are warned
 * about by name. */
const char *const *fy_all_known_keys(void);

struct fy_settings {
	const char *repository; /* ferry.repository host:port */
	const char *server_name; /* ferry.tls.serverName, default the host */
	const char *namespace_;  /* ferry.repository.namespace, NULL: root */
	struct fy_tls_opts tls;
	uint32_t block_size;
	int compression_level;
	/* ferry.compressionProbe: skip zstd on blocks whose sample does not
	 * shrink (stored raw) */
	bool compression_probe;
	unsigned workers;
	unsigned queue_depth;
	uint64_t io_size;
	int timeout_ms;
	/* vixDiskLib.disklib.EnableCache=1: local and hot-added disks read
	 * through the page cache (fy_file_source_opts.cached) */
	bool read_cache;
};

/* What every ferry-agent command does once its configuration is loaded:
 * the log level (level, or vixDiskLib.transport.LogLevel when level < 0),
 * the log file (ferry.logFile), tmpDirectory's file for this process
 * (tmpDirectory/ferry-agent-PID.log, as VDDK logs there), and a warning
 * for every unknown key. */
int fy_agent_setup_logging(const struct fy_config *cfg, int level);

/* Reads the keys above (with their defaults and ranges) from cfg. */
int fy_settings_load(const struct fy_config *cfg, struct fy_settings *s);
/* Connects to the repository and greets it. */
int fy_repo_connect(const struct fy_settings *s, const char *software,
		    struct fy_conn **out, char *repo_id, size_t repo_id_len);

/* ---- the block pipeline ------------------------------------------------ */

struct fy_disk_stats {
	uint64_t size;
	uint64_t blocks;
	uint64_t bytes_read;   /* read from the source */
	uint64_t bytes_zero;   /* holes and all-zero blocks, never sent */
	uint64_t bytes_dedup;  /* blocks the repository already had */
	uint64_t bytes_new;    /* plain bytes of blocks sent */
	uint64_t bytes_sent;   /* what those blocks took on the wire */
	uint64_t blocks_sent;
	uint64_t bytes_unchanged; /* an incremental's blocks from the parent */
	double seconds;
	/* A restore's counters: bytes_read is the data written, bytes_zero
	 * the zeros written, bytes_unchanged the blocks left as the disk has
	 * them (a new disk's holes, a rollback's unchanged areas),
	 * bytes_sent data and zeros. */
	bool restore;
};

typedef void (*fy_progress_cb)(void *opaque, const struct fy_disk_stats *st,
			       bool done);

/* An incremental's parent: the previous backup's map of the same disk
 * (same size and block size), one entry a block. */
struct fy_parent_map {
	uint64_t size;         /* the disk's bytes */
	uint32_t block_size;
	uint64_t n;
	uint8_t (*digest)[FY_DIGEST_LEN];
	uint8_t *hole; /* 1: the parent's block is a hole */
};

struct fy_pipeline_opts {
	uint32_t block_size;
	int compression_level;
	bool compression_probe; /* fy_block_encode_ex's probe */
	unsigned workers;
	unsigned queue_depth; /* blocks read at once */
	const char *change_id; /* CBT change ID of what is read, or NULL */
	const char *disk_id;   /* a VM disk's UUID, or NULL */
	/* Incremental: blocks the source's extents call holes (CBT says
	 * unchanged) take the parent's entry instead of being zeros. */
	const struct fy_parent_map *parent;
	atomic_bool *cancel;   /* set: stop between blocks, -ECANCELED */
	fy_progress_cb progress;
	void *progress_opaque;
};

struct fy_session;
/* Reads every block of src and gives the session what the repository
 * lacks and the block map, within a backup session already begun
 * (agent/session.h; the disk is begun and ended here). Memory is bounded
 * by the pool: see docs. After a failure the session is good only for
 * fy_session_fail. */
int fy_pipeline_run(struct fy_session *sess, struct fy_source *src,
		    uint32_t disk_index, const char *label,
		    const struct fy_pipeline_opts *opts,
		    struct fy_disk_stats *st);

/* Wraps src so that its extents are the given areas (data) and holes
 * elsewhere: what CBT reports as allocated for a source that cannot tell
 * (a hot-added block device). Takes the areas (fy_vs_areas layout: start,
 * length, in order); closing the wrapper frees them but not src. */
struct fy_area { uint64_t start, length; };
int fy_area_source_wrap(struct fy_source *src, struct fy_area *areas,
			size_t n, struct fy_source **out);

/* ---- sessions with the repository (repo_client.c) ---------------------- */

/* Receives one frame and turns an Error frame or a wrong type into an
 * error naming what we were waiting for (what). */
int fy_client_recv_expect(struct fy_conn *conn, Ferry__Frame__BodyCase want,
			  const char *what, fy_frame **out);

/* A listed backup, as an incremental needs it. */
struct fy_backup_info {
	char id[FY_ID_MAX];
	int64_t created_unix;
	uint32_t block_size;
	uint32_t n_disks;
	struct fy_manifest_disk *disks; /* n_disks; free with the info */
};
/* The newest backup of source (and kind), or -ENOENT; *out is freed with
 * fy_backup_info_free. */
int fy_client_latest(struct fy_conn *conn, const char *source,
		     const char *kind, struct fy_backup_info **out);
void fy_backup_info_free(struct fy_backup_info *b);
/* A disk's whole block map from the repository, into m (freed with
 * fy_parent_map_free). The backup's disk must be size bytes in blocks of
 * block_size (checked before anything is allocated); size and block_size
 * 0 take the backup's, bounded by FY_DISK_SIZE_MAX. */
int fy_client_get_map(struct fy_conn *conn, const char *backup_id,
		      uint32_t disk, uint64_t size, uint32_t block_size,
		      struct fy_parent_map *m);
void fy_parent_map_free(struct fy_parent_map *m);
/* Lists backups; cb gets each summary. */
/* Refuses a server whose certificate carries another role than want (one
 * without a role is accepted, with a warning once). what: "repository". */
int fy_check_server_role(struct fy_conn *c, enum fy_role want,
			 const char *what);
/* all_namespaces: every namespace the client may read. */
int fy_client_list_ex(struct fy_conn *conn, bool all_namespaces,
		      int (*cb)(void *opaque, const Ferry__BackupSummary *b),
		      void *opaque);
/* One backup by id (`ferry show`): cb once if the repository has it and
 * this certificate may read it, else not at all. Asks the repository for
 * that backup alone (ListBackups.id); an older repository's pages are
 * filtered instead. id NULL: every backup, as fy_client_list_ex. */
int fy_client_list_one(struct fy_conn *conn, bool all_namespaces,
		       const char *id,
		       int (*cb)(void *opaque, const Ferry__BackupSummary *b),
		       void *opaque);
int fy_client_list(struct fy_conn *conn,
		   int (*cb)(void *opaque, const Ferry__BackupSummary *b),
		   void *opaque);
/* Restores one disk of a backup to path ("-" for stdout); verifies every
 * block's digest end to end. An existing non-empty regular file is
 * replaced only with overwrite (-EEXIST otherwise); a block device is
 * always written. */
/* Opens one disk of a backup for reading on conn (the repository serves
 * a connection blocks only after a map it may read): a GetMap of one
 * entry. */
int fy_client_open_disk(struct fy_conn *conn, const char *backup_id,
			uint32_t disk);
int fy_client_restore(struct fy_conn *conn, const char *backup_id,
		      uint32_t disk, const char *path, bool progress,
		      bool overwrite, uint64_t *bytes_written);
/* The same into fd, which the caller owns (a pipe: an upload), in order,
 * holes as zeros; the backup's disk must be size bytes. hooks (may be
 * NULL): cancel polled between batches of blocks (-ECANCELED), progress
 * called a few times a second and once at the end with the data and the
 * zeros written so far. */
struct fy_restore_hooks {
	atomic_bool *cancel;
	/* data and zeros written, skipped left as the output has them (a
	 * new disk's holes, a rollback's unchanged areas), of size bytes. */
	void (*progress)(void *opaque, uint64_t data, uint64_t zeros,
			 uint64_t skipped, uint64_t size, bool done);
	/* NULL: every block; else only the blocks it says yes to (offset
	 * and length in the disk), the others left as the output has them. */
	bool (*want)(void *opaque, uint64_t offset, uint64_t length);
	void *opaque;
};
int fy_client_restore_fd(struct fy_conn *conn, const char *backup_id,
			 uint32_t disk, int fd, uint64_t size,
			 const struct fy_restore_hooks *hooks,
			 uint64_t *bytes_written, uint64_t *zeros_written);
/* Into path, the block device of a VM disk of exactly size bytes (a disk
 * hot-added for a restore): opened O_DIRECT, whole blocks written from
 * aligned buffers, fsync at the end. new_disk: a new disk, which reads as
 * zeros, so holes are skipped; else holes are written as zeros. hooks as
 * above (want: a rollback writes only what changed). */
int fy_client_restore_device(struct fy_conn *conn, const char *backup_id,
			     uint32_t disk, const char *path, uint64_t size,
			     bool new_disk, const struct fy_restore_hooks *hooks,
			     uint64_t *bytes_written, uint64_t *zeros_written);

/* Into a writer of the caller's (restore-vm over NBD): blocks in disk
 * order, adjacent ones joined up to 8 MiB a write; new_disk: holes are
 * skipped (the disk reads as zeros), else written as zeros; flush (may be
 * NULL) once everything is written. */
struct iovec;
struct fy_restore_sink {
	int (*pwritev)(void *opaque, const struct iovec *iov, int iovcnt,
		       uint64_t off);
	int (*flush)(void *opaque);
	void *opaque;
	const char *name;   /* for messages */
	bool new_disk;
};
int fy_client_restore_sink(struct fy_conn *conn, const char *backup_id,
			   uint32_t disk, const struct fy_restore_sink *sink,
			   uint64_t size, const struct fy_restore_hooks *hooks,
			   uint64_t *bytes_written, uint64_t *zeros_written);

/* ---- VM disks (vm_backup.c) -------------------------------------------- */

/* ferry-agent backup --vm ...: a VM's disks over the transport table's
 * modes (agent/job.c). */
int agent_cmd_vm_backup(int argc, char **argv);
/* ferry-agent restore-vm (restore_vm.c): a whole VM from a backup. */
int agent_cmd_restore_vm(int argc, char **argv);
/* ferry-agent cleanup: the crash self-cleanup (numCleanedUp/numRemaining). */
int agent_cmd_cleanup(int argc, char **argv);
/* ferry-agent ovf-env (ovf_apply.c): the proxy appliance's OVF properties
 * become agent.conf, certificates, network, hostname, SSH key. */
int agent_cmd_ovf_env(int argc, char **argv);

/* A disk's counters as JSON object members (no braces): "size":...,
 * "blocks", "bytes_read", "bytes_zero", "bytes_deduplicated", "bytes_new",
 * "bytes_sent", "blocks_sent", "seconds". */
void fy_disk_stats_json(FILE *f, const struct fy_disk_stats *st);

/* A status line on a terminal: "read 1.2 GiB  zero ...". */
void fy_progress_print(void *opaque, const struct fy_disk_stats *st,
		       bool done);
/* The progress line of a disk, fitted to width columns (less one): the
 * fields most wanted first (prefix such as "disk 1/2", percent of what is
 * finished, ETA or time taken, rate, then the counters), and what does not
 * fit is dropped from the end, never wrapped. */
void fy_progress_format(char *line, size_t cap, unsigned width,
			const char *prefix, const struct fy_disk_stats *st,
			bool done);
/* stderr's terminal width, or 80 when it cannot be told. */
unsigned fy_term_width(void);

/* ---- instant access: ferry mount (mount.c) ------------------------------ */

struct fy_mount_opts {
	const char *backup_id;
	uint32_t disk;
	const char *listen;     /* HOST:PORT, or NULL */
	const char *socket;     /* a Unix socket, or NULL */
	bool tls;               /* STARTTLS required, client certificates of
				 * ferry.tls.ca */
	const char *tls_cert, *tls_key; /* the export's; default ferry.tls.* */
	unsigned cache_mb;      /* decoded blocks kept (at least 34 MiB) */
	const char *ready_file; /* written with the address once serving */
};

/* Serves one disk of a backup read-only over NBD until SIGINT/SIGTERM. */
int fy_mount_run(const struct fy_settings *s, const struct fy_mount_opts *o);

#endif
