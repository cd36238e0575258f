/*
 * The block pipeline: a disk goes in, the repository gets what it lacks.
 *
 *   reader thread      reads blocks in order (a batch at a time, the
 *                      next batch started before the previous one is
 *                      waited for), skipping holes the source reports;
 *   worker threads     hash (SHA-256) every block, then compress only the
 *                      blocks the repository said it lacks;
 *   network (caller)   asks the repository which digests it lacks, in
 *                      batches, sends those blocks, and streams the block
 *                      map in order.
 *
 * Memory is bounded by the pool of block slots (each holds a block and
 * room for its compressed form) and by the map window (how far the reader
 * may run ahead of the oldest unfinished block), whatever the disk size.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/session.h"

/* Roughly this much memory for block slots, whatever the block size. */
#define POOL_BYTES (96u << 20)
#define POOL_MIN 16
#define POOL_MAX 1024
/* The reader may run this many blocks ahead of the oldest unfinished one. */
#define WINDOW_FACTOR 4
/* The reader asks the source for extents this many blocks at a time. */
#define EXTENT_WINDOW 1024
/* Queries are batched (by the session); a partial batch goes when nothing
 * came for this long. */
#define QUERY_WAIT_NS (1000 * 1000)

enum blk_state {
	BLK_READ,       /* read, waiting for a worker to hash it */
	BLK_HOLE,       /* all zeros */
	BLK_HASHED,     /* digest known, waiting for the query */
	BLK_COMPRESS,   /* the repository lacks it: waiting for a worker */
	BLK_COMPRESSED, /* ready to send */
	BLK_DUP,        /* same digest as a block already being sent */
	BLK_PARENT,     /* unchanged since the parent backup: its entry */
};

struct blk {
	uint64_t index;
	size_t len; /* plain bytes; the last block of a disk may be short */
	enum blk_state state;
	uint8_t digest[FY_DIGEST_LEN];
	uint8_t *buf;  /* block_size, aligned for O_DIRECT */
	uint8_t *cbuf; /* block_size */
	size_t clen;
	enum fy_codec codec;
	bool encoded; /* cbuf already holds the compressed form */
	struct blk *next;
};

struct queue {
	struct blk *head, *tail;
};

/* Digests being compressed or sent: a second block with one of them needs
 * no query and no second copy. Bounded by the pool. */
struct inflight {
	uint8_t (*d)[FY_DIGEST_LEN];
	unsigned n, cap;
};

/* A map entry waiting for every earlier block to finish. */
struct map_slot {
	bool ready;
	bool hole;
	uint8_t digest[FY_DIGEST_LEN];
};

struct pipeline {
	struct fy_source *src;
	const struct fy_pipeline_opts *opts;
	struct fy_session *sess;
	uint64_t nblocks;
	size_t block_size;

	pthread_mutex_t lock;
	pthread_cond_t cond_free;  /* a slot was freed / window moved */
	pthread_cond_t cond_work;  /* work for the workers */
	pthread_cond_t cond_net;   /* something for the network thread */
	struct blk *slots;
	unsigned nslots;
	struct queue free, hashq, compq, netq;
	bool stop;      /* everyone: give up */
	bool read_done; /* reader finished (or failed) */
	uint64_t bytes_read;
	int read_error;
	char read_msg[FY_ERR_MAX];
	/* Compress right after hashing, while the block is in the cache,
	 * when most recent blocks were missing from the repository (a first
	 * backup); after the query otherwise (an incremental, where most
	 * blocks are known and compressing them would be wasted). */
	bool speculate;
	int work_error; /* a worker's failure */
	char work_msg[FY_ERR_MAX];

	/* Owned by the network thread (the caller). */
	struct map_slot *window;
	uint64_t window_len;
	uint64_t next_emit;   /* first block whose map entry is not sent */
	uint64_t emit_limit;  /* the reader may not start block >= this */
	struct inflight in;   /* digests being compressed or sent */
	bool net_speculate;   /* speculate as last told to the workers */
	uint64_t finished;    /* blocks whose map entry is known */
	unsigned recent_missing; /* moving average of "missing" answers, /256 */

	struct fy_disk_stats *st;
	double start, last_progress;
};

