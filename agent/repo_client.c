/*
 * The client side of the repository protocol, shared by ferry-agent
 * (backups) and ferry (list, restore): settings from the configuration
 * file, connecting, and the list and restore conversations.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libaio.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
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
	"ferry.compressionProbe",
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
/* ferry.workers as the last fy_settings_load read it (0: not set). */
static atomic_uint restore_workers;

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
	rc = fy_config_get_bool(cfg, "ferry.compressionProbe", false,
				&s->compression_probe);
	if (rc < 0)
		return rc;
	rc = fy_config_get_int(cfg, "ferry.workers", 0, 0, 64, &v);
	if (rc < 0)
		return rc;
	s->workers = (unsigned)v;
	/* Also the restore's decode workers; 0 (a reload that dropped the
	 * key) goes back to the CPU count. */
	atomic_store(&restore_workers, s->workers);
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

int fy_client_recv_expect(struct fy_conn *conn, Ferry__Frame__BodyCase want,
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
	return fy_client_list_one(conn, all_namespaces, NULL, cb, opaque);
}

int fy_client_list_one(struct fy_conn *conn, bool all_namespaces,
		       const char *id,
		       int (*cb)(void *opaque, const Ferry__BackupSummary *b),
		       void *opaque)
{
	char after[FY_ID_MAX] = "";
	bool more = true, found = false;
	int rc = 0;

	while (more && rc == 0 && !found) {
		Ferry__Frame f = FERRY__FRAME__INIT;
		Ferry__ListBackups lb = FERRY__LIST_BACKUPS__INIT;
		fy_frame *r = NULL;
		size_t i;

		lb.after_id = after;
		lb.all_namespaces = all_namespaces;
		lb.id = (char *)(id ? id : "");
		f.body_case = FERRY__FRAME__BODY_LIST_BACKUPS;
		f.list_backups = &lb;
		rc = fy_conn_send(conn, &f);
		if (rc == 0)
			rc = fy_client_recv_expect(
				conn, FERRY__FRAME__BODY_BACKUP_LIST,
				"BackupList", &r);
		if (rc < 0)
			return rc;
		for (i = 0; i < r->backup_list->n_backups && rc == 0; i++) {
			const Ferry__BackupSummary *bs = r->backup_list->backups[i];

			/* A repository older than ListBackups.id pages
			 * through them all: only the one asked for counts. */
			if (!id || !strcmp(bs->id, id)) {
				rc = cb(opaque, bs);
				found = id != NULL;
			}
			snprintf(after, sizeof(after), "%s", bs->id);
		}
		/* A page with nothing new cannot make progress. */
		more = r->backup_list->more && r->backup_list->n_backups;
		fy_frame_free(r);
	}
	return rc;
}

/* ---- restore ----------------------------------------------------------- */

/*
 * A restore runs on three kinds of threads around one ring of slots:
 *
 *   receiver (caller)  walks the block map, asks for the data blocks with a
 *                      few GetBlocks frames in flight, and fills the ring in
 *                      disk order: each received Block, and each run of
 *                      blocks the output gets as zeros, takes the next slot;
 *   decode workers     decompress and re-hash the received blocks (the
 *                      end-to-end check), in whatever order they finish;
 *   writer             empties the ring strictly in order: the ready slots
 *                      at its head that follow each other on the disk go
 *                      out in one write, then their slots are free again.
 *
 * Memory is the ring, whatever the disk size: a slot holds one frame as
 * received until it is decoded, and one decoded block until it is written
 * (docs/ARCHITECTURE.md, "Memory bounds"). A block that fails to decode
 * fails the restore when the writer reaches it: everything before it is
 * written, and the error names the first bad block in disk order.
 */

/* O_DIRECT writes to a regular file are aligned to this (4 KiB sectors
 * and pages; the slots' buffers are aligned to it). */
#define FILE_DIRECT_ALIGN 4096u
/* GetBlocks frames in flight, of up to FY_GET_MAX digests each. */
#define RESTORE_INFLIGHT 4
/* Decode workers: ferry.workers when set, else the online CPUs; at most
 * this many. */
#define RESTORE_WORKERS_MAX 8
/* One write carries at most this much: adjacent decoded blocks, or a run
 * of zeros. */
#define RESTORE_WRITE_MAX (8u << 20)
_Static_assert(RESTORE_WRITE_MAX >= FY_BLOCK_MAX, "a block fits a write");
/* A write's pieces are whole blocks (the disk's last may be shorter). */
#define RESTORE_IOV_MAX (RESTORE_WRITE_MAX / FY_BLOCK_MIN + 1)
/* Writes in flight on an O_DIRECT output (a hot-added disk, a regular
 * file), through libaio: the device keeps working while the next write
 * is gathered, as a SAN LUN or a virtual disk needs to reach its speed. */
