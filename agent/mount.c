/*
 * ferry mount: one disk of a backup as a read-only NBD export, read from
 * the repository on demand (instant access, file-level restore).
 *
 * Served by `ferry`, not by ferry-repo: the export reads the repository as
 * the user who runs it, so the repository's rules (who may read which
 * backup, docs/SECURITY.md) and its audit log apply unchanged, and the
 * export runs where the admin needs it. Every block is re-hashed before
 * it is served; one that does not match is an EIO on that read, never
 * wrong bytes. A bounded cache of decoded blocks keeps re-reads local.
 *
 * The costs a read avoids: a Block is decoded straight from the
 * connection's receive buffer (fy_conn_recv_block), a structured reply is
 * sent straight from the pinned cache slot (mount_lend), and a read that
 * waits for a block another read is loading sleeps on that slot's own
 * condition, so a loaded block wakes only its readers.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "nbd/nbd.h"

/* Cache slots at most, whatever --cache-mb says: lookups are linear. */
#define CACHE_SLOTS_MAX 4096
/* Connections to the repository: reads of different blocks fetch and
 * decode at once, up to this many (the NBD server serves each client
 * connection with NBD_WORKERS threads: nbdcopy opens 4 connections). */
#define POOL_MAX 8
/* Reads served at once per NBD client: with several in flight a client's
 * fetches overlap their network waits with other reads' decoding. */
#define NBD_WORKERS 16
/* Blocks a fetching read asks for past its own end, when the reader goes
 * forward (the block before it is cached or loading). */
#define READ_AHEAD 4

enum slot_state { SLOT_EMPTY, SLOT_LOADING, SLOT_READY };

struct slot {
	uint64_t index;         /* block index; meaningful unless EMPTY */
	enum slot_state state;
	unsigned refs;          /* reads that need it: not evicted */
	uint64_t stamp;         /* last use, for eviction */
	uint8_t *data;          /* block_size bytes, decoded and verified */
	/* Told when a LOADING slot is loaded or lost: only the reads
	 * waiting for this block wake. */
	pthread_cond_t done;
};

struct mount {
	const struct fy_settings *settings;
	const char *backup_id;
	uint32_t disk;
	struct fy_parent_map map;
	uint64_t size;
	uint32_t block_size;

	/* The cache and the pool's bookkeeping; never held over the
	 * network or a decode. */
	pthread_mutex_t lock;
	/* Reads waiting for slots to come free; told only when some wait. */
	pthread_cond_t cond;
	unsigned space_waiters;
	pthread_cond_t pool_cond; /* a connection back */
	struct fy_conn *pool[POOL_MAX]; /* NULL: connect when taken */
	bool pool_busy[POOL_MAX];
	struct slot *slots;
	unsigned n_slots;
	uint64_t clock;
	uint64_t fetched, hits;
	/* Slots lent to replies being sent, and the most that may be: the
	 * rest always fits a largest read that copies. */
	unsigned lent, lend_max;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static struct slot *cache_find(struct mount *m, uint64_t index)
{
	unsigned i;

	for (i = 0; i < m->n_slots; i++)
		if (m->slots[i].state != SLOT_EMPTY &&
		    m->slots[i].index == index)
			return &m->slots[i];
	return NULL;
}

/* The least recently used slot nobody needs, or NULL. */
static struct slot *cache_victim(struct mount *m)
{
	struct slot *best = NULL;
	unsigned i;

