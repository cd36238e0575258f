/*
 * The client side of the repository protocol, shared by ferry-agent
 * (backups) and ferry (list, restore): settings from the configuration
 * file, connecting, and the list and restore conversations.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/control.h"
#include "hotadd/hotadd.h"
#include "nbd/nbd.h"
#include "san/san.h"
#include "vsphere/vsphere.h"

const char *const fy_known_keys[] = {
	"ferry.repository",
	"ferry.tls.cert",
	"ferry.tls.key",
	"ferry.tls.ca",
	"ferry.tls.serverName",
	"ferry.tls.crl",
	/* the namespace backups are made, listed and read in */
	"ferry.repository.namespace",
	"ferry.blockSize",
	"ferry.compressionLevel",
	"ferry.workers",
	"ferry.io.queueDepth",
	"ferry.io.size",
	"ferry.timeoutSeconds",
	"ferry.logFile",
	"vixDiskLib.transport.LogLevel",
	"tmpDirectory",
	"vixDiskLib.disklib.EnableCache",
	/* the default transport list of --vm jobs (agent/job.c) */
	"ferry.transports",
	NULL,
};

/* Ours, the NBD and hotadd transports' and the vSphere client's, in one
 * list. */
#define ALL_KEYS_MAX 512
static const char *all_keys[ALL_KEYS_MAX];
static pthread_once_t all_keys_once = PTHREAD_ONCE_INIT;

static void build_all_keys(void)
{
	static const char *const *const lists[] = {
		fy_known_keys, fy_nbd_config_keys, fy_vs_config_keys,
		fy_hotadd_config_keys, fy_service_config_keys,
		fy_job_config_keys, fy_san_config_keys,
	};
	size_t l, i, n = 0;

	for (l = 0; l < sizeof(lists) / sizeof(lists[0]); l++)
		for (i = 0; lists[l][i] && n + 1 < ALL_KEYS_MAX; i++)
			all_keys[n++] = lists[l][i];
	all_keys[n] = NULL;
}

const char *const *fy_all_known_keys(void)
{
	pthread_once(&all_keys_once, build_all_keys);
	return all_keys;
}

int fy_agent_setup_logging(const struct fy_config *cfg, int level)
{
	const char *file = fy_config_get(cfg, "ferry.logFile"), *tmp_dir;
	char path[4096];
	int rc;

	if (level < 0) {
		int64_t v;

		rc = fy_config_get_int(cfg, "vixDiskLib.transport.LogLevel", 3,
				       0, 6, &v);
		if (rc < 0)
			return rc;
		level = (int)v;
	}
	fy_log_set_level(level);
	if (file && (rc = fy_log_set_file(file)) < 0)
		return rc;
	/* VDDK's tmpDirectory: a log file per process under it, as
	 * vixDiskLib-PID.log is there. */
	tmp_dir = fy_config_get(cfg, "tmpDirectory");
	if (tmp_dir && *tmp_dir) {
		rc = fy_log_set_dir(tmp_dir, program_invocation_short_name,
				    path, sizeof(path));
		if (rc < 0)
			return fy_err_wrap(rc, "tmpDirectory (from %s)",
					   fy_config_origin(cfg,
							    "tmpDirectory"));
		fy_debug("logging to %s", path);
	} else {
		/* A reload that dropped the key stops writing there. */
		fy_log_set_dir(NULL, NULL, NULL, 0);
	}
	/* A misspelled key of ours is an error; VDDK's keep a warning. */
	return fy_config_check_unknown(cfg, fy_all_known_keys(), "ferry.");
}