#define RESTORE_WRITE_DEPTH 4
/* Decoded blocks in the ring at most, unless the workers need more. */
#define RESTORE_RING_BYTES (64u << 20)
/* How often the receiver, waiting for the writer, checks for
 * cancellation and reports progress. */
#define RESTORE_TICK_NS (100 * 1000 * 1000)

enum slot_state {
	SLOT_FREE,
	SLOT_RECEIVED,  /* a Block frame, waiting for a worker */
	SLOT_DECODING,
	SLOT_READY,     /* decoded and verified, or zeros: to be written */
	SLOT_FAILED,    /* did not decode: rc and msg say why */
};

struct restore_slot {
	enum slot_state state;
	uint64_t index;  /* the first block it covers */
	uint64_t count;  /* blocks: 1, or a run of zeros */
	bool zeros;      /* written from the zero buffer, not decoded */
	fy_frame *frame; /* the Block as received, until decoded */
	uint8_t *plain;  /* block_size bytes, aligned for O_DIRECT outputs */
	int rc;
	char msg[FY_ERR_MAX];
};

/* A write of adjacent ring slots: the next n slots from the ring position
 * first. With libaio it stays in flight until reaped. */
struct restore_write {
	struct iocb cb;
	struct iovec iov[RESTORE_IOV_MAX];
	int iovcnt;
	uint64_t first;  /* ring position of its first slot */
	unsigned n;      /* slots */
	uint64_t index;  /* its first block, for messages */
	uint64_t off, len, data, zeros;
	bool done;
	long res;        /* bytes written, or -errno */
};

struct restore {
	struct fy_conn *conn;
	int fd;
	bool seekable;     /* a regular file: holes stay holes */
	bool zero_holes;   /* a block device: holes are written as zeros */
	uint64_t size;
	uint32_t block_size;
	uint8_t *zeros;    /* block_size bytes */
	bool progress;
	bool overwrite;    /* an existing regular file may be replaced */
	int given_fd;      /* the caller's output (not opened, not closed) */
	uint64_t want_size; /* the output's size, or 0 for any */
	const struct fy_restore_hooks *hooks; /* or NULL */
	/* A VM disk's block device (restore-vm over hotadd): O_DIRECT;
	 * new_device: a new disk, which reads as zeros already, so its holes
	 * are skipped. */
	bool device, new_device;
	/* A regular file written with O_DIRECT (set_file_direct): the data
	 * goes to the disk without a copy into the page cache, which took a
	 * third of a restoring client's CPU (the fsync at the end writes it
	 * all out anyway). Off again for an unaligned write (the disk's short
	 * last block) and wherever the file system refuses it. */
	bool file_direct;
	/* Writes in flight through libaio on O_DIRECT outputs (aio: set up
	 * once io_setup worked; aio_on: new writes go through it); the
	 * writer's own, in order of submission. An unaligned write waits for
	 * them and goes the synchronous way. */
	bool aio_ready, aio_on;
	io_context_t aio;
	struct restore_write *w;   /* RESTORE_WRITE_DEPTH, a ring */
	unsigned w_head, w_count;
	/* Or a writer of the caller's (restore-vm over NBD): no fd. */
	const struct fy_restore_sink *sink;
	double start, last;

	/* The receiver's: blocks to write as zeros, not in the ring yet (a
	 * run of up to zeros_max takes one slot). */
	uint64_t zeros_first, zeros_count, zeros_max;

	/* The ring. lock guards the slots' states and the fields below; a
	 * slot's contents belong to whoever its state says: the receiver
	 * (FREE), a worker (DECODING), the writer (READY, FAILED). */
	pthread_mutex_t lock;
	pthread_cond_t cond_work;  /* a slot received; stop */
	pthread_cond_t cond_write; /* a slot decoded or failed; stop */
	pthread_cond_t cond_free;  /* slots written; a thread failed */
	struct restore_slot *slots;
	unsigned nslots;
	pthread_t *threads;        /* the writer, then the workers */
	unsigned nthreads;         /* started */
	/* Ring positions counted from the start of the restore:
	 * flushed <= claimed <= filled <= flushed + nslots, and
	 * flushed <= submitted <= filled. */
	uint64_t filled;           /* filled by the receiver */
	uint64_t claimed;          /* taken by a worker, or zeros passed */
	uint64_t submitted;        /* handed to a write (flushed..) */
	uint64_t flushed;          /* written and free again */
	bool stop;                 /* every thread: leave */
	int error;                 /* a worker's or the writer's, the first */
	char error_msg[FY_ERR_MAX];
	uint64_t written, zeros_written;
	/* Bytes of blocks left as the output has them (a new disk's holes,
	 * a rollback's unchanged areas), counted as the stream passes them:
	 * the receiver's alone. */
	uint64_t skipped;
};

