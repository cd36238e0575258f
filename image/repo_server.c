/*
 * ferry-repo's network side. One thread per client connection reads
 * frames in order; blocks are verified (decompressed and re-hashed) and
 * stored by a shared pool of worker threads so both cores work while the
 * connection thread keeps reading. A backup becomes visible only at Commit,
 * after every block it references is durable.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>

#include "image/image_private.h"
#include "image/repo_server.h"

/* Blocks queued for the workers at once, across all sessions: bounds the
 * server's memory to about this many blocks' frames. */
#define QUEUE_MAX 32
/* How often a backup session looks for a worker's failure while its
 * client is silent. */
#define WORKER_CHECK_MS 100

struct session;

struct job {
	struct session *sess;
	fy_frame *frame; /* a PutBlock, owned by the job */
	struct job *next;
};

struct server {
	struct fy_repo *repo;
	struct fy_tls *tls;
	const struct repo_server_opts *opts;

	pthread_mutex_t lock;
	pthread_cond_t queue_cond;  /* jobs queued or space freed */
	pthread_cond_t done_cond;   /* a job finished */
	struct job *head, *tail;
	unsigned queued;
	bool stopping;
	unsigned clients;
	pthread_t *workers;
	unsigned n_workers;
};

struct session {
	struct server *srv;
	struct fy_conn *conn;
	unsigned outstanding; /* jobs of this session not finished */
	struct fy_repo_session *rs; /* the backup's blocks */
	int error;            /* first worker failure */
	char error_msg[FY_ERR_MAX];
	uint64_t blocks_received, bytes_received;
	/* The manifest a restore reads, kept open between GetMap requests:
	 * opening checks the whole file's checksum. */
	struct fy_manifest *restore_manifest;
	/* Who the client is, as its certificate says, and what it may do:
	 * the access list is read once per connection. */
	struct fy_identity id;
	enum fy_role role;
	char ns[FY_NAMESPACE_MAX];
	struct fy_acl *acl;
	/* GetBlocks only after a GetMap this client was allowed. */
	bool may_get_blocks;
	char audited_id[FY_ID_MAX]; /* the last backup whose read we logged */
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* ---- workers ----------------------------------------------------------- */

static void run_job(struct job *job, uint8_t *scratch)
{
	struct session *sess = job->sess;
	struct server *srv = sess->srv;
	Ferry__PutBlock *put = job->frame->put_block;
	int rc;

	/* Re-hash what the client sent: no client can poison dedup. */
	rc = fy_block_decode((enum fy_codec)put->codec, put->data.data,
			     put->data.len, put->plain_size, put->digest.data,
			     scratch, FY_BLOCK_MAX);
	if (rc == 0)
		rc = fy_repo_session_put(sess->rs, put->digest.data,
					 (enum fy_codec)put->codec,
					 put->plain_size, put->data.data,
					 put->data.len);
	pthread_mutex_lock(&srv->lock);
	if (rc < 0 && !sess->error) {
		sess->error = rc;
		snprintf(sess->error_msg, sizeof(sess->error_msg), "%s",
			 fy_err_msg());
	}
	sess->outstanding--;
	pthread_cond_broadcast(&srv->done_cond);
	pthread_mutex_unlock(&srv->lock);
	fy_frame_free(job->frame);
	free(job);
}

static void *worker_main(void *arg)
{
	struct server *srv = arg;
	uint8_t *scratch = malloc(FY_BLOCK_MAX);

	for (;;) {
		struct job *job;

		pthread_mutex_lock(&srv->lock);
		while (!srv->head && !srv->stopping)
			pthread_cond_wait(&srv->queue_cond, &srv->lock);
		if (!srv->head) {
			pthread_mutex_unlock(&srv->lock);
			break;
		}
		job = srv->head;
		srv->head = job->next;
		if (!srv->head)
			srv->tail = NULL;
		srv->queued--;
		pthread_cond_broadcast(&srv->queue_cond);
		pthread_mutex_unlock(&srv->lock);
		if (!scratch) {
			/* Fail the block rather than the whole server. */
			fy_err_set(-ENOMEM, "out of memory for a worker buffer");
			pthread_mutex_lock(&srv->lock);
			if (!job->sess->error) {
				job->sess->error = -ENOMEM;
				snprintf(job->sess->error_msg,
					 sizeof(job->sess->error_msg), "%s",
					 fy_err_msg());
			}
			job->sess->outstanding--;
			pthread_cond_broadcast(&srv->done_cond);
			pthread_mutex_unlock(&srv->lock);
			fy_frame_free(job->frame);
			free(job);
			continue;
		}
		run_job(job, scratch);
	}
	free(scratch);
	return NULL;
}

/* Hands a PutBlock frame to the workers; waits while the queue is full. */
static int submit_put(struct session *sess, fy_frame *frame)
{
	struct server *srv = sess->srv;
	struct job *job = calloc(1, sizeof(*job));

	if (!job)
		return fy_err_set(-ENOMEM, "out of memory");
	job->sess = sess;
	job->frame = frame;
	pthread_mutex_lock(&srv->lock);
	while (srv->queued >= QUEUE_MAX)
		pthread_cond_wait(&srv->queue_cond, &srv->lock);
	/* From now on this session's queries answer "present" for it (a
	 * failure to store it fails the session). */
	fy_repo_session_note(sess->rs, frame->put_block->digest.data);
	if (srv->tail)
		srv->tail->next = job;
	else
		srv->head = job;
	srv->tail = job;
	srv->queued++;
	sess->outstanding++;
	sess->blocks_received++;
	sess->bytes_received += frame->put_block->data.len;
	pthread_cond_broadcast(&srv->queue_cond);
	pthread_mutex_unlock(&srv->lock);
	return 0;
}

/* Waits for the session's blocks; returns the first worker failure. */
static int drain_session(struct session *sess)
{
	struct server *srv = sess->srv;
	int rc;

	pthread_mutex_lock(&srv->lock);
	while (sess->outstanding)
		pthread_cond_wait(&srv->done_cond, &srv->lock);
	rc = sess->error;
	if (rc < 0)
		fy_err_set(rc, "%s", sess->error_msg);
	pthread_mutex_unlock(&srv->lock);
	return rc;
}

/* ---- backup sessions --------------------------------------------------- */

struct commit_check {
	struct server *srv;
	uint64_t missing;
	uint8_t first_missing[FY_DIGEST_LEN];
};

/* Every referenced block must be stored, the session's own committed. */
static int check_stored(void *opaque, const uint8_t digest[FY_DIGEST_LEN])
{
	struct commit_check *cc = opaque;
	int rc = fy_repo_block_exists(cc->srv->repo, digest);

	if (rc < 0)
		return rc;
	if (rc == 0 && cc->missing++ == 0)
		memcpy(cc->first_missing, digest, FY_DIGEST_LEN);
	return 0;
}

static int answer_query(struct session *sess, const Ferry__QueryBlocks *q)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__QueryReply r = FERRY__QUERY_REPLY__INIT;
	uint8_t bitmap[(FY_QUERY_MAX + 7) / 8] = { 0 };
	size_t i;
	int rc;