int fy_settings_load(const struct fy_config *cfg, struct fy_settings *s)
{
	int64_t v;
	int rc;

	memset(s, 0, sizeof(*s));
	s->repository = fy_config_get(cfg, "ferry.repository");
	s->server_name = fy_config_get(cfg, "ferry.tls.serverName");
	s->tls.cert = fy_config_get(cfg, "ferry.tls.cert");
	s->tls.key = fy_config_get(cfg, "ferry.tls.key");
	s->tls.ca = fy_config_get(cfg, "ferry.tls.ca");
	s->tls.crl = fy_config_get(cfg, "ferry.tls.crl");
	s->namespace_ = fy_config_get(cfg, "ferry.repository.namespace");
	if (s->namespace_ && !fy_namespace_valid(s->namespace_))
		return fy_err_set(-EINVAL, "ferry.repository.namespace='%.80s' "
				  "(from %s): %s", s->namespace_,
				  fy_config_origin(cfg, "ferry.repository.namespace"),
				  FY_NAMESPACE_RULE);
	rc = fy_config_get_int(cfg, "ferry.blockSize", FY_BLOCK_DEFAULT,
			       FY_BLOCK_MIN, FY_BLOCK_MAX, &v);
	if (rc < 0)
		return rc;
	if (v & (v - 1))
		return fy_err_set(-EINVAL, "ferry.blockSize=%" PRId64 " (from %s) "
				  "is not a power of two in %u..%u", v,
				  fy_config_origin(cfg, "ferry.blockSize"),
				  FY_BLOCK_MIN, FY_BLOCK_MAX);
	s->block_size = (uint32_t)v;
	rc = fy_config_get_int(cfg, "ferry.compressionLevel", 3, 1, 19, &v);
	if (rc < 0)
		return rc;
	s->compression_level = (int)v;
	rc = fy_config_get_int(cfg, "ferry.workers", 0, 0, 64, &v);
	if (rc < 0)
		return rc;
	s->workers = (unsigned)v;
	if (!s->workers) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		s->workers = n > 0 ? (unsigned)n : 2;
	}
	rc = fy_config_get_int(cfg, "ferry.io.queueDepth", 16, 1, 256, &v);
	if (rc < 0)
		return rc;
	s->queue_depth = (unsigned)v;
	rc = fy_config_get_int(cfg, "ferry.io.size", 1 << 20, 4096, 64 << 20, &v);
	if (rc < 0)
		return rc;
	s->io_size = (uint64_t)v;
	rc = fy_config_get_int(cfg, "ferry.timeoutSeconds", 300, 1, 86400, &v);
	if (rc < 0)
		return rc;
	s->timeout_ms = (int)v * 1000;
	rc = fy_config_get_int(cfg, "vixDiskLib.disklib.EnableCache", 0, 0, 1,
			       &v);
	if (rc < 0)
		return rc;
	s->read_cache = v == 1;
	return 0;
}

int fy_repo_connect(const struct fy_settings *s, const char *software,
		    struct fy_conn **out, char *repo_id, size_t repo_id_len)
{
	struct fy_tls *tls = NULL;
	struct fy_conn *c = NULL;
	int rc;

	if (!s->repository)
		return fy_err_set(-EINVAL, "no repository: set ferry.repository="
				  "HOST:PORT in the configuration or give "
				  "--repository");
	rc = fy_tls_new_client(&s->tls, &tls);
	if (rc < 0)
		return rc;
	rc = fy_conn_connect(tls, s->repository, s->server_name, s->timeout_ms,
			     &c);
	/* The connection holds its own reference to the context. */
	fy_tls_free(tls);
	if (rc < 0)
		return rc;
	rc = fy_check_server_role(c, FY_ROLE_REPOSITORY, "repository");
	if (rc == 0)
		rc = fy_conn_hello(c, software, s->block_size, s->namespace_,
				   repo_id, repo_id_len);
	if (rc < 0) {
		fy_conn_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

int fy_check_server_role(struct fy_conn *c, enum fy_role want,
			 const char *what)
{
	struct fy_identity id;
	int rc = fy_conn_identity(c, &id);

	if (rc < 0)
		return fy_err_wrap(rc, "%s", what);
	/* A server certificate from before roles: its name was checked by
	 * TLS, which is all that could be checked then. */
	if (id.role == FY_ROLE_NONE) {
		static atomic_bool warned;

		if (!atomic_exchange(&warned, true))
			fy_warn("%s %s presents a certificate without a Ferry "
				"role; issue it again with --role %s "
				"(docs/SECURITY.md)", what, id.name,
				fy_role_name(want));
		return 0;
	}
	if (id.role != want)
		return fy_err_set(-EACCES, "%s %s presents a certificate of "
				  "role %s, not %s: refusing to talk to it",
				  what, fy_conn_peer(c), fy_role_name(id.role),
				  fy_role_name(want));
	return 0;
}

/* Receives one frame and turns an Error frame or a wrong type into an
 * error naming what we were waiting for. */
static int recv_expect(struct fy_conn *conn, Ferry__Frame__BodyCase want,
		       const char *what, fy_frame **out)
{
	fy_frame *f = NULL;
	int rc = fy_conn_recv(conn, &f);

	if (rc < 0)
		return rc;
	if (f->body_case == FERRY__FRAME__BODY_ERROR) {
		rc = fy_err_set(f->error->code < 0 ? f->error->code : -EPROTO,
				"repository: %s", f->error->message);
	} else if (f->body_case != want) {
		rc = fy_err_set(-EPROTO, "repository sent %s while we waited "
				"for %s", fy_frame_name(f), what);
	}
	if (rc < 0) {
		fy_frame_free(f);
		return rc;
	}
	*out = f;
	return 0;
}

int fy_client_begin_backup(struct fy_conn *conn, const char *source,
			   const char *kind, const char *parent_id,
			   uint32_t block_size, uint32_t disks, char *id,
			   size_t idlen)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__BeginBackup bb = FERRY__BEGIN_BACKUP__INIT;
	fy_frame *r = NULL;
	int rc;

	bb.source = (char *)source;
	bb.source_kind = (char *)kind;
	bb.parent_id = (char *)(parent_id ? parent_id : "");
	bb.created_unix = time(NULL);
	bb.block_size = block_size;
	bb.disk_count = disks;
	f.body_case = FERRY__FRAME__BODY_BEGIN_BACKUP;
	f.begin_backup = &bb;
	rc = fy_conn_send(conn, &f);
	if (rc == 0)
		rc = recv_expect(conn, FERRY__FRAME__BODY_BACKUP_STARTED,
				 "BackupStarted", &r);
	if (rc < 0)
		return rc;
	snprintf(id, idlen, "%s", r->backup_started->backup_id);
	fy_frame_free(r);
	return 0;
}

int fy_client_commit(struct fy_conn *conn, const uint8_t *vm_config,
		     size_t vm_config_len, char *id, size_t idlen)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__Commit c = FERRY__COMMIT__INIT;
	fy_frame *r = NULL;
	int rc;