static size_t block_len(const struct restore *r, uint64_t index)
{
	uint64_t off = index * r->block_size;

	return r->size - off < r->block_size ? r->size - off : r->block_size;
}

/* Records the first failure of a thread and stops them all. The lock is
 * held. */
static void ring_fail(struct restore *r, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void ring_fail(struct restore *r, int rc, const char *fmt, ...)
{
	va_list ap;

	if (!r->error) {
		r->error = rc;
		va_start(ap, fmt);
		vsnprintf(r->error_msg, sizeof(r->error_msg), fmt, ap);
		va_end(ap);
	}
	r->stop = true;
	pthread_cond_broadcast(&r->cond_work);
	pthread_cond_broadcast(&r->cond_write);
	pthread_cond_broadcast(&r->cond_free);
}

static void *restore_worker(void *opaque)
{
	struct restore *r = opaque;

	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		struct restore_slot *s;
		const Ferry__Block *b;
		int rc;

		while (r->claimed < r->filled &&
		       r->slots[r->claimed % r->nslots].zeros)
			r->claimed++;
		if (r->claimed == r->filled) {
			pthread_cond_wait(&r->cond_work, &r->lock);
			continue;
		}
		s = &r->slots[r->claimed++ % r->nslots];
		s->state = SLOT_DECODING;
		pthread_mutex_unlock(&r->lock);

		b = s->frame->block;
		/* Decoding re-hashes: end-to-end check. */
		rc = fy_block_decode((enum fy_codec)b->codec, b->data.data,
				     b->data.len, b->plain_size, b->digest.data,
				     s->plain, r->block_size);
		if (rc < 0)
			snprintf(s->msg, sizeof(s->msg), "%s", fy_err_msg());
		fy_frame_free(s->frame);
		s->frame = NULL;

		pthread_mutex_lock(&r->lock);
		s->rc = rc;
		s->state = rc < 0 ? SLOT_FAILED : SLOT_READY;
		pthread_cond_signal(&r->cond_write);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* Adds a slot's bytes to a write; returns how many. */
static uint64_t slot_iov(const struct restore *r, const struct restore_slot *s,
			 struct iovec *iov, int *iovcnt)
{
	uint64_t i, total = 0;

	for (i = 0; i < s->count; i++) {
		size_t len = block_len(r, s->index + i);

		iov[*iovcnt].iov_base = s->zeros ? r->zeros : s->plain;
		iov[*iovcnt].iov_len = len;
		(*iovcnt)++;
		total += len;
	}
	return total;
}

/* O_DIRECT on or off for a regular file or block device output; false
 * when the file system does not take it. */
static bool set_file_direct(struct restore *r, bool on)
{
	int fl = fcntl(r->fd, F_GETFL);

	if (fl < 0 || fcntl(r->fd, F_SETFL,
			    on ? fl | O_DIRECT : fl & ~O_DIRECT) < 0)
		return false;
	r->file_direct = on;
	return true;
}

/* Writes one run of adjacent blocks at off: in place for files and block
 * devices; in order for a stream, which is given every block. */
static int out_write(struct restore *r, struct iovec *iov, int iovcnt,
		     uint64_t off)
{
	if (r->file_direct) {
		uint64_t len = 0;
		int k, rc;

		for (k = 0; k < iovcnt; k++)
			len += iov[k].iov_len;
		if (((off | len) & (FILE_DIRECT_ALIGN - 1)) == 0) {
			/* On a copy: a partial write advances the iovs, and
			 * the retry below starts from the first byte. */
			struct iovec copy[RESTORE_IOV_MAX];

			memcpy(copy, iov, (size_t)iovcnt * sizeof(*iov));
			rc = fy_pwritev_all(r->fd, copy, iovcnt, off);
			if (rc != -EINVAL)
				return rc;
		}
		/* Unaligned, or refused: buffered from here on (the same
		 * bytes at the same place, so a retry is harmless). */
		if (!set_file_direct(r, false))
			return fy_err_set(-errno, "cannot turn O_DIRECT off: "
					  "%s", strerror(errno));
	}
	if (r->sink)
		return r->sink->pwritev(r->sink->opaque, iov, iovcnt, off);
	if (r->seekable || r->zero_holes)
		return fy_pwritev_all(r->fd, iov, iovcnt, off);
	return fy_writev_all(r->fd, iov, iovcnt);
}

/* Gathers the ready slots from ring position submitted on that follow
 * each other on the disk, up to one write, into w; 0 slots when the next
 * is not decoded yet. The lock is held. */
static void gather(struct restore *r, struct restore_write *w)
{
	const struct restore_slot *s = &r->slots[r->submitted % r->nslots];
	uint64_t end;

	w->first = r->submitted;
	w->index = s->index;
	w->off = s->index * r->block_size;
	w->iovcnt = 0;
	w->n = 0;
	w->data = w->zeros = 0;
	w->done = false;
	end = w->off;
	for (; r->submitted + w->n < r->filled; w->n++) {
		const struct restore_slot *t =
			&r->slots[(r->submitted + w->n) % r->nslots];
		uint64_t t_off = t->index * r->block_size;

		if (t->state != SLOT_READY || t_off != end ||
		    (w->n && end - w->off + (t->count * r->block_size) >
				     RESTORE_WRITE_MAX))
			break;
		end += slot_iov(r, t, w->iov, &w->iovcnt);
		if (t->zeros)
			w->zeros += end - t_off;
		else
			w->data += end - t_off;
	}
	w->len = end - w->off;
}

/* A write is done: its slots are free again, in ring order. The lock is
 * held. */
static void write_done(struct restore *r, const struct restore_write *w)
{
	unsigned i;

	for (i = 0; i < w->n; i++)
		r->slots[(w->first + i) % r->nslots].state = SLOT_FREE;
	r->flushed += w->n;
	/* Zeros the workers have not passed yet need no worker. */
	if (r->claimed < r->flushed)
		r->claimed = r->flushed;
	r->written += w->data;
	r->zeros_written += w->zeros;
	pthread_cond_signal(&r->cond_free);
}

/* Waits for at least one write in flight (at most wait_ms, -1: until
 * one ends), then frees the slots of those done at the head, in order.
 * The lock is held, and dropped while waiting. */
static void reap(struct restore *r, int wait_ms)
{
	struct io_event ev[RESTORE_WRITE_DEPTH];
	struct timespec ts = { 0, (long)wait_ms * 1000000 };
	int got, i;

	pthread_mutex_unlock(&r->lock);
	do {
		got = io_getevents(r->aio, 1, RESTORE_WRITE_DEPTH, ev,
				   wait_ms < 0 ? NULL : &ts);
	} while (got == -EINTR && wait_ms < 0);
	pthread_mutex_lock(&r->lock);
	if (got < 0 && got != -EINTR) {
		/* A valid context cannot fail. If it does: stop, and let
		 * io_destroy wait for what is in flight (the ring's buffers)
		 * before the writer leaves. */
		ring_fail(r, got, "waiting for writes: %s", strerror(-got));
		pthread_mutex_unlock(&r->lock);
		io_destroy(r->aio);
		pthread_mutex_lock(&r->lock);
		r->aio_ready = r->aio_on = false;
		r->w_count = 0;
		return;
	}
	for (i = 0; i < got; i++) {
		struct restore_write *w = ev[i].data;

		w->done = true;
		w->res = (long)ev[i].res;
	}
	while (r->w_count && r->w[r->w_head].done) {
		struct restore_write *w = &r->w[r->w_head];

		if (!r->error &&
		    ((w->res == -EINVAL && !r->device) ||
		     (w->res >= 0 && (uint64_t)w->res < w->len))) {
			/* A file or block device that took O_DIRECT but not
			 * this write: the same bytes again, buffered from here
			 * on (out_write turns O_DIRECT off). A short write:
			 * the rest, which either completes or says why not.
			 * The slots are the writer's until write_done. */
			uint64_t skip = w->res > 0 ? (uint64_t)w->res : 0;
			struct iovec iov[RESTORE_IOV_MAX];
			int k = 0, n = 0, rc;

			for (; k < w->iovcnt; k++) {
				size_t l = w->iov[k].iov_len;

				if (skip >= l) {
					skip -= l;
					continue;
				}
				iov[n].iov_base = (uint8_t *)w->iov[k].iov_base +
						  skip;
				iov[n++].iov_len = l - skip;
				skip = 0;
			}
			if (w->res == -EINVAL)
				r->aio_on = false;
			pthread_mutex_unlock(&r->lock);
			if (w->res == -EINVAL)
				rc = out_write(r, iov, n, w->off);
			else
				rc = fy_pwritev_all(r->fd, iov, n,
						    w->off + (uint64_t)w->res);
			pthread_mutex_lock(&r->lock);
			if (rc < 0)
				ring_fail(r, rc, "block %" PRIu64 ": %s",
					  w->index, fy_err_msg());
			w->res = (long)w->len;
		}
		if (!r->error && w->res < 0)
			ring_fail(r, (int)w->res, "block %" PRIu64 ": cannot "
				  "write %" PRIu64 " bytes at %" PRIu64 ": %s",
				  w->index, w->len, w->off,
				  strerror((int)-w->res));
		else if (!r->error && (uint64_t)w->res != w->len)
			ring_fail(r, -EIO, "block %" PRIu64 ": %ld of %" PRIu64
				  " bytes written at %" PRIu64, w->index,
				  w->res, w->len, w->off);
		else if (!r->error)
			write_done(r, w);
		r->w_head = (r->w_head + 1) % RESTORE_WRITE_DEPTH;
		r->w_count--;
	}
}

/* Starts w through libaio. The lock is held. */
static int submit(struct restore *r, struct restore_write *w)
{
	struct iocb *cbs[1] = { &w->cb };
	int rc;

	io_prep_pwritev(&w->cb, r->fd, w->iov, w->iovcnt, (long long)w->off);
	w->cb.data = w;
	rc = io_submit(r->aio, 1, cbs);
	if (rc == 1)
		return 0;
	return fy_err_set(rc < 0 ? rc : -EAGAIN, "cannot start a write of "
			  "%" PRIu64 " bytes at %" PRIu64 ": %s", w->len,
			  w->off, strerror(rc < 0 ? -rc : EAGAIN));
}

/* The writer: the ring's ready slots in order, adjacent ones in one
 * write. With libaio, up to RESTORE_WRITE_DEPTH writes are in flight and
 * the writer leaves only once none is (their buffers are the ring's). */
static void *restore_writer(void *opaque)
{
	struct restore *r = opaque;
	struct restore_write sync_w;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		struct restore_slot *s = &r->slots[r->submitted % r->nslots];
		struct restore_write *w;
		bool ready = r->submitted < r->filled &&
			     (s->state == SLOT_READY ||
			      s->state == SLOT_FAILED);
		int rc;

		if (r->stop && !r->w_count)
			break;
		if (r->stop || !ready ||
		    (r->aio_on && r->w_count == RESTORE_WRITE_DEPTH)) {
			if (r->w_count)
				/* Room for another write: look again soon. */
				reap(r, !r->stop && r->w_count <
						     RESTORE_WRITE_DEPTH
						? 1 : -1);
			else
				pthread_cond_wait(&r->cond_write, &r->lock);
			continue;
		}
		if (s->state == SLOT_FAILED) {
			ring_fail(r, s->rc, "block %" PRIu64 ": %s", s->index,
				  s->msg);
			continue;
		}
		w = r->aio_on ? &r->w[(r->w_head + r->w_count) %
				      RESTORE_WRITE_DEPTH]
			      : &sync_w;
		gather(r, w);
		if (r->aio_on &&
		    ((w->off | w->len) & (FILE_DIRECT_ALIGN - 1)) == 0) {
			rc = submit(r, w);
			if (rc < 0) {
				ring_fail(r, rc, "block %" PRIu64 ": %s",
					  w->index, fy_err_msg());
				continue;
			}
			r->submitted += w->n;
			r->w_count++;
			continue;
		}
		/* Synchronous: after every write in flight (an unaligned
		 * one may turn O_DIRECT off). */
		while (r->w_count && !r->error)
			reap(r, -1);
		if (r->error)
			continue;
		if (w != &sync_w) {
			sync_w = *w;
			w = &sync_w;
		}
		r->submitted += w->n;
		pthread_mutex_unlock(&r->lock);
		rc = out_write(r, w->iov, w->iovcnt, w->off);
		pthread_mutex_lock(&r->lock);
		if (rc < 0) {
			ring_fail(r, rc, "block %" PRIu64 ": %s", w->index,
				  fy_err_msg());
			continue;
		}
		write_done(r, w);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* Cancellation, and progress a few times a second; the receiver's, without
 * the lock. */
static int restore_tick(struct restore *r)
{
	uint64_t written, zeros;
	double now;

	if (r->hooks && r->hooks->cancel && atomic_load(r->hooks->cancel))
		return fy_err_set(-ECANCELED, "cancelled");
	now = fy_now();
	if (!(r->hooks && r->hooks->progress && now - r->last > 0.25) &&
	    !(r->progress && now - r->last > 0.5))
		return 0;
	r->last = now;
	pthread_mutex_lock(&r->lock);
	written = r->written;
	zeros = r->zeros_written;
	pthread_mutex_unlock(&r->lock);
	if (r->hooks && r->hooks->progress)
		r->hooks->progress(r->hooks->opaque, written, zeros, r->skipped,
				   r->size, false);
	if (r->progress) {
		char w[32];

		fy_format_bytes(written, w, sizeof(w));
		fprintf(stderr, "\rrestored %s ", w);
	}
	return 0;
}

/* Waits, the lock held, until the ring has a free slot (all: until every
 * slot is written), a thread failed (its error becomes the caller's) or
 * the restore is cancelled. */
static int ring_wait(struct restore *r, bool all)
{
	int rc = 0;

	for (;;) {
		struct timespec ts;

		if (r->error)
			return fy_err_set(r->error, "%s", r->error_msg);
		if (all ? r->flushed == r->filled
			: r->filled - r->flushed < r->nslots)
			return 0;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += RESTORE_TICK_NS;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&r->cond_free, &r->lock, &ts);
		pthread_mutex_unlock(&r->lock);
		rc = restore_tick(r);
		pthread_mutex_lock(&r->lock);
		if (rc < 0)
			return rc;
	}
}

/* Puts a received Block (its frame now the ring's, whatever happens) or,
 * frame NULL, count blocks of zeros into the next slot. */
static int ring_put(struct restore *r, uint64_t index, uint64_t count,
		    fy_frame *frame)
{
	struct restore_slot *s;
	int rc;

	pthread_mutex_lock(&r->lock);
	rc = ring_wait(r, false);
	if (rc == 0) {
		s = &r->slots[r->filled % r->nslots];
		s->index = index;
		s->count = count;
		s->zeros = !frame;
		s->frame = frame;
		s->state = frame ? SLOT_RECEIVED : SLOT_READY;
		frame = NULL;
		r->filled++;
		pthread_cond_signal(s->zeros ? &r->cond_write : &r->cond_work);
	}
	pthread_mutex_unlock(&r->lock);
	fy_frame_free(frame);
	return rc;
}

static int put_pending_zeros(struct restore *r)
{
	int rc = 0;

	if (r->zeros_count)
		rc = ring_put(r, r->zeros_first, r->zeros_count, NULL);
	r->zeros_count = 0;
	return rc;
}

/* A block the output gets as zeros: joins the pending run if it can. */
static int put_zero_block(struct restore *r, uint64_t index)
{
	int rc = 0;

	if (r->zeros_count && (index != r->zeros_first + r->zeros_count ||
			       r->zeros_count == r->zeros_max))
		rc = put_pending_zeros(r);
	if (!r->zeros_count)
		r->zeros_first = index;
	r->zeros_count++;
	return rc;
}

/* Starts the writer and the workers, once the block size is known. The
 * ring: two slots per worker (one decoding, one waiting to be written)
 * and one write's worth, within RESTORE_RING_BYTES unless the workers
 * need more. */
static int ring_start(struct restore *r)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned workers, per_write, max, i;

	if (atomic_load(&restore_workers))
		cpus = atomic_load(&restore_workers);
	workers = cpus < 1 ? 1 : cpus > RESTORE_WORKERS_MAX
				 ? RESTORE_WORKERS_MAX : (unsigned)cpus;
	per_write = RESTORE_WRITE_MAX / r->block_size;
	max = RESTORE_RING_BYTES / r->block_size;
	if (max < workers + 2)
		max = workers + 2;
	if ((r->device || r->file_direct) && !r->sink) {
		r->w = calloc(RESTORE_WRITE_DEPTH, sizeof(*r->w));
		if (!r->w)
			return fy_err_set(-ENOMEM, "out of memory");
		if (io_setup(RESTORE_WRITE_DEPTH, &r->aio) == 0)
			r->aio_ready = r->aio_on = true;
		else
			fy_debug("restore: io_setup failed; writing one "
				 "write at a time");
	}
	r->nslots = 2 * workers + per_write *
				  (r->aio_on ? RESTORE_WRITE_DEPTH : 1);
	if (r->nslots > max)
		r->nslots = max;
	r->zeros_max = per_write;
	r->slots = calloc(r->nslots, sizeof(*r->slots));
	r->threads = calloc(workers + 1, sizeof(*r->threads));
	if (!r->slots || !r->threads)
		return fy_err_set(-ENOMEM, "out of memory");
	for (i = 0; i < r->nslots; i++)
		if (posix_memalign((void **)&r->slots[i].plain, 4096,
				   r->block_size))
			return fy_err_set(-ENOMEM, "out of memory for %u "
					  "blocks of %u bytes", r->nslots,
					  r->block_size);
	if (pthread_create(&r->threads[0], NULL, restore_writer, r))
		return fy_err_set(-EAGAIN, "cannot start the restore's writer "
				  "thread");
	for (r->nthreads = 1; r->nthreads <= workers; r->nthreads++)
		if (pthread_create(&r->threads[r->nthreads], NULL,
				   restore_worker, r))
			break;
	if (r->nthreads == 1)
		return fy_err_set(-EAGAIN, "cannot start the restore's decode "
				  "threads");
	fy_debug("restore: %u decode workers, a ring of %u slots of %u bytes, "
		 "%u write(s) in flight", r->nthreads - 1, r->nslots,
		 r->block_size, r->aio_on ? RESTORE_WRITE_DEPTH : 1);
	return 0;
}

/* Stops and joins every thread started, whatever they were doing, and
 * frees the ring. */
static void ring_stop(struct restore *r)
{
	unsigned i;

	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_broadcast(&r->cond_work);
	pthread_cond_broadcast(&r->cond_write);
	pthread_mutex_unlock(&r->lock);
	for (i = 0; i < r->nthreads; i++)
		pthread_join(r->threads[i], NULL);
	r->nthreads = 0;
	for (i = 0; r->slots && i < r->nslots; i++) {
		fy_frame_free(r->slots[i].frame);
		free(r->slots[i].plain);
	}
	free(r->slots);
	free(r->threads);
	r->slots = NULL;
	r->threads = NULL;
	if (r->aio_ready)
		io_destroy(r->aio);
	r->aio_ready = r->aio_on = false;
	free(r->w);
	r->w = NULL;
}

/* What the output gets for an entry of a map chunk. */
enum entry_kind {
	ENTRY_SKIP,  /* nothing: left as the output has it */
	ENTRY_ZEROS,
	ENTRY_DATA,  /* the block, fetched */
};

/* An entry the stream passes without fetching it: zeros are put, a
 * skipped block only counted (the progress counts it done). */
static int pass_entry(struct restore *r, enum entry_kind kind, uint64_t index)
{
	if (kind == ENTRY_ZEROS)
		return put_zero_block(r, index);
	if (kind == ENTRY_SKIP)
		r->skipped += block_len(r, index);
	return 0;
}

/* Fetches the data blocks of one map chunk and puts them, with the zeros
 * between them, into the ring in disk order. */
static int restore_chunk(struct restore *r, const Ferry__MapChunk *mc)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__GetBlocks gb = FERRY__GET_BLOCKS__INIT;
	ProtobufCBinaryData bins[FY_GET_MAX];
	/* A stream has no holes: it is given every block. */
	bool stream = !r->seekable && !r->zero_holes;
	uint8_t *kind;   /* an enum entry_kind for every map entry */
	size_t *idx;     /* the map position of every data entry, in order */
	size_t ndata = 0, sent = 0, got = 0, next = 0, i;
	unsigned inflight = 0;
	int rc = 0;

	idx = malloc(mc->n_digests * sizeof(*idx) + 1);
	kind = malloc(mc->n_digests + 1);
	if (!idx || !kind) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	rc = restore_tick(r);
	if (rc < 0)
		goto out;
	for (i = 0; i < mc->n_digests; i++) {
		uint64_t index = mc->first_block + i;

		/* Only the blocks asked for (a rollback: what changed). */
		if (r->hooks && r->hooks->want &&
		    !r->hooks->want(r->hooks->opaque, index * r->block_size,
				    block_len(r, index)))
			kind[i] = stream ? ENTRY_ZEROS : ENTRY_SKIP;
		else if (mc->digests[i].len)
			kind[i] = ENTRY_DATA;
		else
			kind[i] = stream || r->zero_holes ? ENTRY_ZEROS
							   : ENTRY_SKIP;
		if (kind[i] == ENTRY_DATA)
			idx[ndata++] = i;
	}
	while (got < ndata) {
		size_t batch_end;

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
		batch_end = got + FY_GET_MAX < ndata ? got + FY_GET_MAX : ndata;
		for (; got < batch_end; got++) {
			fy_frame *b = NULL;
			uint64_t index = mc->first_block + idx[got];
			const ProtobufCBinaryData *want =
				&mc->digests[idx[got]];

			for (; next < idx[got] && rc == 0; next++)
				rc = pass_entry(r, kind[next],
						mc->first_block + next);
			next = idx[got] + 1;
			if (rc == 0)
				rc = put_pending_zeros(r);
			if (rc < 0)
				goto out;
			rc = fy_client_recv_expect(r->conn,
						   FERRY__FRAME__BODY_BLOCK,
						   "Block", &b);
			if (rc < 0)
				goto out;
			if (memcmp(b->block->digest.data, want->data,
				   FY_DIGEST_LEN) ||
			    b->block->plain_size != block_len(r, index)) {
				fy_frame_free(b);
				rc = fy_err_set(-EPROTO, "repository sent the "
						"wrong block for block %"
						PRIu64, index);
				rc = fy_err_wrap(rc, "block %" PRIu64, index);
				goto out;
			}
			/* The ring's failures name their own block. */
			rc = ring_put(r, index, 1, b);
			if (rc < 0)
				goto out;
		}
		inflight--;
		rc = restore_tick(r);
		if (rc < 0)
			goto out;
	}
	for (; next < mc->n_digests && rc == 0; next++)
		rc = pass_entry(r, kind[next], mc->first_block + next);
out:
	free(kind);
	free(idx);
	return rc;
}