	for (i = 0; i < q->n_digests; i++) {
		rc = fy_repo_session_exists(sess->rs, q->digests[i].data);
		if (rc < 0)
			return rc;
		if (rc == 0)
			bitmap[i / 8] |= 1u << (i % 8);
	}
	r.seq = q->seq;
	r.missing.data = bitmap;
	r.missing.len = (q->n_digests + 7) / 8;
	f.body_case = FERRY__FRAME__BODY_QUERY_REPLY;
	f.query_reply = &r;
	return fy_conn_send(sess->conn, &f);
}

static int send_committed(struct session *sess, const char *id)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__Committed c = FERRY__COMMITTED__INIT;

	c.backup_id = (char *)id;
	c.blocks_received = sess->blocks_received;
	c.bytes_received = sess->bytes_received;
	f.body_case = FERRY__FRAME__BODY_COMMITTED;
	f.committed = &c;
	return fy_conn_send(sess->conn, &f);
}

_Static_assert(FY_VM_CONFIG_WIRE_MAX == FY_VMCONFIG_MAX,
	       "the wire carries whole VM configuration records");

/* A VM backup's configuration record is decoded and checked (bounded)
 * before anything is committed: a record the repository cannot read
 * would fail every later list of the backup. */
static int take_vm_config(struct fy_manifest_builder *mb,
			  const Ferry__BeginBackup *bb, const Ferry__Commit *c)
{
	if (!c->vm_config.len)
		return 0;
	if (strcmp(bb->source_kind, "vm"))
		return fy_err_set(-EPROTO, "a VM configuration record in a "
				  "backup of kind '%s'", bb->source_kind);
	return fy_manifest_builder_set_vm_config(mb, c->vm_config.data,
						 c->vm_config.len);
}

static int commit_backup(struct session *sess, struct fy_manifest_builder *mb,
			 const char *id, const Ferry__BeginBackup *bb,
			 const Ferry__Commit *c)
{
	struct commit_check cc = { .srv = sess->srv };
	char path[4096], hex[FY_DIGEST_HEX];
	int rc;

	rc = take_vm_config(mb, bb, c);
	if (rc < 0)
		return fy_err_wrap(rc, "refused");

	rc = drain_session(sess);
	if (rc < 0)
		return fy_err_wrap(rc, "storing a block");
	/* The session's blocks durable and visible first (format 2: its
	 * packs fdatasync'd, moved into packs/, indexed). */
	rc = fy_repo_session_commit(sess->rs);
	if (rc < 0)
		return rc;
	rc = fy_manifest_builder_for_each(mb, check_stored, &cc);
	if (rc < 0)
		return rc;
	if (cc.missing) {
		fy_hex(cc.first_missing, FY_DIGEST_LEN, hex);
		return fy_err_set(-EBADMSG, "backup references %" PRIu64
				  " block(s) the repository does not have "
				  "and the session did not send (first %s)",
				  cc.missing, hex);
	}
	/* Every block file and directory entry on disk before the manifest. */
	rc = fy_repo_sync(sess->srv->repo);
	if (rc < 0)
		return rc;
	rc = fy_manifest_builder_finish(mb, path, sizeof(path));
	if (rc < 0)
		return rc;
	rc = fy_repo_backup_commit(sess->srv->repo, path, id);
	if (rc < 0) {
		unlink(path);
		return rc;
	}
	return send_committed(sess, id);
}

static int expect(const fy_frame *f, Ferry__Frame__BodyCase want,
		  const char *what)
{
	if (f->body_case == want)
		return 0;
	return fy_err_set(-EPROTO, "expected %s, got %s", what,
			  fy_frame_name(f));
}

/* Only agents and admins create backups, only in groups they own (the
 * first backup of a group claims it), and an incremental's parent must be
 * a committed backup of the same owner, namespace and group: else another
 * client's backup could slip into this client's chain. */
static int may_back_up(struct session *sess, const Ferry__BeginBackup *bb)
{
	struct server *srv = sess->srv;
	struct fy_manifest *parent = NULL;
	int rc;

	if (sess->role != FY_ROLE_AGENT && sess->role != FY_ROLE_ADMIN)
		return fy_err_set(-EACCES, "certificate %s has role %s: only "
				  "agents and admins create backups",
				  sess->id.name, fy_role_name(sess->role));
	if (!bb->source[0] || strlen(bb->source) >= FY_LABEL_MAX ||
	    strlen(bb->source_kind) >= 32)
		return fy_err_set(-EINVAL, "the backup's source must be 1 to "
				  "%u bytes", FY_LABEL_MAX - 1);
	rc = fy_repo_group_claim(srv->repo, sess->ns, bb->source,
				 sess->id.name);
	if (rc < 0)
		return rc;
	if (!bb->parent_id[0])
		return 0;
	rc = fy_repo_backup_open(srv->repo, bb->parent_id, &parent);
	if (rc < 0)
		return fy_err_set(-EACCES, "incremental refused: parent %s is "
				  "not a committed backup of this repository",
				  bb->parent_id);
	if (strcmp(fy_acl_owner_of(sess->acl, parent), sess->id.name) ||
	    strcmp(parent->namespace_, sess->ns) ||
	    strcmp(parent->source, bb->source) ||
	    strcmp(parent->source_kind, bb->source_kind))
		rc = fy_err_set(-EACCES, "incremental refused: parent %s is "
				"not a backup of group '%s'%s%s owned by %s",
				bb->parent_id, bb->source,
				sess->ns[0] ? " in namespace " : "", sess->ns,
				sess->id.name);
	fy_manifest_free(parent);
	return rc;
}