	c.vm_config.data = (uint8_t *)vm_config;
	c.vm_config.len = vm_config ? vm_config_len : 0;
	f.body_case = FERRY__FRAME__BODY_COMMIT;
	f.commit = &c;
	rc = fy_conn_send(conn, &f);
	if (rc == 0)
		rc = recv_expect(conn, FERRY__FRAME__BODY_COMMITTED, "Committed",
				 &r);
	if (rc < 0)
		return fy_err_wrap(rc, "commit");
	snprintf(id, idlen, "%s", r->committed->backup_id);
	fy_frame_free(r);
	return 0;
}

int fy_client_list(struct fy_conn *conn,
		   int (*cb)(void *opaque, const Ferry__BackupSummary *b),
		   void *opaque)
{
	return fy_client_list_ex(conn, false, cb, opaque);
}

int fy_client_list_ex(struct fy_conn *conn, bool all_namespaces,
		      int (*cb)(void *opaque, const Ferry__BackupSummary *b),
		      void *opaque)
{
	char after[FY_ID_MAX] = "";
	bool more = true;
	int rc = 0;

	while (more && rc == 0) {
		Ferry__Frame f = FERRY__FRAME__INIT;
		Ferry__ListBackups lb = FERRY__LIST_BACKUPS__INIT;
		fy_frame *r = NULL;
		size_t i;

		lb.after_id = after;
		lb.all_namespaces = all_namespaces;
		f.body_case = FERRY__FRAME__BODY_LIST_BACKUPS;
		f.list_backups = &lb;
		rc = fy_conn_send(conn, &f);
		if (rc == 0)
			rc = recv_expect(conn, FERRY__FRAME__BODY_BACKUP_LIST,
					 "BackupList", &r);
		if (rc < 0)
			return rc;
		for (i = 0; i < r->backup_list->n_backups && rc == 0; i++) {
			rc = cb(opaque, r->backup_list->backups[i]);
			snprintf(after, sizeof(after), "%s",
				 r->backup_list->backups[i]->id);
		}
		/* A page with nothing new cannot make progress. */
		more = r->backup_list->more && r->backup_list->n_backups;
		fy_frame_free(r);
	}
	return rc;
}

/* ---- restore ----------------------------------------------------------- */

/* Blocks requested at once: GetBlocks frames in flight times their size. */
#define RESTORE_INFLIGHT 4

struct restore {
	struct fy_conn *conn;
	int fd;
	bool seekable;     /* a regular file: holes stay holes */
	bool zero_holes;   /* a block device: holes are written as zeros */
	uint64_t size;
	uint32_t block_size;
	uint64_t pos;      /* next byte for sequential outputs */
	uint8_t *plain;
	uint8_t *zeros;
	uint64_t written;
	bool progress;
	bool overwrite;    /* an existing regular file may be replaced */
	int given_fd;      /* the caller's output (not opened, not closed) */
	uint64_t want_size; /* the output's size, or 0 for any */
	const struct fy_restore_hooks *hooks; /* or NULL */
	uint64_t zeros_written;
	/* A VM disk's block device (restore-vm over hotadd): O_DIRECT;
	 * new_device: a new disk, which reads as zeros already, so its holes
	 * are skipped. */
	bool device, new_device;
	double start, last;
};