static void q_push(struct queue *q, struct blk *b)
{
	b->next = NULL;
	if (q->tail)
		q->tail->next = b;
	else
		q->head = b;
	q->tail = b;
}

static struct blk *q_pop(struct queue *q)
{
	struct blk *b = q->head;

	if (b) {
		q->head = b->next;
		if (!q->head)
			q->tail = NULL;
	}
	return b;
}

/* ---- reader ------------------------------------------------------------ */

struct extent_map {
	uint64_t first;   /* block index of bits[0] */
	uint64_t count;
	uint8_t *has_data; /* one byte a block */
	size_t block_size;
};

static int mark_extent(void *opaque, uint64_t off, uint64_t len,
		       enum fy_extent_kind kind)
{
	struct extent_map *em = opaque;
	uint64_t b, e;

	if (kind != FY_EXTENT_DATA || len == 0)
		return 0;
	b = off / em->block_size;
	e = (off + len - 1) / em->block_size;
	for (; b <= e; b++)
		if (b >= em->first && b < em->first + em->count)
			em->has_data[b - em->first] = 1;
	return 0;
}

/* Which blocks of [first, first+count) hold data, as far as the source
 * knows; a source that cannot tell makes every block data. */
static int load_extents(struct pipeline *p, struct extent_map *em,
			uint64_t first, uint64_t count)
{
	uint64_t off = first * p->block_size;
	uint64_t len = count * p->block_size;
	int rc;

	em->first = first;
	em->count = count;
	if (off + len > p->src->size)
		len = p->src->size - off;
	memset(em->has_data, 0, count);
	rc = fy_source_extents(p->src, off, len, mark_extent, em);
	if (rc == -ENOTSUP) {
		memset(em->has_data, 1, count);
		return 0;
	}
	return rc;
}

/* Blocks the reader has started reading, in one batch of the source. */
struct read_batch {
	struct fy_io *ios;
	struct blk **blks;
	unsigned n;
};

/*
 * Takes the blocks from *i on into rb, up to depth of them that need
 * reading; holes go straight to the network thread. Waits for a free slot
 * only when may_wait (nothing in flight) and rb is still empty: a reader
 * that waited while holding unread blocks could wait for itself. Sets
 * *stop when the pipeline stops.
 */
static int gather(struct pipeline *p, struct extent_map *em, uint64_t *i,
		  struct read_batch *rb, unsigned depth, bool may_wait,
		  bool *stop)
{
	int rc = 0;

	rb->n = 0;
	while (rb->n < depth && *i < p->nblocks) {
		struct blk *b;
		bool data;

		if (*i >= em->first + em->count) {
			uint64_t cnt = p->nblocks - *i < EXTENT_WINDOW
					       ? p->nblocks - *i
					       : EXTENT_WINDOW;

			rc = load_extents(p, em, *i, cnt);
			if (rc < 0)
				break;
		}
		data = em->has_data[*i - em->first];
		pthread_mutex_lock(&p->lock);
		/* Do not start blocks the map window cannot hold. */
		while (!p->stop && (!p->free.head || *i >= p->emit_limit) &&
		       rb->n == 0 && may_wait)
			pthread_cond_wait(&p->cond_free, &p->lock);
		*stop = p->stop;
		if (p->stop || !p->free.head || *i >= p->emit_limit) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		b = q_pop(&p->free);
		b->index = *i;
		b->len = p->src->size - *i * p->block_size < p->block_size
				 ? p->src->size - *i * p->block_size
				 : p->block_size;
		if (!data) {
			b->state = p->opts->parent ? BLK_PARENT : BLK_HOLE;
			q_push(&p->netq, b);
			pthread_cond_signal(&p->cond_net);
		}
		pthread_mutex_unlock(&p->lock);
		(*i)++;
		if (!data)
			continue;
		b->state = BLK_READ;
		rb->blks[rb->n] = b;
		rb->ios[rb->n].buf = b->buf;
		/* O_DIRECT needs aligned lengths; the source fills what lies
		 * past the end with zeros. */
		rb->ios[rb->n].len = (b->len + p->src->align - 1) /
				     p->src->align * p->src->align;
		if (rb->ios[rb->n].len > p->block_size)
			rb->ios[rb->n].len = p->block_size;
		rb->ios[rb->n].offset = b->index * p->block_size;
		rb->n++;
	}
	return rc;
}