static int backup_session(struct session *sess, const Ferry__BeginBackup *bb)
{
	struct server *srv = sess->srv;
	struct fy_manifest hdr = { 0 };
	struct fy_manifest_builder *mb = NULL;
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__BackupStarted started = FERRY__BACKUP_STARTED__INIT;
	char id[FY_ID_MAX];
	int lock_fd = -1, rc;
	int disk = -1, idle_ms = 0;
	uint32_t disks_done = 0;

	if (bb->block_size < FY_BLOCK_MIN || bb->block_size > FY_BLOCK_MAX ||
	    (bb->block_size & (bb->block_size - 1)))
		return fy_err_set(-EINVAL, "block size %u is not a power of two "
				  "in %u..%u", bb->block_size, FY_BLOCK_MIN,
				  FY_BLOCK_MAX);
	if (bb->disk_count == 0 || bb->disk_count > FY_DISKS_MAX)
		return fy_err_set(-EINVAL, "disk count %u is outside 1..%u",
				  bb->disk_count, FY_DISKS_MAX);
	rc = may_back_up(sess, bb);
	if (rc < 0) {
		fy_repo_audit(srv->repo, sess->id.name, sess->id.address,
			      "backup-refused", "group '%s'%s%s: %s",
			      bb->source, sess->ns[0] ? " in namespace " : "",
			      sess->ns, fy_err_msg());
		return rc;
	}
	/* Shared: many backups at once; gc waits for all of them. */
	lock_fd = fy_repo_lock(srv->repo, false);
	if (lock_fd < 0)
		return lock_fd;
	rc = fy_repo_session_begin(srv->repo, &sess->rs);
	if (rc < 0) {
		fy_repo_unlock(lock_fd);
		return rc;
	}
	fy_repo_new_backup_id(id);
	snprintf(hdr.id, sizeof(hdr.id), "%s", id);
	/* The server is the truth for what it stores: who made the backup
	 * and when come from the connection and our clock, never the client. */
	snprintf(hdr.owner, sizeof(hdr.owner), "%s", sess->id.name);
	snprintf(hdr.namespace_, sizeof(hdr.namespace_), "%s", sess->ns);
	snprintf(hdr.source, sizeof(hdr.source), "%s", bb->source);
	snprintf(hdr.source_kind, sizeof(hdr.source_kind), "%s",
		 bb->source_kind);
	snprintf(hdr.parent_id, sizeof(hdr.parent_id), "%s", bb->parent_id);
	hdr.created_unix = time(NULL);
	hdr.block_size = bb->block_size;
	rc = fy_manifest_builder_new(fy_repo_tmpdir(srv->repo), &hdr, &mb);
	if (rc < 0)
		goto out;
	started.backup_id = id;
	f.body_case = FERRY__FRAME__BODY_BACKUP_STARTED;
	f.backup_started = &started;
	rc = fy_conn_send(sess->conn, &f);
	if (rc < 0)
		goto out;
	fy_info("backup %s of %s from %s started", id, bb->source,
		fy_conn_peer(sess->conn));

	for (;;) {
		fy_frame *in = NULL;

		/* Fail early when a worker already could not store a block. */
		pthread_mutex_lock(&srv->lock);
		rc = sess->error;
		if (rc < 0)
			fy_err_set(rc, "%s", sess->error_msg);
		pthread_mutex_unlock(&srv->lock);
		if (rc < 0)
			goto out;
		/* A silent client must still hear of a block that failed. */
		rc = fy_conn_wait_readable(sess->conn, WORKER_CHECK_MS);
		if (rc < 0)
			goto out;
		if (rc == 0) {
			idle_ms += WORKER_CHECK_MS;
			if (idle_ms >= srv->opts->idle_timeout_ms) {
				rc = fy_err_set(-ETIMEDOUT, "client silent for "
						"%d s", idle_ms / 1000);
				goto out;
			}
			continue;
		}
		idle_ms = 0;
		rc = fy_conn_recv(sess->conn, &in);
		if (rc < 0)
			goto out;
		switch (in->body_case) {
		case FERRY__FRAME__BODY_QUERY_BLOCKS:
			rc = answer_query(sess, in->query_blocks);
			break;
		case FERRY__FRAME__BODY_PUT_BLOCK:
			if (in->put_block->plain_size > bb->block_size) {
				rc = fy_err_set(-EPROTO, "block of %u bytes in a "
						"backup of %u-byte blocks",
						in->put_block->plain_size,
						bb->block_size);
				break;
			}
			rc = submit_put(sess, in);
			if (rc == 0)
				in = NULL; /* the job owns it now */
			break;
		case FERRY__FRAME__BODY_BEGIN_DISK: {
			struct fy_manifest_disk d = { 0 };

			if (disk >= 0 || in->begin_disk->index != disks_done ||
			    disks_done >= bb->disk_count) {
				rc = fy_err_set(-EPROTO, "BeginDisk %u out of order",
						in->begin_disk->index);
				break;
			}
			if (strlen(in->begin_disk->disk_id) >= sizeof(d.disk_id) ||
			    strlen(in->begin_disk->change_id) >=
				    sizeof(d.change_id)) {
				rc = fy_err_set(-EPROTO, "BeginDisk %u: disk id "
						"or change id too long",
						in->begin_disk->index);
				break;
			}
			d.index = in->begin_disk->index;
			snprintf(d.label, sizeof(d.label), "%s",
				 in->begin_disk->label);
			d.size = in->begin_disk->size;
			snprintf(d.change_id, sizeof(d.change_id), "%s",
				 in->begin_disk->change_id);
			snprintf(d.transport, sizeof(d.transport), "%s",
				 in->begin_disk->transport);
			snprintf(d.disk_id, sizeof(d.disk_id), "%s",
				 in->begin_disk->disk_id);
			rc = fy_manifest_builder_begin_disk(mb, &d);
			if (rc == 0)
				disk = d.index;
			break;
		}
		case FERRY__FRAME__BODY_MAP_CHUNK:
			if (disk < 0 || in->map_chunk->disk != (uint32_t)disk) {
				rc = fy_err_set(-EPROTO, "MapChunk for disk %u "
						"outside that disk",
						in->map_chunk->disk);
				break;
			}
			{
				/* Holes travel as empty digests; store zeros. */
				size_t n = in->map_chunk->n_digests, i;
				uint8_t (*d)[FY_DIGEST_LEN] = calloc(n ? n : 1, FY_DIGEST_LEN);

				if (!d) {
					rc = fy_err_set(-ENOMEM, "out of memory");
					break;
				}
				for (i = 0; i < n; i++)
					if (in->map_chunk->digests[i].len)
						memcpy(d[i], in->map_chunk->digests[i].data,
						       FY_DIGEST_LEN);
				rc = fy_manifest_builder_add(mb, disk,
							     in->map_chunk->first_block,
							     (const uint8_t (*)[FY_DIGEST_LEN])d, n);
				free(d);
			}
			break;
		case FERRY__FRAME__BODY_END_DISK:
			if (disk < 0 || in->end_disk->index != (uint32_t)disk) {
				rc = fy_err_set(-EPROTO, "EndDisk %u without BeginDisk",
						in->end_disk->index);
				break;
			}
			rc = fy_manifest_builder_end_disk(mb, disk);
			disk = -1;
			disks_done++;
			break;
		case FERRY__FRAME__BODY_COMMIT:
			if (disk >= 0 || disks_done != bb->disk_count) {
				rc = fy_err_set(-EPROTO, "Commit after %u of %u disks",
						disks_done, bb->disk_count);
				break;
			}
			rc = commit_backup(sess, mb, id, bb, in->commit);
			if (rc == 0) {
				fy_info("backup %s of %s committed: %" PRIu64
					" blocks (%" PRIu64 " bytes) received%s",
					id, bb->source, sess->blocks_received,
					sess->bytes_received,
					in->commit->vm_config.len
						? ", VM configuration recorded"
						: "");
				fy_repo_audit(srv->repo, sess->id.name,
					      sess->id.address, "backup",
					      "committed %s of group '%s'%s%s "
					      "(parent %s, %u disks, %" PRIu64
					      " blocks received)", id,
					      bb->source,
					      sess->ns[0] ? " in namespace " : "",
					      sess->ns,
					      bb->parent_id[0] ? bb->parent_id
							       : "none",
					      bb->disk_count,
					      sess->blocks_received);
				fy_frame_free(in);
				goto out;
			}
			break;
		case FERRY__FRAME__BODY_ERROR:
			rc = fy_err_set(-ECANCELED, "client gave up: %s",
					in->error->message);
			break;
		default:
			rc = expect(in, FERRY__FRAME__BODY_PUT_BLOCK,
				    "a backup frame");
		}
		fy_frame_free(in);
		if (rc < 0)
			goto out;
	}
out:
	if (rc < 0) {
		fy_err_wrap(rc, "backup %s of %s", id, bb->source);
		fy_repo_audit(srv->repo, sess->id.name, sess->id.address,
			      "backup-failed", "%s", fy_err_msg());
	}
	/* Workers may still hold this session's blocks. */
	{
		int saved = rc;
		char msg[FY_ERR_MAX];

		snprintf(msg, sizeof(msg), "%s", fy_err_msg());
		drain_session(sess);
		/* Not committed: the session's new blocks go (format 2). */
		fy_repo_session_end(sess->rs);
		sess->rs = NULL;
		fy_err_set(saved, "%s", msg);
	}
	fy_manifest_builder_free(mb);
	fy_repo_unlock(lock_fd);
	return rc;
}