static int out_write(struct restore *r, const void *buf, size_t len,
		     uint64_t off)
{
	int rc;

	if (r->seekable || r->zero_holes) {
		rc = fy_pwrite_all(r->fd, buf, len, off);
	} else {
		/* stdout or a pipe: everything in order, holes as zeros. */
		while (r->pos < off) {
			size_t n = off - r->pos < r->block_size ? off - r->pos
								: r->block_size;

			rc = fy_write_all(r->fd, r->zeros, n);
			if (rc < 0)
				return rc;
			r->pos += n;
			r->zeros_written += n;
		}
		rc = fy_write_all(r->fd, buf, len);
		r->pos = off + len;
	}
	if (rc == 0)
		r->written += len;
	return rc;
}

static size_t block_len(const struct restore *r, uint64_t index)
{
	uint64_t off = index * r->block_size;

	return r->size - off < r->block_size ? r->size - off : r->block_size;
}

/* Fetches and writes the data blocks of one map chunk. */
static int restore_chunk(struct restore *r, const Ferry__MapChunk *mc)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__GetBlocks gb = FERRY__GET_BLOCKS__INIT;
	ProtobufCBinaryData bins[FY_GET_MAX];
	uint64_t *idx;   /* block index of every data entry, in order */
	size_t ndata = 0, sent = 0, got = 0, i;
	unsigned inflight = 0;
	int rc = 0;

	idx = malloc(mc->n_digests * sizeof(*idx) + 1);
	if (!idx)
		return fy_err_set(-ENOMEM, "out of memory");
	if (r->hooks && r->hooks->cancel && atomic_load(r->hooks->cancel)) {
		rc = fy_err_set(-ECANCELED, "cancelled");
		goto out;
	}
	for (i = 0; i < mc->n_digests; i++) {
		uint64_t index = mc->first_block + i;

		/* Only the blocks asked for (a rollback: what changed). */
		if (r->hooks && r->hooks->want &&
		    !r->hooks->want(r->hooks->opaque, index * r->block_size,
				    block_len(r, index)))
			continue;
		if (mc->digests[i].len) {
			idx[ndata++] = i;
		} else if (r->zero_holes) {
			/* A chunk of holes is up to 16384 block writes. */
			if ((i & 255) == 255 && r->hooks && r->hooks->cancel &&
			    atomic_load(r->hooks->cancel)) {
				rc = fy_err_set(-ECANCELED, "cancelled");
				goto out;
			}
			rc = out_write(r, r->zeros, block_len(r, index),
				       index * r->block_size);
			if (rc < 0)
				goto out;
			/* Counted as zeros, not as restored data. */
			r->written -= block_len(r, index);
			r->zeros_written += block_len(r, index);
		}
	}
	while (got < ndata) {
		/* Keep a few requests in flight, never one per block. */
		while (sent < ndata && inflight < RESTORE_INFLIGHT) {
			size_t n = ndata - sent < FY_GET_MAX ? ndata - sent
							     : FY_GET_MAX;

			for (i = 0; i < n; i++)
				bins[i] = mc->digests[idx[sent + i]];
			gb.digests = bins;
			gb.n_digests = n;
			f.body_case = FERRY__FRAME__BODY_GET_BLOCKS;
			f.get_blocks = &gb;
			rc = fy_conn_send(r->conn, &f);
			if (rc < 0)
				goto out;
			sent += n;
			inflight++;
		}
		rc = fy_conn_flush(r->conn);
		if (rc < 0)
			goto out;
		/* Answers come in the order asked. */
		{
			size_t batch_end = got + FY_GET_MAX < ndata ? got + FY_GET_MAX
								    : ndata;

			for (; got < batch_end; got++) {
				fy_frame *b = NULL;
				uint64_t index = mc->first_block + idx[got];
				const ProtobufCBinaryData *want =
					&mc->digests[idx[got]];
				size_t len = block_len(r, index);

				rc = recv_expect(r->conn, FERRY__FRAME__BODY_BLOCK,
						 "Block", &b);
				if (rc < 0)
					goto out;
				if (memcmp(b->block->digest.data, want->data,
					   FY_DIGEST_LEN) ||
				    b->block->plain_size != len) {
					rc = fy_err_set(-EPROTO, "repository sent "
							"the wrong block for "
							"block %" PRIu64, index);
				} else {
					/* Decoding re-hashes: end-to-end check. */
					rc = fy_block_decode((enum fy_codec)b->block->codec,
							     b->block->data.data,
							     b->block->data.len,
							     len, want->data,
							     r->plain, r->block_size);
				}
				fy_frame_free(b);
				if (rc == 0)
					rc = out_write(r, r->plain, len,
						       index * r->block_size);
				if (rc < 0) {
					rc = fy_err_wrap(rc, "block %" PRIu64, index);
					goto out;
				}
			}
			inflight--;
		}
		if (r->hooks && r->hooks->cancel &&
		    atomic_load(r->hooks->cancel)) {
			rc = fy_err_set(-ECANCELED, "cancelled");
			goto out;
		}
		if (r->hooks && r->hooks->progress && fy_now() - r->last > 0.25) {
			r->last = fy_now();
			r->hooks->progress(r->hooks->opaque, r->written,
					   r->zeros_written, r->size, false);
		}
		if (r->progress && fy_now() - r->last > 0.5) {
			char w[32];

			r->last = fy_now();
			fy_format_bytes(r->written, w, sizeof(w));
			fprintf(stderr, "\rrestored %s ", w);
		}
	}