	for (i = 0; i < m->n_slots; i++) {
		struct slot *s = &m->slots[i];

		if (s->refs || s->state == SLOT_LOADING)
			continue;
		if (s->state == SLOT_EMPTY)
			return s;
		if (!best || s->stamp < best->stamp)
			best = s;
	}
	return best;
}

static unsigned cache_free_slots(struct mount *m)
{
	unsigned i, n = 0;

	for (i = 0; i < m->n_slots; i++)
		n += !m->slots[i].refs && m->slots[i].state != SLOT_LOADING;
	return n;
}

static uint32_t block_len(const struct mount *m, uint64_t index)
{
	uint64_t off = index * m->block_size;

	return m->size - off < m->block_size ? (uint32_t)(m->size - off)
					     : m->block_size;
}

/* A connection of the pool (connected when needed), or -errno. */
static int pool_take(struct mount *m, int *which)
{
	int i, rc = 0;

	pthread_mutex_lock(&m->lock);
	for (;;) {
		for (i = 0; i < POOL_MAX && m->pool_busy[i]; i++)
			;
		if (i < POOL_MAX)
			break;
		pthread_cond_wait(&m->pool_cond, &m->lock);
	}
	m->pool_busy[i] = true;
	pthread_mutex_unlock(&m->lock);
	if (!m->pool[i]) {
		rc = fy_repo_connect(m->settings, "ferry " FERRY_VERSION,
				     &m->pool[i], NULL, 0);
		if (rc == 0)
			rc = fy_client_open_disk(m->pool[i], m->backup_id,
						 m->disk);
		if (rc < 0 && m->pool[i]) {
			fy_conn_close(m->pool[i]);
			m->pool[i] = NULL;
		}
	}
	if (rc < 0) {
		pthread_mutex_lock(&m->lock);
		m->pool_busy[i] = false;
		pthread_cond_signal(&m->pool_cond);
		pthread_mutex_unlock(&m->lock);
		return rc;
	}
	*which = i;
	return 0;
}

/* Gives a connection back; one whose stream broke is closed (the next
 * taker connects again). */
static void pool_give(struct mount *m, int i, bool broken)
{
	if (broken) {
		fy_conn_close(m->pool[i]);
		m->pool[i] = NULL;
	}
	pthread_mutex_lock(&m->lock);
	m->pool_busy[i] = false;
	pthread_cond_signal(&m->pool_cond);
	pthread_mutex_unlock(&m->lock);
}

/* A slot this read loaded is READY (decoded and verified) or EMPTY again;
 * whoever waits for it is told at once, not when the whole fetch ends. */
static void loaded(struct mount *m, struct slot *s, bool ok)
{
	pthread_mutex_lock(&m->lock);
	s->state = ok ? SLOT_READY : SLOT_EMPTY;
	m->fetched += ok;
	pthread_cond_broadcast(&s->done);
	if (m->space_waiters)
		pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/* Fetches the n blocks of slots[] (LOADING, owned by this read) in
 * GetBlocks requests of up to FY_GET_MAX, decoding each into its slot and
 * publishing it as it is done (loaded()). The first `need` are the read's
 * own; a bad block past them (read ahead) is left EMPTY without failing
 * the read. Outside the cache lock. */
static int fetch(struct mount *m, struct slot **slots, size_t n, size_t need)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__GetBlocks gb = FERRY__GET_BLOCKS__INIT;
	ProtobufCBinaryData bins[FY_GET_MAX];
	size_t done = 0;
	int rc = 0, bad = 0, c;
	/* The first bad block of the read's own, named: later messages (a
	 * read-ahead block's, a broken stream's) must not replace it. */
	char bad_msg[FY_ERR_MAX] = "";

	rc = pool_take(m, &c);
	if (rc < 0) {
		for (done = 0; done < n; done++)
			loaded(m, slots[done], false);
		return rc;
	}
	while (done < n && rc == 0) {
		size_t k, batch = n - done < FY_GET_MAX ? n - done : FY_GET_MAX;

		for (k = 0; k < batch; k++) {
			bins[k].data = m->map.digest[slots[done + k]->index];
			bins[k].len = FY_DIGEST_LEN;
		}
		gb.digests = bins;
		gb.n_digests = batch;
		f.body_case = FERRY__FRAME__BODY_GET_BLOCKS;
		f.get_blocks = &gb;
		rc = fy_conn_send(m->pool[c], &f);
		if (rc == 0)
			rc = fy_conn_flush(m->pool[c]);
		for (k = 0; rc == 0 && k < batch; k++) {
			struct slot *s = slots[done + k];
			uint32_t want = block_len(m, s->index);
			struct fy_block_view v;
			fy_frame *b = NULL;
			char hex[FY_DIGEST_HEX];
			bool ok = false, have;
			int brc = 0;

			/* Read in place: decoded straight from the
			 * connection's buffer, no copy of the block. */
			rc = fy_conn_recv_block(m->pool[c], &v, &b);
			if (rc < 0)
				break;
			/* A Block in another encoding, decoded by
			 * protobuf-c, is read through the same view. */
			have = rc == 1 ||
			       b->body_case == FERRY__FRAME__BODY_BLOCK;
			if (rc == 0 && have)
				fy_block_view_of(b->block, &v);
			rc = 0;
			if (!have && b->body_case == FERRY__FRAME__BODY_ERROR) {
				rc = fy_err_set(b->error->code < 0
							? b->error->code
							: -EIO,
						"repository: %s",
						b->error->message);
			} else if (!have) {
				rc = fy_err_set(-EPROTO, "repository sent %s "
						"for a block", fy_frame_name(b));
			} else if (memcmp(v.digest, bins[k].data,
					  FY_DIGEST_LEN)) {
				rc = fy_err_set(-EPROTO, "repository sent "
						"another block");
			} else if (v.plain_size != want) {
				fy_hex(bins[k].data, FY_DIGEST_LEN, hex);
				brc = fy_err_set(-EIO, "block %s is %u bytes, "
						 "not %u", hex, v.plain_size,
						 want);
			} else {
				/* Decoding re-hashes: a corrupt block is an
				 * error for the reads that need it, and the
				 * stream stays in order. */
				brc = fy_block_decode((enum fy_codec)v.codec,
						      v.data, v.data_len,
						      v.plain_size,
						      bins[k].data, s->data,
						      m->block_size);
				if (brc == 0)
					ok = true;
				else
					brc = fy_err_wrap(-EIO, "block %" PRIu64
							  " of the disk",
							  s->index);
			}
			/* A bad block of the read's own: the first is its
			 * error (read-ahead blocks fail no read). */
			if (brc < 0 && done + k < need && !bad) {
				bad = brc;
				snprintf(bad_msg, sizeof(bad_msg), "%s",
					 fy_err_msg());
			}
			fy_frame_free(b);
			loaded(m, s, ok);
		}
		/* A broken stream: what was not received is not loaded. */
		for (; k < batch; k++)
			loaded(m, slots[done + k], false);
		done += batch;
	}
	for (; done < n; done++)
		loaded(m, slots[done], false);
	/* A bad block leaves the stream in order: only a broken stream
	 * closes the connection. */
	pool_give(m, c, rc < 0);
	if (bad)
		return fy_err_set(bad, "%s", bad_msg);
	return rc < 0 ? rc : 0;
}

/* Whether slot s is one of the n this read fetched for itself. */
static bool loaded_here(struct slot *const *load, size_t n,
			const struct slot *s)
{
	size_t k;

	for (k = 0; k < n; k++)
		if (load[k] == s)
			return true;
	return false;
}

/* Drops the pins of blocks first.. (nb of them; NULL for holes). */
static void unpin_blocks(struct mount *m, struct slot **pin, size_t nb)
{
	size_t k;

	pthread_mutex_lock(&m->lock);
	for (k = 0; k < nb; k++)
		if (pin[k])
			pin[k]->refs--;
	if (m->space_waiters)
		pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/* Pins blocks first..last (pin[i - first]; NULL for a hole), each READY:
 * fetched, or waited for while another read fetches it. A fetch also asks
 * for the next `want` blocks past last (the rest of the client's read),
 * and for `may` (read-ahead) when the reader goes forward: the block
 * before first is cached or loading. A random read fetches only what it
 * asks for. On failure nothing stays pinned and the error names the
 * block. */
static int pin_blocks(struct mount *m, uint64_t first, uint64_t last,
		      unsigned want, unsigned may, struct slot **pin)
{
	size_t nb = (size_t)(last - first + 1), mine = 0, own;
	unsigned most = want > may ? want : may, ahead;
	struct slot *load_small[1 + FY_GET_MAX];
	struct slot **load = nb + most <= 1 + FY_GET_MAX
				     ? load_small
				     : calloc(nb + most, sizeof(*load));
	uint64_t i, k;
	int rc = 0, frc = 0;

	if (!load)
		return fy_err_set(-ENOMEM, "out of memory");
	memset(pin, 0, nb * sizeof(*pin));
	/* Pin every block of the read at once: cached or loading ones are
	 * shared, missing ones get a slot this read loads. A read fits the
	 * cache (fy_mount_run sizes it so, and loans leave room for it);
	 * when too many slots are pinned by other reads, wait for them
	 * rather than evict what they need. The free slots that count are
	 * those holding none of this read's blocks: the read pins its own
	 * first, so they are not there to be taken. */
	pthread_mutex_lock(&m->lock);
	for (;;) {
		unsigned need = 0, own_free = 0;

		for (i = first; i <= last; i++) {
			struct slot *s;

			if (m->map.hole[i])
				continue;
			s = cache_find(m, i);
			if (!s)
				need++;
			else if (!s->refs && s->state == SLOT_READY)
				own_free++;
		}
		if (need <= cache_free_slots(m) - own_free)
			break;
		m->space_waiters++;
		pthread_cond_wait(&m->cond, &m->lock);
		m->space_waiters--;
	}
	for (i = first; i <= last; i++) {
		struct slot *s;

		if (m->map.hole[i] || !(s = cache_find(m, i)))
			continue;
		m->hits += s->state == SLOT_READY;
		s->refs++;
		s->stamp = ++m->clock;
		pin[i - first] = s;
	}
	for (i = first; i <= last; i++) {
		struct slot *s;

		if (m->map.hole[i] || pin[i - first])
			continue;
		/* Counted above: a free slot holding none of the read's. */
		s = cache_victim(m);
		if (!s) {
			pthread_mutex_unlock(&m->lock);
			rc = fy_err_set(-EIO, "mount: no cache slot for block "
					"%" PRIu64, i);
			for (k = 0; k < mine; k++)
				loaded(m, load[k], false);
			pthread_mutex_lock(&m->lock);
			goto unlock;
		}
		s->index = i;
		s->state = SLOT_LOADING;
		s->refs++;
		s->stamp = ++m->clock;
		pin[i - first] = s;
		load[mine++] = s;
	}
	/* A read that fetches reads ahead: the next blocks of the disk that
	 * are neither holes nor cached nor loading come in the same
	 * request, while slots nobody needs are free for them. A sequential
	 * reader's next reads then find them loaded or loading. They are not
	 * pinned: LOADING keeps them, and once READY they are cache. */
	own = mine;
	ahead = want;
	if (may > ahead && (first == 0 || m->map.hole[first - 1] ||
			    cache_find(m, first - 1)))
		ahead = may;
	for (i = last + 1, k = 0; mine && k < ahead && i < m->map.n;
	     i++, k++) {
		struct slot *s;

		if (m->map.hole[i] || cache_find(m, i))
			continue;
		s = cache_victim(m);
		if (!s || s->refs)
			break;
		s->index = i;
		s->state = SLOT_LOADING;
		s->stamp = ++m->clock;
		load[mine++] = s;
	}
	pthread_mutex_unlock(&m->lock);

	if (mine)
		frc = fetch(m, load, mine, own);

	/* Wait for the blocks other reads are loading. A block this read
	 * fetched and lost fails it with fetch()'s error, which names it. A
	 * block another read was loading (its own, or read ahead) and lost
	 * (its stream broke, say) is fetched once more by this read: that
	 * fetch's outcome is this read's. */
	pthread_mutex_lock(&m->lock);
	for (i = first; rc == 0 && i <= last; i++) {
		struct slot *s = pin[i - first];
		bool again = false;

		while (s) {
			while (s->state == SLOT_LOADING)
				pthread_cond_wait(&s->done, &m->lock);
			if (s->state == SLOT_READY && s->index == i)
				break;
			if (!again && !loaded_here(load, own, s)) {
				/* Pinned: nobody else takes the slot. */
				again = true;
				s->index = i;
				s->state = SLOT_LOADING;
				s->stamp = ++m->clock;
				pthread_mutex_unlock(&m->lock);
				rc = fetch(m, &s, 1, 1);
				pthread_mutex_lock(&m->lock);
				if (rc < 0)
					break;
				continue;
			}
			rc = frc < 0 ? frc
				     : fy_err_set(-EIO, "block %" PRIu64
						  " of the disk could not be "
						  "read", i);
			break;
		}
	}
unlock:
	pthread_mutex_unlock(&m->lock);

	if (load != load_small)
		free(load);
	if (rc < 0)
		unpin_blocks(m, pin, nb);
	return rc;
}

static int mount_read(void *opaque, uint64_t offset, uint32_t len, void *buf)
{
	struct mount *m = opaque;
	uint64_t first = offset / m->block_size;
	uint64_t last = (offset + len - 1) / m->block_size;
	size_t nb = (size_t)(last - first + 1);
	struct slot **pin = calloc(nb, sizeof(*pin));
	uint64_t i, pos = offset, end = offset + len;
	uint8_t *out = buf;
	int rc;

	if (!pin)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = pin_blocks(m, first, last, 0, READ_AHEAD, pin);
	/* Pinned slots stay as they are: copied without the lock. */
	for (i = first; rc == 0 && i <= last; i++) {
		uint64_t bstart = i * m->block_size;
		uint64_t from = pos - bstart;
		uint64_t n = block_len(m, i) - from;
		struct slot *s = pin[i - first];

		if (n > end - pos)
			n = end - pos;
		if (!s)
			memset(out, 0, n);
		else
			memcpy(out, s->data + from, n);
		out += n;
		pos += n;
	}
	if (rc == 0)
		unpin_blocks(m, pin, nb);
	free(pin);
	if (rc < 0)
		fy_warn("mount: read of %u bytes at %" PRIu64 ": %s", len,
			offset, fy_err_msg());
	return rc;
}

/* A read's data straight from its cache slot (the NBD server sends the
 * reply from it): the bytes at offset up to the end of their block. A
 * fetch asks for the rest of the read too, and reads ahead as any read.
 * A loan stays pinned while its reply waits for the client, so at most
 * lend_max are out; past that the server copies (*lent = 0). */
static int mount_lend(void *opaque, uint64_t offset, uint32_t len,
		      const uint8_t **data, uint32_t *lent, void **token)
{
	struct mount *m = opaque;
	uint64_t i = offset / m->block_size;
	uint64_t from = offset - i * m->block_size;
	uint64_t n = block_len(m, i) - from;
	uint64_t rest = (offset + len - 1) / m->block_size - i;
	unsigned want = (unsigned)(rest < FY_GET_MAX - 1 ? rest
							 : FY_GET_MAX - 1);
	struct slot *s = NULL;
	int rc;

	*lent = 0;
	pthread_mutex_lock(&m->lock);
	if (m->lent >= m->lend_max) {
		pthread_mutex_unlock(&m->lock);
		return 0;
	}
	m->lent++;
	pthread_mutex_unlock(&m->lock);
	rc = pin_blocks(m, i, i, want, READ_AHEAD, &s);
	if (rc == 0 && s) {
		*data = s->data + from;
		*lent = (uint32_t)(n < len ? n : len);
		*token = s;
		return 0;
	}
	pthread_mutex_lock(&m->lock);
	m->lent--;
	pthread_mutex_unlock(&m->lock);
	if (rc == 0) /* a hole: the server asks for data runs only */
		rc = fy_err_set(-EIO, "block %" PRIu64 " is a hole", i);
	fy_warn("mount: read of %u bytes at %" PRIu64 ": %s", len, offset,
		fy_err_msg());
	return rc;
}

static void mount_release(void *opaque, void *token)
{
	struct mount *m = opaque;
	struct slot *s = token;

	pthread_mutex_lock(&m->lock);
	s->refs--;
	m->lent--;
	if (m->space_waiters)
		pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static int mount_extent(void *opaque, uint64_t offset, uint64_t len,
			bool *hole, uint64_t *run)
{
	struct mount *m = opaque;
	uint64_t i = offset / m->block_size, end = offset + len;
	uint64_t pos = offset;

	*hole = m->map.hole[i];
	while (pos < end && i < m->map.n && m->map.hole[i] == *hole) {
		uint64_t bend = (i + 1) * m->block_size;

		pos = bend < end ? bend : end;
		i++;
	}
	*run = pos - offset;
	return *run ? 0 : fy_err_set(-EIO, "no map entry at %" PRIu64, offset);
}

static void print_ready(void *opaque, const char *bound)
{
	const struct fy_mount_opts *o = opaque;

	if (o->listen)
		fprintf(stderr, "serving backup %s disk %u read-only at "
			"nbd%s://%s/ (Ctrl-C stops)\n", o->backup_id, o->disk,
			o->tls ? "s" : "", bound);
	else
		fprintf(stderr, "serving backup %s disk %u read-only at "
			"nbd+unix:///?socket=%s (Ctrl-C stops)\n",
			o->backup_id, o->disk, bound);
	if (o->ready_file) {
		char tmp[4096];
		FILE *f;

		snprintf(tmp, sizeof(tmp), "%s.tmp", o->ready_file);
		f = fopen(tmp, "w");
		if (f) {
			fprintf(f, "%s\n", bound);
			if (fclose(f) == 0)
				rename(tmp, o->ready_file);
		}
	}
}

int fy_mount_run(const struct fy_settings *s, const struct fy_mount_opts *o)
{
	struct mount m = { .settings = s, .backup_id = o->backup_id,
			   .disk = o->disk };
	struct fy_nbd_server_opts so = {
		.listen = o->listen, .socket = o->socket,
		.max_clients = 16, .workers = NBD_WORKERS,
		.on_ready = print_ready,
		.ready_opaque = (void *)o,
	};
	const struct fy_nbd_export_ops ops = { .read = mount_read,
					       .extent = mount_extent,
					       .lend = mount_lend,
					       .release = mount_release };
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t cache_bytes;
	unsigned i, room;
	int rc;

	pthread_mutex_init(&m.lock, NULL);
	pthread_cond_init(&m.cond, NULL);
	pthread_cond_init(&m.pool_cond, NULL);
	rc = fy_repo_connect(s, "ferry " FERRY_VERSION, &m.pool[0], NULL, 0);
	if (rc < 0)
		return rc;
	/* size 0: take the backup's own size and block size. */
	rc = fy_client_get_map(m.pool[0], o->backup_id, o->disk, 0, 0, &m.map);
	if (rc < 0)
		goto out;
	m.size = m.map.size;
	m.block_size = m.map.block_size;
	if (!m.size) {
		rc = fy_err_set(-EINVAL, "backup %s disk %u is empty",
				o->backup_id, o->disk);
		goto out;
	}
	/* At least one largest read (32 MiB) plus a block either side. */
	cache_bytes = (uint64_t)o->cache_mb << 20;
	if (cache_bytes < (34u << 20) + 2ull * m.block_size)
		cache_bytes = (34u << 20) + 2ull * m.block_size;
	m.n_slots = (unsigned)(cache_bytes / m.block_size);
	if (m.n_slots > CACHE_SLOTS_MAX)
		m.n_slots = CACHE_SLOTS_MAX;
	/* Loans wait for their clients: they leave room for a largest read
	 * (32 MiB across one more block), its read-ahead and a block. */
	room = (unsigned)(((32u << 20) + m.block_size - 1) / m.block_size) +
	       2 + READ_AHEAD;
	m.lend_max = m.n_slots > room ? m.n_slots - room : 0;
	m.slots = calloc(m.n_slots, sizeof(*m.slots));
	if (!m.slots) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < m.n_slots; i++)
		pthread_cond_init(&m.slots[i].done, NULL);
	for (i = 0; i < m.n_slots; i++) {
		m.slots[i].data = malloc(m.block_size);
		if (!m.slots[i].data) {
			rc = fy_err_set(-ENOMEM, "out of memory for a cache "
					"of %u blocks", m.n_slots);
			goto out;
		}
	}
	so.size = m.size;
	if (o->tls) {
		so.tls_cert = o->tls_cert ? o->tls_cert : s->tls.cert;
		so.tls_key = o->tls_key ? o->tls_key : s->tls.key;
		so.tls_ca = s->tls.ca;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	rc = fy_nbd_serve(&so, &ops, &m, &stop_requested);
	if (rc == -EBUSY) {
		/* A client thread still in a read uses this frame (the
		 * cache, the connections, the export's options): nothing
		 * may return through it. The process ends here. */
		fy_error("mount: %s; exiting with it running", fy_err_msg());
		_exit(1);
	}
	fy_info("mount: %" PRIu64 " blocks fetched, %" PRIu64 " cache hits",
		m.fetched, m.hits);
out:
	/* fy_nbd_serve waited for every client thread: nothing uses the
	 * cache or the connections any more. */
	for (i = 0; m.slots && i < m.n_slots; i++) {
		free(m.slots[i].data);
		pthread_cond_destroy(&m.slots[i].done);
	}
	free(m.slots);
	pthread_cond_destroy(&m.pool_cond);
	pthread_cond_destroy(&m.cond);
	pthread_mutex_destroy(&m.lock);
	fy_parent_map_free(&m.map);
	for (i = 0; i < POOL_MAX; i++)
		fy_conn_close(m.pool[i]);
	return rc;
}