/* Hands rb's blocks to the workers when read, else back to the pool. */
static void deliver(struct pipeline *p, struct read_batch *rb, bool read,
		    bool *stop)
{
	unsigned k;

	pthread_mutex_lock(&p->lock);
	for (k = 0; k < rb->n; k++) {
		q_push(read ? &p->hashq : &p->free, rb->blks[k]);
		if (read)
			p->bytes_read += rb->blks[k]->len;
	}
	if (rb->n)
		pthread_cond_broadcast(read ? &p->cond_work : &p->cond_free);
	*stop = p->stop;
	pthread_mutex_unlock(&p->lock);
	rb->n = 0;
}

static int read_failed(struct pipeline *p, struct read_batch *rb, int rc)
{
	return fy_err_wrap(rc, "reading %s at offset %" PRIu64, p->src->name,
			   rb->blks[0]->index * p->block_size);
}

/* The reader's first failure is the disk's: a later one would overwrite
 * its message. Returns the failure to keep. */
static int first_failure(int rc, int new_rc, char *msg, size_t len)
{
	if (rc < 0 || new_rc >= 0)
		return rc;
	snprintf(msg, len, "%s", fy_err_msg());
	return new_rc;
}

/*
 * Two batches in flight: the next one is started before the previous one
 * is waited for, so the source's queue stays full while a batch finishes
 * (start A, start B, wait A, start C, wait B, ...).
 */
static void *reader_main(void *arg)
{
	struct pipeline *p = arg;
	unsigned depth = p->opts->queue_depth ? p->opts->queue_depth : 8;
	struct extent_map em = { .block_size = p->block_size };
	struct read_batch rb[2] = { { 0 } };
	struct read_batch *cur = &rb[0], *prev = &rb[1];
	bool in_flight = false; /* prev is started, not waited for */
	bool stop = false;
	char msg[FY_ERR_MAX] = "";
	uint64_t i = 0;
	unsigned k;
	int rc = 0;

	em.has_data = malloc(EXTENT_WINDOW);
	for (k = 0; k < 2; k++) {
		rb[k].ios = calloc(depth, sizeof(*rb[k].ios));
		rb[k].blks = calloc(depth, sizeof(*rb[k].blks));
	}
	if (!em.has_data || !rb[0].ios || !rb[0].blks || !rb[1].ios ||
	    !rb[1].blks)
		rc = first_failure(rc, fy_err_set(-ENOMEM, "out of memory"),
				   msg, sizeof(msg));
	em.count = 0;
	while (rc == 0 || in_flight) {
		struct read_batch *t;
		bool started = false;
		int r;

		if (rc == 0 && !stop && i < p->nblocks)
			rc = first_failure(rc, gather(p, &em, &i, cur, depth,
						      !in_flight, &stop),
					   msg, sizeof(msg));
		if (rc == 0 && cur->n) {
			r = fy_source_start(p->src, cur->ios, cur->n);
			if (r < 0)
				r = read_failed(p, cur, r);
			rc = first_failure(rc, r, msg, sizeof(msg));
			started = r == 0;
		}
		if (!started)
			deliver(p, cur, false, &stop);
		if (in_flight) {
			r = fy_source_wait(p->src, prev->ios, prev->n);
			if (r < 0)
				r = read_failed(p, prev, r);
			deliver(p, prev, r == 0 && rc == 0, &stop);
			rc = first_failure(rc, r, msg, sizeof(msg));
		}
		in_flight = started;
		if (!in_flight && (stop || i >= p->nblocks))
			break;
		t = cur;
		cur = prev;
		prev = t;
	}
	pthread_mutex_lock(&p->lock);
	p->read_done = true;
	if (rc < 0) {
		p->read_error = rc;
		snprintf(p->read_msg, sizeof(p->read_msg), "%s", msg);
	}
	pthread_cond_broadcast(&p->cond_net);
	pthread_mutex_unlock(&p->lock);
	for (k = 0; k < 2; k++) {
		free(rb[k].ios);
		free(rb[k].blks);
	}
	free(em.has_data);
	return NULL;
}