out:
	free(idx);
	return rc;
}

static int open_output(struct restore *r, const char *path)
{
	struct stat st;

	if (r->given_fd >= 0) {
		/* A pipe (an upload): everything in order, holes as zeros. */
		r->fd = r->given_fd;
		return 0;
	}
	if (!strcmp(path, "-")) {
		r->fd = STDOUT_FILENO;
		return 0;
	}
	if (r->device) {
		r->fd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
		if (r->fd < 0)
			return fy_err_set(-errno, "cannot open %s: %s", path,
					  strerror(errno));
		if (fstat(r->fd, &st) < 0 || !S_ISBLK(st.st_mode))
			return fy_err_set(-ENOTBLK, "%s is not a block device",
					  path);
	} else {
		r->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	}
	if (r->fd < 0)
		return fy_err_set(-errno, "cannot open %s: %s", path,
				  strerror(errno));
	if (fstat(r->fd, &st) < 0)
		return fy_err_set(-errno, "cannot stat %s: %s", path,
				  strerror(errno));
	if (S_ISBLK(st.st_mode)) {
		uint64_t devsize = 0;

		if (ioctl(r->fd, BLKGETSIZE64, &devsize) < 0)
			return fy_err_set(-errno, "cannot size %s: %s", path,
					  strerror(errno));
		if (devsize < r->size)
			return fy_err_set(-ENOSPC, "%s holds %" PRIu64 " bytes, "
					  "the disk needs %" PRIu64, path,
					  devsize, r->size);
		if (r->want_size && devsize != r->want_size)
			return fy_err_set(-EINVAL, "%s holds %" PRIu64 " bytes, "
					  "not the %" PRIu64 " expected", path,
					  devsize, r->want_size);
		/* A new disk reads as zeros: its holes need no write. */
		r->zero_holes = !r->new_device;
		r->seekable = r->new_device;
	} else if (S_ISREG(st.st_mode)) {
		if (st.st_size && !r->overwrite)
			return fy_err_set(-EEXIST, "%s exists; --force replaces "
					  "it", path);
		/* Start empty so holes read as zeros, then size it. */
		if (ftruncate(r->fd, 0) < 0 || ftruncate(r->fd, r->size) < 0)
			return fy_err_set(-errno, "cannot size %s: %s", path,
					  strerror(errno));
		r->seekable = true;
	}
	return 0;
}

/* Checks what MapEnd says of the disk and prepares the output. */
static int restore_start(struct restore *r, const Ferry__MapEnd *me,
			 const char *path)
{
	int rc;

	if (r->want_size && me->size != r->want_size)
		return fy_err_set(-EINVAL, "the backup's disk %u is %" PRIu64
				  " bytes, its destination %" PRIu64, me->disk,
				  me->size, r->want_size);
	r->size = me->size;
	r->block_size = me->block_size;
	/* Aligned for O_DIRECT outputs (a hot-added disk). */
	if (posix_memalign((void **)&r->plain, 4096, r->block_size))
		r->plain = NULL;
	if (posix_memalign((void **)&r->zeros, 4096, r->block_size))
		r->zeros = NULL;
	else
		memset(r->zeros, 0, r->block_size);
	if (!r->plain || !r->zeros)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = open_output(r, path);
	return rc;
}

/* Walks a disk's block map chunk by chunk (memory stays bounded whatever
 * the disk): start gets the first MapEnd (the disk's size and block count,
 * checked here), then chunk gets every MapChunk in order. */
struct map_walk {
	int (*start)(void *opaque, const Ferry__MapEnd *me);
	int (*chunk)(void *opaque, const Ferry__MapChunk *mc);
	void *opaque;
};