/* A client still streaming blocks when its session fails would see its
 * writes reset (the unread data makes our close a RST) before it reads
 * the Error frame that says why. Read and drop what it sends for a short,
 * bounded while, until it reads the error and hangs up. */
#define DISCARD_MS 2000

static void discard_input(struct fy_conn *conn)
{
	struct timespec t0, t;
	fy_frame *f;

	if (fy_conn_flush(conn) < 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		long ms;

		clock_gettime(CLOCK_MONOTONIC, &t);
		ms = (t.tv_sec - t0.tv_sec) * 1000 +
		     (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (ms >= DISCARD_MS ||
		    fy_conn_wait_readable(conn, (int)(DISCARD_MS - ms)) <= 0 ||
		    fy_conn_recv(conn, &f) < 0)
			return;
		fy_frame_free(f);
	}
}

/* ---- listing and restore ----------------------------------------------- */

/* What a backup adds to a BackupList frame, generously: its strings,
 * record and disks plus protobuf's framing. */
static size_t summary_bytes(const struct fy_manifest *m)
{
	size_t n = 128 + strlen(m->id) + strlen(m->source) +
		   strlen(m->source_kind) + strlen(m->parent_id) +
		   FY_OWNER_MAX + strlen(m->namespace_) + m->vm_config_len;
	uint32_t i;

	for (i = 0; i < m->disk_count; i++)
		n += 96 + strlen(m->disks[i].label) +
		     strlen(m->disks[i].change_id) +
		     strlen(m->disks[i].transport) +
		     strlen(m->disks[i].disk_id);
	return n;
}

/* Half a frame: a page always fits, whatever its backups carry. */
#define LIST_PAGE_BYTES (FY_FRAME_MAX / 2)

/* Pages are filled with backups the client may read, so a client that
 * may read few of many still gets them all; ids sort by time, and the
 * next page starts after the last id sent. A page ends at FY_LIST_PAGE
 * backups or LIST_PAGE_BYTES, whichever comes first. */
static int send_list(struct session *sess, const Ferry__ListBackups *req)
{
	struct server *srv = sess->srv;
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__BackupList bl = FERRY__BACKUP_LIST__INIT;
	Ferry__BackupSummary *sums = NULL, **sump = NULL;
	Ferry__DiskSummary *disks = NULL, **diskp = NULL;
	struct fy_manifest **ms = NULL;
	char (*ids)[FY_ID_MAX] = NULL;
	size_t count = 0, i, j, nd = 0, total_disks = 0, shown = 0;
	size_t page_bytes = 0;
	int rc;

	if (req->id[0]) {
		/* One backup, by its manifest alone: no listing. */
		count = 0;
	} else {
		rc = fy_repo_list_ids(srv->repo, &ids, &count);
		if (rc < 0)
			goto out;
	}
	ms = calloc(FY_LIST_PAGE, sizeof(*ms));
	sums = calloc(FY_LIST_PAGE, sizeof(*sums));
	sump = calloc(FY_LIST_PAGE, sizeof(*sump));
	if (!ms || !sums || !sump) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	if (req->id[0]) {
		struct fy_manifest *m = NULL;

		/* Not there, not a backup id, or not the client's to read:
		 * all the same empty page, so that nobody learns which
		 * backups exist by asking. */
		int orc = fy_repo_backup_open(srv->repo, req->id, &m);

		if (orc < 0 && orc != -ENOENT && orc != -EINVAL)
			fy_warn("showing backup %.64s: %s", req->id,
				fy_err_msg());
		if (orc == 0 &&
		    (req->all_namespaces || !strcmp(m->namespace_, sess->ns)) &&
		    fy_acl_may_read(sess->acl, sess->id.name, sess->role, m)) {
			ms[shown++] = m;
			total_disks = m->disk_count;
		} else {
			fy_manifest_free(m);
		}
	}
	for (i = 0; i < count; i++) {
		struct fy_manifest *m = NULL;

		if (req->after_id[0] && strcmp(ids[i], req->after_id) <= 0)
			continue;
		if (fy_repo_backup_open(srv->repo, ids[i], &m) < 0) {
			fy_warn("listing: skipping backup %s: %s", ids[i],
				fy_err_msg());
			continue;
		}
		if ((!req->all_namespaces && strcmp(m->namespace_, sess->ns)) ||
		    !fy_acl_may_read(sess->acl, sess->id.name, sess->role, m)) {
			fy_manifest_free(m);
			continue;
		}
		if (shown == FY_LIST_PAGE ||
		    (shown && page_bytes + summary_bytes(m) > LIST_PAGE_BYTES)) {
			fy_manifest_free(m);
			bl.more = true;
			break;
		}
		page_bytes += summary_bytes(m);
		ms[shown++] = m;
		total_disks += m->disk_count;
	}
	disks = calloc(total_disks ? total_disks : 1, sizeof(*disks));
	diskp = calloc(total_disks ? total_disks : 1, sizeof(*diskp));
	if (!disks || !diskp) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < shown; i++) {
		struct fy_manifest *m = ms[i];
		Ferry__BackupSummary *s = &sums[i];

		ferry__backup_summary__init(s);
		s->id = m->id;
		s->source = m->source;
		s->source_kind = m->source_kind;
		s->created_unix = m->created_unix;
		s->parent_id = m->parent_id;
		s->block_size = m->block_size;
		s->owner = (char *)fy_acl_owner_of(sess->acl, m);
		s->namespace_ = m->namespace_;
		s->vm_config.data = m->vm_config;
		s->vm_config.len = m->vm_config_len;
		s->disks = &diskp[nd];
		s->n_disks = m->disk_count;
		for (j = 0; j < m->disk_count; j++, nd++) {
			Ferry__DiskSummary *d = &disks[nd];

			ferry__disk_summary__init(d);
			d->index = m->disks[j].index;
			d->label = m->disks[j].label;
			d->size = m->disks[j].size;
			d->data_blocks = m->disks[j].data_blocks;
			d->hole_blocks = m->disks[j].hole_blocks;
			d->change_id = m->disks[j].change_id;
			d->transport = m->disks[j].transport;
			d->disk_id = m->disks[j].disk_id;
			diskp[nd] = d;
		}
		sump[i] = s;
	}
	bl.backups = sump;
	bl.n_backups = shown;
	f.body_case = FERRY__FRAME__BODY_BACKUP_LIST;
	f.backup_list = &bl;
	rc = fy_conn_send(sess->conn, &f);
out:
	for (i = 0; ms && i < shown; i++)
		fy_manifest_free(ms[i]);
	free(ms);
	free(sums);
	free(sump);
	free(disks);
	free(diskp);
	free(ids);
	return rc;
}