static int open_output(struct restore *r, const char *path)
{
	struct stat st;

	if (r->sink) {
		/* A new disk reads as zeros: its holes need no write. */
		r->zero_holes = !r->sink->new_disk;
		r->seekable = r->sink->new_disk;
		return 0;
	}
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
		/* Whole blocks of 4 KiB from aligned buffers, several writes
		 * in flight: O_DIRECT, past the page cache, as for a file. */
		if (!r->device && r->block_size % FILE_DIRECT_ALIGN == 0)
			set_file_direct(r, true);
	} else if (S_ISREG(st.st_mode)) {
		if (st.st_size && !r->overwrite)
			return fy_err_set(-EEXIST, "%s exists; --force replaces "
					  "it", path);
		/* Start empty so holes read as zeros, then size it. */
		if (ftruncate(r->fd, 0) < 0 || ftruncate(r->fd, r->size) < 0)
			return fy_err_set(-errno, "cannot size %s: %s", path,
					  strerror(errno));
		r->seekable = true;
		/* Whole blocks of 4 KiB from aligned buffers: O_DIRECT where
		 * the file system takes it, else buffered as before. */
		if (r->block_size % FILE_DIRECT_ALIGN == 0)
			set_file_direct(r, true);
	}
	return 0;
}

/* Checks what MapEnd says of the disk, prepares the output and starts the
 * threads. */
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
	if (posix_memalign((void **)&r->zeros, 4096, r->block_size))
		return fy_err_set(-ENOMEM, "out of memory");
	memset(r->zeros, 0, r->block_size);
	rc = open_output(r, path);
	if (rc == 0)
		rc = ring_start(r);
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
			rc = fy_client_recv_expect(conn,
						   FERRY__FRAME__BODY_MAP_END,
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
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond_work, NULL);
	pthread_cond_init(&r->cond_write, NULL);
	pthread_cond_init(&r->cond_free, NULL);
	rc = map_walk(r->conn, backup_id, disk, &w);
	started = rw.started;
	/* The last run of zeros, then everything written. */
	if (rc == 0 && started)
		rc = put_pending_zeros(r);
	if (rc == 0 && started) {
		pthread_mutex_lock(&r->lock);
		rc = ring_wait(r, true);
		pthread_mutex_unlock(&r->lock);
	}
	ring_stop(r);
	pthread_cond_destroy(&r->cond_free);
	pthread_cond_destroy(&r->cond_write);
	pthread_cond_destroy(&r->cond_work);
	pthread_mutex_destroy(&r->lock);

	if (rc == 0 && started && r->sink && r->sink->flush)
		rc = r->sink->flush(r->sink->opaque);
	if (own_fd && rc == 0 && r->fd >= 0 && r->fd != STDOUT_FILENO &&
	    fsync(r->fd) < 0 && errno != EINVAL)
		rc = fy_err_set(-errno, "cannot sync %s: %s", path,
				strerror(errno));
	if (own_fd && r->fd >= 0 && r->fd != STDOUT_FILENO)
		close(r->fd);
	if (r->progress && started)
		fprintf(stderr, "\r\033[K");
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
				r.skipped, r.size, true);
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
				r.skipped, r.size, true);
	return rc;
}

int fy_client_restore_sink(struct fy_conn *conn, const char *backup_id,
			   uint32_t disk, const struct fy_restore_sink *sink,
			   uint64_t size, const struct fy_restore_hooks *hooks,
			   uint64_t *bytes_written, uint64_t *zeros_written)
{
	struct restore r = { .conn = conn, .given_fd = -1, .want_size = size,
			     .hooks = hooks, .sink = sink };
	int rc = restore_run(&r, backup_id, disk, sink->name, bytes_written);

	*zeros_written = r.zeros_written;
	if (rc == 0 && hooks && hooks->progress)
		hooks->progress(hooks->opaque, r.written, r.zeros_written,
				r.skipped, r.size, true);
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