static int map_walk(struct fy_conn *conn, const char *backup_id,
		    uint32_t disk, const struct map_walk *w)
{
	uint64_t next = 0, count = 0;
	bool started = false;
	int rc = 0;

	do {
		Ferry__Frame f = FERRY__FRAME__INIT;
		Ferry__GetMap gm = FERRY__GET_MAP__INIT;
		fy_frame *mc = NULL, *end = NULL;

		gm.backup_id = (char *)backup_id;
		gm.disk = disk;
		gm.first_block = next;
		gm.count = FY_MAP_CHUNK_MAX;
		f.body_case = FERRY__FRAME__BODY_GET_MAP;
		f.get_map = &gm;
		rc = fy_conn_send(conn, &f);
		if (rc == 0)
			rc = fy_conn_recv(conn, &mc);
		if (rc < 0)
			break;
		if (mc->body_case == FERRY__FRAME__BODY_MAP_END) {
			end = mc;
			mc = NULL;
		} else if (mc->body_case == FERRY__FRAME__BODY_ERROR) {
			rc = fy_err_set(mc->error->code < 0 ? mc->error->code
							    : -EPROTO,
					"repository: %s", mc->error->message);
		} else if (mc->body_case != FERRY__FRAME__BODY_MAP_CHUNK ||
			   mc->map_chunk->first_block != next ||
			   mc->map_chunk->disk != disk) {
			rc = fy_err_set(-EPROTO, "repository answered GetMap "
					"with %s", fy_frame_name(mc));
		} else {
			rc = recv_expect(conn, FERRY__FRAME__BODY_MAP_END,
					 "MapEnd", &end);
		}
		if (rc == 0 && !started) {
			const Ferry__MapEnd *me = end->map_end;

			if (me->block_size < FY_BLOCK_MIN ||
			    me->block_size > FY_BLOCK_MAX ||
			    (me->block_size & (me->block_size - 1)) ||
			    me->size > FY_DISK_SIZE_MAX ||
			    me->block_count != (me->size + me->block_size - 1) /
						       me->block_size)
				rc = fy_err_set(-EPROTO, "repository describes "
						"disk %u as %" PRIu64 " bytes "
						"in %" PRIu64 " blocks of %u",
						me->disk, me->size,
						me->block_count, me->block_size);
			else
				rc = w->start(w->opaque, me);
			count = me->block_count;
			started = true;
		}
		if (rc == 0 && mc) {
			if (next + mc->map_chunk->n_digests > count)
				rc = fy_err_set(-EPROTO, "repository sent map "
						"entries past block %" PRIu64,
						count);
			else if (!mc->map_chunk->n_digests)
				rc = fy_err_set(-EPROTO, "repository sent an "
						"empty map chunk at block %"
						PRIu64, next);
			else
				rc = w->chunk(w->opaque, mc->map_chunk);
			next += mc->map_chunk->n_digests;
		} else if (rc == 0 && next < count) {
			rc = fy_err_set(-EPROTO, "repository ended the map at "
					"block %" PRIu64 " of %" PRIu64, next,
					count);
		}
		fy_frame_free(mc);
		fy_frame_free(end);
	} while (rc == 0 && next < count);
	return rc;
}

struct restore_walk {
	struct restore *r;
	const char *path;
	bool started;
};

static int restore_walk_start(void *opaque, const Ferry__MapEnd *me)
{
	struct restore_walk *rw = opaque;

	rw->started = true;
	return restore_start(rw->r, me, rw->path);
}

static int restore_walk_chunk(void *opaque, const Ferry__MapChunk *mc)
{
	struct restore_walk *rw = opaque;

	return restore_chunk(rw->r, mc);
}

static int restore_run(struct restore *r, const char *backup_id,
		       uint32_t disk, const char *path,
		       uint64_t *bytes_written)
{
	struct restore_walk rw = { .r = r, .path = path };
	const struct map_walk w = {
		.start = restore_walk_start, .chunk = restore_walk_chunk,
		.opaque = &rw,
	};
	bool started, own_fd = r->given_fd < 0;
	int rc;

	r->fd = -1;
	r->start = r->last = fy_now();
	rc = map_walk(r->conn, backup_id, disk, &w);
	started = rw.started;

	/* A sequential output gets the zeros of trailing holes too. */
	if (rc == 0 && started && !r->seekable && !r->zero_holes &&
	    r->pos < r->size)
		rc = out_write(r, r->zeros, 0, r->size);
	if (own_fd && rc == 0 && r->fd >= 0 && r->fd != STDOUT_FILENO &&
	    fsync(r->fd) < 0 && errno != EINVAL)
		rc = fy_err_set(-errno, "cannot sync %s: %s", path,
				strerror(errno));
	if (own_fd && r->fd >= 0 && r->fd != STDOUT_FILENO)
		close(r->fd);
	if (r->progress && started)
		fprintf(stderr, "\r\033[K");
	free(r->plain);
	free(r->zeros);
	*bytes_written = r->written;
	if (rc < 0)
		fy_err_wrap(rc, "restore of backup %s disk %u", backup_id, disk);
	return rc;
}