/* Opens a backup for reading if the client may read it. The answer is the
 * same for a backup that does not exist and one the client may not read:
 * no client learns which ids others have. */
static int open_readable(struct session *sess, const char *id,
			 struct fy_manifest **out)
{
	struct fy_manifest *m = NULL;
	int rc = fy_repo_backup_open(sess->srv->repo, id, &m);

	if (rc == 0 && !fy_acl_may_read(sess->acl, sess->id.name, sess->role,
					 m))
		rc = -EACCES;
	if (rc == -EACCES || rc == -ENOENT) {
		fy_manifest_free(m);
		fy_repo_audit(sess->srv->repo, sess->id.name, sess->id.address,
			      "read-refused", "backup %.63s", id);
		return fy_err_set(-ENOENT, "no backup %.63s that %s may read",
				  id, sess->id.name);
	}
	if (rc < 0)
		return rc;
	*out = m;
	return 0;
}

static int send_map(struct session *sess, const Ferry__GetMap *req)
{
	struct fy_manifest *m = sess->restore_manifest;
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__MapChunk mc = FERRY__MAP_CHUNK__INIT;
	Ferry__MapEnd me = FERRY__MAP_END__INIT;
	uint8_t (*d)[FY_DIGEST_LEN] = NULL;
	ProtobufCBinaryData *bins = NULL;
	uint64_t first, end, count;
	int rc;

	if (!m || strcmp(m->id, req->backup_id)) {
		fy_manifest_free(m);
		sess->restore_manifest = NULL;
		rc = open_readable(sess, req->backup_id, &m);
		if (rc < 0)
			return rc;
		sess->restore_manifest = m;
		sess->may_get_blocks = true;
	}
	if (strcmp(sess->audited_id, m->id)) {
		fy_repo_audit(sess->srv->repo, sess->id.name, sess->id.address,
			      "read", "backup %s of group '%s' (owner %s)",
			      m->id, m->source, fy_acl_owner_of(sess->acl, m));
		snprintf(sess->audited_id, sizeof(sess->audited_id), "%s",
			 m->id);
	}
	if (req->disk >= m->disk_count)
		return fy_err_set(-ENOENT, "backup %s has no disk %u (it has %u)",
				  req->backup_id, req->disk, m->disk_count);
	count = m->disks[req->disk].block_count;
	if (req->first_block > count)
		return fy_err_set(-EINVAL, "backup %s disk %u has %" PRIu64
				  " blocks, not %" PRIu64, req->backup_id,
				  req->disk, count, req->first_block);
	end = count;
	if (req->count && req->count < count - req->first_block)
		end = req->first_block + req->count;
	d = malloc((size_t)FY_MAP_CHUNK_MAX * FY_DIGEST_LEN);
	bins = calloc(FY_MAP_CHUNK_MAX, sizeof(*bins));
	if (!d || !bins) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	for (first = req->first_block; first < end; first += FY_MAP_CHUNK_MAX) {
		size_t n = end - first < FY_MAP_CHUNK_MAX ? end - first
							   : FY_MAP_CHUNK_MAX;
		size_t i;

		rc = fy_manifest_read_map(m, req->disk, first, n, d);
		if (rc < 0)
			goto out;
		for (i = 0; i < n; i++) {
			bins[i].data = d[i];
			bins[i].len = fy_digest_is_hole(d[i]) ? 0 : FY_DIGEST_LEN;
		}
		mc.disk = req->disk;
		mc.first_block = first;
		mc.digests = bins;
		mc.n_digests = n;
		f.body_case = FERRY__FRAME__BODY_MAP_CHUNK;
		f.map_chunk = &mc;
		rc = fy_conn_send(sess->conn, &f);
		if (rc < 0)
			goto out;
	}
	me.disk = req->disk;
	me.block_count = count;
	me.size = m->disks[req->disk].size;
	me.block_size = m->block_size;
	f.body_case = FERRY__FRAME__BODY_MAP_END;
	f.map_end = &me;
	rc = fy_conn_send(sess->conn, &f);
out:
	free(d);
	free(bins);
	return rc;
}