/* ---- workers ----------------------------------------------------------- */

/* A worker could not process b: the disk fails (the network thread reports
 * it) and the slot goes back to the pool. */
static void pipeline_fail(struct pipeline *p, struct blk *b)
{
	pthread_mutex_lock(&p->lock);
	if (!p->work_error) {
		p->work_error = fy_err_wrap(-ENOMEM, "block %" PRIu64, b->index);
		snprintf(p->work_msg, sizeof(p->work_msg), "%s", fy_err_msg());
	}
	q_push(&p->free, b);
	pthread_cond_broadcast(&p->cond_net);
	pthread_cond_broadcast(&p->cond_free);
	pthread_mutex_unlock(&p->lock);
}

static void encode_block(struct pipeline *p, struct blk *b)
{
	/* cbuf holds block_size: a block that does not shrink is kept raw
	 * by the codec. */
	if (fy_block_encode_ex(b->buf, b->len, p->opts->compression_level,
			       p->opts->compression_probe, b->cbuf,
			       p->block_size, &b->clen, &b->codec) < 0) {
		memcpy(b->cbuf, b->buf, b->len);
		b->clen = b->len;
		b->codec = FY_CODEC_NONE;
	}
	b->encoded = true;
}

static void *worker_main(void *arg)
{
	struct pipeline *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct blk *b;
		bool speculate;

		/* Compression first: it frees slots sooner. */
		while (!p->stop && !p->compq.head && !p->hashq.head)
			pthread_cond_wait(&p->cond_work, &p->lock);
		if (p->stop)
			break;
		b = q_pop(&p->compq);
		if (!b)
			b = q_pop(&p->hashq);
		speculate = p->speculate;
		pthread_mutex_unlock(&p->lock);

		if (b->state == BLK_READ) {
			if (fy_is_zero(b->buf, b->len)) {
				b->state = BLK_HOLE;
			} else if (fy_sha256(b->buf, b->len, b->digest) < 0) {
				pipeline_fail(p, b);
				pthread_mutex_lock(&p->lock);
				continue;
			} else {
				b->state = BLK_HASHED;
				b->encoded = false;
				if (speculate)
					encode_block(p, b);
			}
		} else {
			encode_block(p, b);
			b->state = BLK_COMPRESSED;
		}

		pthread_mutex_lock(&p->lock);
		q_push(&p->netq, b);
		pthread_cond_signal(&p->cond_net);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* ---- network side (the calling thread) --------------------------------- */

/* Records block index's map entry and hands every entry now in order to
 * the session. */
static int finish_block(struct pipeline *p, uint64_t index, bool hole,
			const uint8_t *digest)
{
	struct map_slot *s = &p->window[index % p->window_len];
	int rc = 0;

	s->ready = true;
	s->hole = hole;
	if (!hole)
		memcpy(s->digest, digest, FY_DIGEST_LEN);
	p->finished++;
	while (rc == 0 && p->next_emit < p->nblocks) {
		s = &p->window[p->next_emit % p->window_len];
		if (!s->ready)
			break;
		rc = fy_session_map(p->sess, s->hole ? NULL : s->digest);
		s->ready = false;
		p->next_emit++;
	}
	return rc;
}

static void release(struct pipeline *p, struct blk *b)
{
	pthread_mutex_lock(&p->lock);
	q_push(&p->free, b);
	p->emit_limit = p->next_emit + p->window_len;
	pthread_cond_broadcast(&p->cond_free);
	pthread_mutex_unlock(&p->lock);
}

/* Sends b (compressed), then records its map entry; the slot goes back
 * to the pool either way. */
static int put_block(struct pipeline *p, struct blk *b)
{
	int rc;

	p->st->bytes_new += b->len;
	p->st->bytes_sent += b->clen;
	p->st->blocks_sent++;
	rc = fy_session_put(p->sess, b->digest, (uint32_t)b->len,
			    (uint32_t)b->codec, b->cbuf, b->clen);
	if (rc == 0)
		rc = finish_block(p, b->index, false, b->digest);
	release(p, b);
	return rc;
}

static bool inflight_has(const struct inflight *in, const uint8_t *d)
{
	unsigned i;

	for (i = 0; i < in->n; i++)
		if (!memcmp(in->d[i], d, FY_DIGEST_LEN))
			return true;
	return false;
}

static void inflight_del(struct inflight *in, const uint8_t *d)
{
	unsigned i;

	for (i = 0; i < in->n; i++) {
		if (!memcmp(in->d[i], d, FY_DIGEST_LEN)) {
			memcpy(in->d[i], in->d[--in->n], FY_DIGEST_LEN);
			return;
		}
	}
}

/* The session's answer about block b (the tag): a block the repository
 * lacks goes to the workers for compression (or out at once when already
 * compressed); the rest are done. */
static int on_answer(void *opaque, void *tag, bool missing)
{
	struct pipeline *p = opaque;
	struct blk *b = tag;
	bool speculate;
	int rc;

	/* missing is the session's answer: a block put since its query went
	 * out counts as present, here as for sending. */
	p->recent_missing = p->recent_missing * 7 / 8 + (missing ? 32 : 0);
	/* recent_missing is a moving average scaled to 256: speculate while
	 * more than half of the recent blocks were new. */
	speculate = p->recent_missing > 128;
	if (speculate != p->net_speculate) {
		p->net_speculate = speculate;
		pthread_mutex_lock(&p->lock);
		p->speculate = speculate;
		pthread_mutex_unlock(&p->lock);
	}
	/* Two blocks of one batch may share a digest. */
	if (missing && !inflight_has(&p->in, b->digest)) {
		if (b->encoded)
			return put_block(p, b); /* compressed on speculation */
		memcpy(p->in.d[p->in.n++], b->digest, FY_DIGEST_LEN);
		pthread_mutex_lock(&p->lock);
		b->state = BLK_COMPRESS;
		q_push(&p->compq, b);
		pthread_cond_signal(&p->cond_work);
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	p->st->bytes_dedup += b->len;
	rc = finish_block(p, b->index, false, b->digest);
	release(p, b);
	return rc;
}

static void report(struct pipeline *p, bool done)
{
	double now = fy_now();

	if (!p->opts->progress || (!done && now - p->last_progress < 0.5))
		return;
	p->last_progress = now;
	p->st->seconds = now - p->start;
	pthread_mutex_lock(&p->lock);
	p->st->bytes_read = p->bytes_read;
	pthread_mutex_unlock(&p->lock);
	p->opts->progress(p->opts->progress_opaque, p->st, done);
}

static int network_loop(struct pipeline *p)
{
	int rc = 0;

	while (p->finished < p->nblocks) {
		struct blk *b;
		bool answer = false;

		pthread_mutex_lock(&p->lock);
		while (!p->netq.head && !(p->read_done && p->read_error) &&
		       !p->work_error) {
			if (fy_session_batched(p->sess)) {
				struct timespec ts;

				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_nsec += QUERY_WAIT_NS;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
				if (pthread_cond_timedwait(&p->cond_net, &p->lock,
							   &ts) == ETIMEDOUT)
					break;
			} else if (fy_session_outstanding(p->sess)) {
				/* Nothing to send: read the oldest reply. */
				answer = true;
				break;
			} else {
				/* Let the repository see what we queued. */
				pthread_mutex_unlock(&p->lock);
				rc = fy_session_flush(p->sess);
				pthread_mutex_lock(&p->lock);
				if (rc < 0 || p->netq.head || p->work_error ||
				    (p->read_done && p->read_error))
					break;
				pthread_cond_wait(&p->cond_net, &p->lock);
			}
		}
		if (p->read_done && p->read_error) {
			rc = fy_err_set(p->read_error, "%s", p->read_msg);
			pthread_mutex_unlock(&p->lock);
			break;
		}
		if (p->work_error) {
			rc = fy_err_set(p->work_error, "%s", p->work_msg);
			pthread_mutex_unlock(&p->lock);
			break;
		}
		b = answer ? NULL : q_pop(&p->netq);
		pthread_mutex_unlock(&p->lock);
		if (rc < 0)
			break;
		if (p->opts->cancel && atomic_load(p->opts->cancel)) {
			rc = fy_err_set(-ECANCELED, "cancelled");
			if (b)
				release(p, b);
			break;
		}

		if (answer) {
			rc = fy_session_answer(p->sess);
			if (rc < 0)
				break;
			continue;
		}
		if (!b) {
			/* Nothing new for a while: ask about what we have. */
			rc = fy_session_have_flush(p->sess);
			if (rc < 0)
				break;
			continue;
		}
		switch (b->state) {
		case BLK_HOLE:
			p->st->bytes_zero += b->len;
			rc = finish_block(p, b->index, true, NULL);
			release(p, b);
			break;
		case BLK_PARENT: {
			const struct fy_parent_map *pm = p->opts->parent;

			p->st->bytes_unchanged += b->len;
			rc = finish_block(p, b->index, pm->hole[b->index] != 0,
					  pm->digest[b->index]);
			release(p, b);
			break;
		}
		case BLK_HASHED:
			if (inflight_has(&p->in, b->digest)) {
				p->st->bytes_dedup += b->len;
				rc = finish_block(p, b->index, false, b->digest);
				release(p, b);
				break;
			}
			rc = fy_session_have(p->sess, b->digest, b);
			break;
		case BLK_COMPRESSED: {
			uint8_t d[FY_DIGEST_LEN];

			/* Still in flight while it is put (replies read
			 * meanwhile must not ask for it again); the slot may
			 * be refilled once put. */
			memcpy(d, b->digest, FY_DIGEST_LEN);
			rc = put_block(p, b);
			inflight_del(&p->in, d);
			break;
		}
		default:
			rc = fy_err_set(-EINVAL, "internal: block %" PRIu64
					" in state %d on the network queue",
					b->index, b->state);
		}
		if (rc < 0)
			break;
		report(p, false);
	}
	return rc;
}

int fy_pipeline_run(struct fy_session *sess, struct fy_source *src,
		    uint32_t disk_index, const char *label,
		    const struct fy_pipeline_opts *opts,
		    struct fy_disk_stats *st)
{
	struct fy_disk_begin bd = {
		.index = disk_index, .label = label, .size = src->size,
		.change_id = opts->change_id, .transport = src->ops->name,
		.disk_id = opts->disk_id,
	};
	struct pipeline p = {
		.src = src, .opts = opts, .sess = sess,
		.block_size = opts->block_size, .st = st,
	};
	unsigned nworkers = opts->workers ? opts->workers : 2;
	pthread_t reader, *workers = NULL;
	unsigned i, started = 0;
	bool reader_started = false;
	int rc;

	memset(st, 0, sizeof(*st));
	st->size = src->size;
	p.nblocks = (src->size + p.block_size - 1) / p.block_size;
	if (opts->parent && opts->parent->n != p.nblocks)
		return fy_err_set(-EINVAL, "disk %u (%s): the parent map has "
				  "%" PRIu64 " blocks, the disk %" PRIu64,
				  disk_index, label, opts->parent->n,
				  p.nblocks);
	st->blocks = p.nblocks;
	p.nslots = POOL_BYTES / (2 * p.block_size);
	if (p.nslots < POOL_MIN)
		p.nslots = POOL_MIN;
	if (p.nslots > POOL_MAX)
		p.nslots = POOL_MAX;
	p.window_len = (uint64_t)p.nslots * WINDOW_FACTOR;
	/* Until the repository answers, assume a first backup. */
	p.recent_missing = 256;
	p.speculate = true;
	p.net_speculate = true;
	p.emit_limit = p.window_len;
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.cond_free, NULL);
	pthread_cond_init(&p.cond_work, NULL);
	pthread_cond_init(&p.cond_net, NULL);

	p.slots = calloc(p.nslots, sizeof(*p.slots));
	p.window = calloc(p.window_len, sizeof(*p.window));
	p.in.cap = p.nslots;
	p.in.d = calloc(p.in.cap, FY_DIGEST_LEN);
	workers = calloc(nworkers, sizeof(*workers));
	if (!p.slots || !p.window || !p.in.d || !workers) {
		rc = fy_err_set(-ENOMEM, "out of memory for the block pool");
		goto out;
	}
	for (i = 0; i < p.nslots; i++) {
		p.slots[i].buf = fy_aligned_alloc(p.block_size);
		p.slots[i].cbuf = malloc(p.block_size);
		if (!p.slots[i].buf || !p.slots[i].cbuf) {
			rc = fy_err_set(-ENOMEM, "out of memory for the block pool");
			goto out;
		}
		q_push(&p.free, &p.slots[i]);
	}

	rc = fy_session_begin_disk(sess, &bd, on_answer, &p);
	if (rc < 0)
		goto out;
	p.start = fy_now();
	if (pthread_create(&reader, NULL, reader_main, &p) != 0) {
		rc = fy_err_set(-EAGAIN, "cannot start the reader thread");
		goto out;
	}
	reader_started = true;
	for (started = 0; started < nworkers; started++)
		if (pthread_create(&workers[started], NULL, worker_main, &p) != 0)
			break;
	if (!started) {
		rc = fy_err_set(-EAGAIN, "cannot start worker threads");
		goto stop;
	}
	rc = network_loop(&p);
	if (rc == 0)
		rc = fy_session_end_disk(sess);
stop:
	pthread_mutex_lock(&p.lock);
	p.stop = true;
	pthread_cond_broadcast(&p.cond_work);
	pthread_cond_broadcast(&p.cond_free);
	pthread_mutex_unlock(&p.lock);
	if (reader_started)
		pthread_join(reader, NULL);
	for (i = 0; i < started; i++)
		pthread_join(workers[i], NULL);
	report(&p, true);
	st->seconds = fy_now() - p.start;
	st->bytes_read = p.bytes_read;
	if (rc < 0)
		fy_err_wrap(rc, "disk %u (%s)", disk_index, label);
out:
	for (i = 0; p.slots && i < p.nslots; i++) {
		free(p.slots[i].buf);
		free(p.slots[i].cbuf);
	}
	free(p.slots);
	free(p.window);
	free(p.in.d);
	free(workers);
	return rc;
}

/* ---- a source whose extents come from CBT ------------------------------- */

struct area_source {
	struct fy_source_wrap w; /* first: reads go to the inner source */
	struct fy_source_ops ops; /* the inner source's, but for extents */
	struct fy_area *areas;
	size_t n;
};

/* Reports [offset, offset+length) as the areas' data and zeros between. */
static int area_extents(struct fy_source *src, uint64_t offset,
			uint64_t length, fy_extent_cb cb, void *opaque)
{
	struct area_source *a = (struct area_source *)src;
	uint64_t pos = offset, end = offset + length;
	size_t i;
	int rc;

	for (i = 0; i < a->n && pos < end; i++) {
		uint64_t s = a->areas[i].start;
		uint64_t e = s + a->areas[i].length;

		if (e <= pos)
			continue;
		if (s >= end)
			break;
		if (s > pos) {
			rc = cb(opaque, pos, s - pos, FY_EXTENT_ZERO);
			if (rc)
				return rc;
			pos = s;
		}
		if (e > end)
			e = end;
		rc = cb(opaque, pos, e - pos, FY_EXTENT_DATA);
		if (rc)
			return rc;
		pos = e;
	}
	if (pos < end)
		return cb(opaque, pos, end - pos, FY_EXTENT_ZERO);
	return 0;
}

static void area_close(struct fy_source *src)
{
	struct area_source *a = (struct area_source *)src;

	free(a->areas);
	free(a);
}

int fy_area_source_wrap(struct fy_source *src, struct fy_area *areas,
			size_t n, struct fy_source **out)
{
	struct area_source *a = calloc(1, sizeof(*a));

	if (!a)
		return fy_err_set(-ENOMEM, "out of memory");
	a->w.inner = src;
	a->areas = areas;
	a->n = n;
	/* Users see the transport that really reads. */
	a->ops.name = src->ops->name;
	a->ops.read = fy_source_wrap_read;
	a->ops.read_batch = fy_source_wrap_read_batch;
	a->ops.start = fy_source_wrap_start;
	a->ops.wait = fy_source_wrap_wait;
	a->ops.extents = area_extents;
	a->ops.close = area_close;
	a->w.base = *src;
	a->w.base.ops = &a->ops;
	*out = &a->w.base;
	return 0;
}