int fy_client_restore(struct fy_conn *conn, const char *backup_id,
		      uint32_t disk, const char *path, bool progress,
		      bool overwrite, uint64_t *bytes_written)
{
	struct restore r = { .conn = conn, .progress = progress,
			     .overwrite = overwrite, .given_fd = -1 };

	return restore_run(&r, backup_id, disk, path, bytes_written);
}

int fy_client_restore_fd(struct fy_conn *conn, const char *backup_id,
			 uint32_t disk, int fd, uint64_t size,
			 const struct fy_restore_hooks *hooks,
			 uint64_t *bytes_written, uint64_t *zeros_written)
{
	struct restore r = { .conn = conn, .given_fd = fd, .want_size = size,
			     .hooks = hooks };
	int rc = restore_run(&r, backup_id, disk, "the upload", bytes_written);

	*zeros_written = r.zeros_written;
	if (rc == 0 && hooks && hooks->progress)
		hooks->progress(hooks->opaque, r.written, r.zeros_written,
				r.size, true);
	return rc;
}

int fy_client_restore_device(struct fy_conn *conn, const char *backup_id,
			     uint32_t disk, const char *path, uint64_t size,
			     bool new_disk, const struct fy_restore_hooks *hooks,
			     uint64_t *bytes_written, uint64_t *zeros_written)
{
	struct restore r = { .conn = conn, .given_fd = -1, .want_size = size,
			     .hooks = hooks, .device = true,
			     .new_device = new_disk };
	int rc = restore_run(&r, backup_id, disk, path, bytes_written);

	*zeros_written = r.zeros_written;
	if (rc == 0 && hooks && hooks->progress)
		hooks->progress(hooks->opaque, r.written, r.zeros_written,
				r.size, true);
	return rc;
}

int fy_client_open_disk(struct fy_conn *conn, const char *backup_id,
			uint32_t disk)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__GetMap gm = FERRY__GET_MAP__INIT;
	fy_frame *r = NULL;
	int rc;

	gm.backup_id = (char *)backup_id;
	gm.disk = disk;
	gm.first_block = 0;
	gm.count = 1;
	f.body_case = FERRY__FRAME__BODY_GET_MAP;
	f.get_map = &gm;
	rc = fy_conn_send(conn, &f);
	/* MapChunks, then MapEnd (or an Error). */
	while (rc == 0) {
		rc = fy_conn_recv(conn, &r);
		if (rc < 0)
			break;
		if (r->body_case == FERRY__FRAME__BODY_MAP_END) {
			fy_frame_free(r);
			return 0;
		}
		if (r->body_case == FERRY__FRAME__BODY_ERROR)
			rc = fy_err_set(r->error->code < 0 ? r->error->code
							   : -EPROTO,
					"repository: %s", r->error->message);
		else if (r->body_case != FERRY__FRAME__BODY_MAP_CHUNK)
			rc = fy_err_set(-EPROTO, "repository answered GetMap "
					"with %s", fy_frame_name(r));
		fy_frame_free(r);
	}
	return rc;
}

/* ---- what an incremental needs: the parent and its maps ----------------- */

struct latest {
	const char *source, *kind;
	struct fy_backup_info *best;
	int rc;
};

static int latest_cb(void *opaque, const Ferry__BackupSummary *b)
{
	struct latest *l = opaque;
	struct fy_backup_info *info;
	size_t i;

	if (strcmp(b->source, l->source) || strcmp(b->source_kind, l->kind))
		return 0;
	if (l->best && (b->created_unix < l->best->created_unix ||
			(b->created_unix == l->best->created_unix &&
			 strcmp(b->id, l->best->id) <= 0)))
		return 0;
	info = calloc(1, sizeof(*info));
	if (!info || !(info->disks = calloc(b->n_disks ? b->n_disks : 1,
					    sizeof(*info->disks)))) {
		free(info);
		return l->rc = fy_err_set(-ENOMEM, "out of memory");
	}
	snprintf(info->id, sizeof(info->id), "%s", b->id);
	info->created_unix = b->created_unix;
	info->block_size = b->block_size;
	info->n_disks = (uint32_t)b->n_disks;
	for (i = 0; i < b->n_disks; i++) {
		const Ferry__DiskSummary *s = b->disks[i];
		struct fy_manifest_disk *d = &info->disks[i];

		d->index = s->index;
		snprintf(d->label, sizeof(d->label), "%s", s->label);
		d->size = s->size;
		snprintf(d->change_id, sizeof(d->change_id), "%s",
			 s->change_id);
		snprintf(d->transport, sizeof(d->transport), "%s",
			 s->transport);
		snprintf(d->disk_id, sizeof(d->disk_id), "%s", s->disk_id);
		d->data_blocks = s->data_blocks;
		d->hole_blocks = s->hole_blocks;
	}
	fy_backup_info_free(l->best);
	l->best = info;
	return 0;
}