static int send_block_frame(struct session *sess, const ProtobufCBinaryData *d,
			    enum fy_codec codec, uint32_t plain,
			    const uint8_t *data, size_t len)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__Block b = FERRY__BLOCK__INIT;

	b.digest = *d;
	b.plain_size = plain;
	b.codec = (Ferry__Codec)codec;
	b.data.data = (uint8_t *)data;
	b.data.len = len;
	f.body_case = FERRY__FRAME__BODY_BLOCK;
	f.block = &b;
	return fy_conn_send(sess->conn, &f);
}

/*
 * A repository in a bucket (format 3) answers a block whose pack data was
 * evicted from the cache only after a GET, so one GetBlocks is read by
 * GET_READERS threads at once, at most GET_AHEAD blocks ahead of the one
 * being sent; blocks still go out in the order asked. Local repositories
 * read from the page cache, one after another.
 */
#define GET_READERS 4
#define GET_AHEAD 8

struct get_slot {
	size_t index;   /* which digest of the request it holds */
	bool done;
	int rc;
	char msg[FY_ERR_MAX];
	enum fy_codec codec;
	uint32_t plain;
	size_t len;
};

struct getter {
	struct session *sess;
	const Ferry__GetBlocks *req;
	uint8_t **bufs; /* GET_AHEAD, FY_STORED_MAX each, of the session */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t next_read, next_send;
	bool stop;
	struct get_slot slot[GET_AHEAD];
};

static void *get_reader(void *arg)
{
	struct getter *g = arg;

	pthread_mutex_lock(&g->lock);
	for (;;) {
		struct get_slot *sl;
		size_t i;
		int rc;

		while (!g->stop && g->next_read < g->req->n_digests &&
		       g->next_read - g->next_send >= GET_AHEAD)
			pthread_cond_wait(&g->cond, &g->lock);
		if (g->stop || g->next_read >= g->req->n_digests)
			break;
		i = g->next_read++;
		sl = &g->slot[i % GET_AHEAD];
		pthread_mutex_unlock(&g->lock);
		rc = fy_repo_block_get(g->sess->srv->repo,
				       g->req->digests[i].data, &sl->codec,
				       &sl->plain, g->bufs[i % GET_AHEAD],
				       FY_STORED_MAX, &sl->len);
		pthread_mutex_lock(&g->lock);
		sl->index = i;
		sl->rc = rc;
		if (rc < 0)
			snprintf(sl->msg, sizeof(sl->msg), "%s", fy_err_msg());
		sl->done = true;
		pthread_cond_broadcast(&g->cond);
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

static int send_blocks_parallel(struct session *sess,
				const Ferry__GetBlocks *req, uint8_t **bufs)
{
	struct getter g = { .sess = sess, .req = req, .bufs = bufs };
	pthread_t th[GET_READERS];
	unsigned n = 0, k;
	size_t i;
	int rc = 0;

	pthread_mutex_init(&g.lock, NULL);
	pthread_cond_init(&g.cond, NULL);
	for (k = 0; k < GET_READERS && k < req->n_digests; k++)
		if (pthread_create(&th[n], NULL, get_reader, &g) == 0)
			n++;
	if (!n)
		rc = fy_err_set(-EAGAIN, "cannot start a block reader");
	for (i = 0; rc == 0 && i < req->n_digests; i++) {
		struct get_slot *sl = &g.slot[i % GET_AHEAD];

		pthread_mutex_lock(&g.lock);
		while (!(sl->done && sl->index == i))
			pthread_cond_wait(&g.cond, &g.lock);
		pthread_mutex_unlock(&g.lock);
		if (sl->rc < 0)
			rc = fy_err_set(sl->rc, "%s", sl->msg);
		else
			rc = send_block_frame(sess, &req->digests[i], sl->codec,
					      sl->plain, bufs[i % GET_AHEAD],
					      sl->len);
		pthread_mutex_lock(&g.lock);
		sl->done = false;
		g.next_send = i + 1;
		pthread_cond_broadcast(&g.cond);
		pthread_mutex_unlock(&g.lock);
	}
	pthread_mutex_lock(&g.lock);
	g.stop = true;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	for (k = 0; k < n; k++)
		pthread_join(th[k], NULL);
	pthread_cond_destroy(&g.cond);
	pthread_mutex_destroy(&g.lock);
	return rc;
}

/* bufs: the session's, GET_AHEAD of FY_STORED_MAX, allocated here on the
 * first request (only bufs[0] for a local repository). */
static int send_blocks(struct session *sess, const Ferry__GetBlocks *req,
		       uint8_t **bufs)
{
	bool parallel = fy_repo_format(sess->srv->repo) == 3 &&
			req->n_digests > 1;
	unsigned k, need = parallel ? GET_AHEAD : 1;
	size_t i;
	int rc;

	for (k = 0; k < need; k++)
		if (!bufs[k] && !(bufs[k] = malloc(FY_STORED_MAX)))
			return fy_err_set(-ENOMEM, "out of memory");
	if (parallel)
		return send_blocks_parallel(sess, req, bufs);
	for (i = 0; i < req->n_digests; i++) {
		enum fy_codec codec;
		uint32_t plain;
		size_t len;

		rc = fy_repo_block_get(sess->srv->repo, req->digests[i].data,
				       &codec, &plain, bufs[0], FY_STORED_MAX,
				       &len);
		if (rc < 0)
			return rc;
		rc = send_block_frame(sess, &req->digests[i], codec, plain,
				      bufs[0], len);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- connections ------------------------------------------------------- */

static int greet(struct session *sess)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__HelloReply r = FERRY__HELLO_REPLY__INIT;
	char *features[] = { "zstd" };
	fy_frame *in = NULL;
	int rc;

	rc = fy_conn_recv(sess->conn, &in);
	if (rc < 0)
		return rc;
	rc = expect(in, FERRY__FRAME__BODY_HELLO, "Hello");
	if (rc == 0 && in->hello->protocol_version != FY_PROTOCOL_VERSION)
		rc = fy_err_set(-EPROTONOSUPPORT, "client speaks protocol %u, "
				"this repository speaks %u",
				in->hello->protocol_version, FY_PROTOCOL_VERSION);
	if (rc == 0 && in->hello->namespace_[0] &&
	    !fy_namespace_valid(in->hello->namespace_))
		rc = fy_err_set(-EINVAL, "namespace '%.63s': %s",
				in->hello->namespace_, FY_NAMESPACE_RULE);
	if (rc == 0)
		snprintf(sess->ns, sizeof(sess->ns), "%s",
			 in->hello->namespace_);
	fy_frame_free(in);
	if (rc < 0)
		return rc;
	r.protocol_version = FY_PROTOCOL_VERSION;
	r.software = "ferry-repo " FERRY_VERSION;
	r.features = features;
	r.n_features = 1;
	r.repository_id = (char *)fy_repo_id(sess->srv->repo);
	r.max_frame = FY_FRAME_MAX;
	r.min_block_size = FY_BLOCK_MIN;
	r.max_block_size = FY_BLOCK_MAX;
	f.body_case = FERRY__FRAME__BODY_HELLO_REPLY;
	f.hello_reply = &r;
	return fy_conn_send(sess->conn, &f);
}

struct client_arg {
	struct server *srv;
	struct fy_conn *conn; /* authenticated by the gate */
};

/* Who the client is. A repository's certificate is never a client: it
 * would let one repository act on another. */
static int authenticate(struct session *sess)
{
	int rc = fy_conn_identity(sess->conn, &sess->id);

	if (rc < 0)
		return rc;
	sess->role = fy_identity_role(&sess->id);
	if (sess->role == FY_ROLE_REPOSITORY)
		return fy_err_set(-EACCES, "certificate %s has role repository: "
				  "a repository's certificate cannot be a "
				  "client", sess->id.name);
	rc = fy_acl_load(sess->srv->repo, &sess->acl);
	if (rc < 0)
		fy_err_wrap(rc, "cannot judge %s's requests", sess->id.name);
	return rc;
}

static void *client_main(void *arg)
{
	struct client_arg *ca = arg;
	struct server *srv = ca->srv;
	struct session sess = { .srv = srv, .conn = ca->conn };
	uint8_t *bufs[GET_AHEAD] = { NULL };
	unsigned k;
	int rc;

	free(ca);
	rc = authenticate(&sess);
	if (rc == 0)
		rc = greet(&sess);
	while (rc == 0) {
		fy_frame *in = NULL;

		rc = fy_conn_recv(sess.conn, &in);
		if (rc < 0)
			break;
		switch (in->body_case) {
		case FERRY__FRAME__BODY_BEGIN_BACKUP:
			rc = backup_session(&sess, in->begin_backup);
			break;
		case FERRY__FRAME__BODY_LIST_BACKUPS:
			rc = send_list(&sess, in->list_backups);
			break;
		case FERRY__FRAME__BODY_GET_MAP:
			rc = send_map(&sess, in->get_map);
			break;
		case FERRY__FRAME__BODY_GET_BLOCKS:
			/* Digests are only learnt from maps: a client reads
			 * blocks after a map it may read (or as an admin). */
			if (!sess.may_get_blocks && sess.role != FY_ROLE_ADMIN) {
				rc = fy_err_set(-EACCES, "GetBlocks before a "
						"GetMap of a backup %s may "
						"read", sess.id.name);
				break;
			}
			rc = send_blocks(&sess, in->get_blocks, bufs);
			break;
		default:
			rc = fy_err_set(-EPROTO, "unexpected %s",
					fy_frame_name(in));
		}
		fy_frame_free(in);
		if (rc == 0)
			rc = fy_conn_flush(sess.conn);
	}
	if (rc != -ECONNRESET) {
		fy_warn("client %s: %s", fy_conn_peer(sess.conn), fy_err_msg());
		fy_conn_send_error(sess.conn, rc, fy_err_msg());
		discard_input(sess.conn);
	} else {
		fy_debug("client %s disconnected", fy_conn_peer(sess.conn));
	}
	for (k = 0; k < GET_AHEAD; k++)
		free(bufs[k]);
	fy_acl_free(sess.acl);
	fy_manifest_free(sess.restore_manifest);
	fy_conn_close(sess.conn);
	pthread_mutex_lock(&srv->lock);
	srv->clients--;
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

/* The gate's callback: an authenticated client takes a client slot and a
 * thread, or is told the server is full. */
static void on_client(void *opaque, struct fy_conn *conn)
{
	struct server *srv = opaque;
	struct client_arg *ca;
	pthread_attr_t attr;
	pthread_t t;
	char msg[128];

	pthread_mutex_lock(&srv->lock);
	if (srv->clients >= srv->opts->max_clients) {
		pthread_mutex_unlock(&srv->lock);
		snprintf(msg, sizeof(msg), "the repository serves %u clients "
			 "already (--max-clients); try again later",
			 srv->opts->max_clients);
		fy_warn("refusing %s: %s", fy_conn_peer(conn), msg);
		fy_conn_send_error(conn, -EBUSY, msg);
		fy_conn_close(conn);
		return;
	}
	srv->clients++;
	pthread_mutex_unlock(&srv->lock);
	ca = malloc(sizeof(*ca));
	if (ca) {
		ca->srv = srv;
		ca->conn = conn;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, client_main, ca) == 0) {
			pthread_attr_destroy(&attr);
			return;
		}
		pthread_attr_destroy(&attr);
		free(ca);
	}
	fy_warn("refusing %s: cannot start a thread", fy_conn_peer(conn));
	fy_conn_close(conn);
	pthread_mutex_lock(&srv->lock);
	srv->clients--;
	pthread_mutex_unlock(&srv->lock);
}

/* Tells a supervisor or a test which address we bound (port 0 picks one). */
static void write_ready_file(const char *path, const char *bound)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f) {
		fy_warn("cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	fprintf(f, "%s\n", bound);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		fy_warn("cannot write %s: %s", path, strerror(errno));
}

int repo_server_run(const struct repo_server_opts *opts)
{
	struct server srv = { .opts = opts };
	struct sigaction sa = { .sa_handler = on_signal };
	struct fy_gate *gate = NULL;
	char bound[128] = "";
	int lfd = -1, rc;
	unsigned i;

	pthread_mutex_init(&srv.lock, NULL);
	pthread_cond_init(&srv.queue_cond, NULL);
	pthread_cond_init(&srv.done_cond, NULL);
	rc = fy_repo_open(opts->root, FY_REPO_CLEAN_TMP | FY_REPO_SERVING,
			  &srv.repo);
	if (rc < 0)
		return rc;
	rc = fy_tls_new_server(&opts->tls, &srv.tls);
	if (rc < 0)
		goto out;
	rc = fy_listen(opts->listen, &lfd, bound, sizeof(bound));
	if (rc < 0)
		goto out;
	srv.n_workers = opts->workers ? opts->workers
				      : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (srv.n_workers < 1)
		srv.n_workers = 1;
	srv.workers = calloc(srv.n_workers, sizeof(*srv.workers));
	if (!srv.workers) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < srv.n_workers; i++)
		pthread_create(&srv.workers[i], NULL, worker_main, &srv);

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	fy_log(FY_LOG_WARN, "ferry-repo %s serving %s on %s", FERRY_VERSION,
	       opts->root, bound);
	if (opts->ready_file)
		write_ready_file(opts->ready_file, bound);
	{
		struct fy_gate_opts go = {
			.what = "repository",
			.handshake_timeout_ms = opts->handshake_timeout_ms,
			.max_pending = opts->max_handshakes,
			.max_per_address = opts->max_handshakes_per_address,
			.io_timeout_ms = opts->idle_timeout_ms,
		};

		rc = fy_gate_start(srv.tls, lfd, &go, on_client, &srv, &gate);
		if (rc < 0)
			goto out_workers;
	}
	while (!stop_requested)
		poll(NULL, 0, 200);
	fy_gate_stop(gate);
	fy_log(FY_LOG_WARN, "ferry-repo: stopping");
	if (srv.repo->store->ops->release)
		srv.repo->store->ops->release(srv.repo->store);
	rc = 0;
out_workers:
	/* Sessions in progress are abandoned: uncommitted, so invisible. */
	pthread_mutex_lock(&srv.lock);
	srv.stopping = true;
	pthread_cond_broadcast(&srv.queue_cond);
	pthread_mutex_unlock(&srv.lock);
	for (i = 0; i < srv.n_workers; i++)
		pthread_join(srv.workers[i], NULL);
out:
	if (lfd >= 0)
		close(lfd);
	free(srv.workers);
	fy_tls_free(srv.tls);
	/* Client threads may still run; the repository stays open for them
	 * until the process exits. */
	return rc;
}