int fy_client_latest(struct fy_conn *conn, const char *source,
		     const char *kind, struct fy_backup_info **out)
{
	struct latest l = { .source = source, .kind = kind };
	int rc = fy_client_list(conn, latest_cb, &l);

	if (rc == 0 && l.rc)
		rc = l.rc;
	if (rc < 0) {
		fy_backup_info_free(l.best);
		return rc;
	}
	if (!l.best)
		return fy_err_set(-ENOENT, "no earlier backup of %s", source);
	*out = l.best;
	return 0;
}

void fy_backup_info_free(struct fy_backup_info *b)
{
	if (!b)
		return;
	free(b->disks);
	free(b);
}

void fy_parent_map_free(struct fy_parent_map *m)
{
	free(m->digest);
	free(m->hole);
	memset(m, 0, sizeof(*m));
}

struct map_fetch {
	struct fy_parent_map *m;
	uint64_t next, size;
	uint32_t block_size;
};

static int fetch_start(void *opaque, const Ferry__MapEnd *me)
{
	struct map_fetch *mf = opaque;
	uint64_t count = me->block_count;

	/* Checked before allocating: the disk's own size bounds the map
	 * (map_walk checked the backup's size and count are a disk's). */
	if ((mf->size || mf->block_size) &&
	    (me->size != mf->size || me->block_size != mf->block_size))
		return fy_err_set(-EPROTO, "the disk is %" PRIu64 " bytes in "
				  "blocks of %u, the backup's %" PRIu64
				  " bytes in blocks of %u", mf->size,
				  mf->block_size, me->size, me->block_size);
	mf->m->size = me->size;
	mf->m->block_size = me->block_size;
	mf->m->n = count;
	mf->m->digest = calloc(count ? count : 1, FY_DIGEST_LEN);
	mf->m->hole = calloc(count ? count : 1, 1);
	if (!mf->m->digest || !mf->m->hole)
		return fy_err_set(-ENOMEM, "out of memory for a map of %" PRIu64
				  " blocks", count);
	return 0;
}

static int fetch_chunk(void *opaque, const Ferry__MapChunk *c)
{
	struct map_fetch *mf = opaque;
	size_t i;

	for (i = 0; i < c->n_digests; i++, mf->next++) {
		if (c->digests[i].len == 0)
			mf->m->hole[mf->next] = 1;
		else
			memcpy(mf->m->digest[mf->next], c->digests[i].data,
			       FY_DIGEST_LEN);
	}
	return 0;
}

int fy_client_get_map(struct fy_conn *conn, const char *backup_id,
		      uint32_t disk, uint64_t size, uint32_t block_size,
		      struct fy_parent_map *m)
{
	struct map_fetch mf = { .m = m, .size = size,
				.block_size = block_size };
	const struct map_walk w = {
		.start = fetch_start, .chunk = fetch_chunk, .opaque = &mf,
	};
	int rc;

	memset(m, 0, sizeof(*m));
	rc = map_walk(conn, backup_id, disk, &w);
	if (rc < 0) {
		fy_parent_map_free(m);
		return fy_err_wrap(rc, "map of backup %s disk %u", backup_id,
				   disk);
	}
	return 0;
}

int fy_client_keepalive(struct fy_conn *conn)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__QueryBlocks q = FERRY__QUERY_BLOCKS__INIT;
	fy_frame *r = NULL;
	int rc;

	/* An empty query: the repository answers it in any state. */
	q.seq = UINT64_MAX;
	f.body_case = FERRY__FRAME__BODY_QUERY_BLOCKS;
	f.query_blocks = &q;
	rc = fy_conn_send(conn, &f);
	if (rc == 0)
		rc = recv_expect(conn, FERRY__FRAME__BODY_QUERY_REPLY,
				 "QueryReply", &r);
	fy_frame_free(r);
	return rc < 0 ? fy_err_wrap(rc, "keeping the repository session") : 0;
}
