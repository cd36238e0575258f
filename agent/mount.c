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

struct slot {
	uint64_t index; /* block index; valid only when used */
	bool used;
	uint64_t stamp; /* last use, for eviction */
	uint8_t *data;  /* block_size bytes, decoded and verified */
};

struct mount {
	const struct fy_settings *settings;
	const char *backup_id;
	uint32_t disk;
	struct fy_parent_map map;
	uint64_t size;
	uint32_t block_size;

	pthread_mutex_t lock; /* the connection and the cache */
	struct fy_conn *conn; /* NULL after a failure: reconnect */
	struct slot *slots;
	unsigned n_slots;
	uint64_t clock;
	uint64_t fetched, hits;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static int reconnect(struct mount *m)
{
	if (m->conn)
		return 0;
	return fy_repo_connect(m->settings, "ferry " FERRY_VERSION, &m->conn,
			       NULL, 0);
}

static struct slot *cache_find(struct mount *m, uint64_t index)
{
	unsigned i;

	for (i = 0; i < m->n_slots; i++)
		if (m->slots[i].used && m->slots[i].index == index) {
			m->slots[i].stamp = ++m->clock;
			m->hits++;
			return &m->slots[i];
		}
	return NULL;
}

/* The least recently used slot, given up for a new block. pinned are the
 * slots of the read in progress, which must stay. */
static struct slot *cache_victim(struct mount *m, uint64_t first,
				 uint64_t last)
{
	struct slot *best = NULL;
	unsigned i;

	for (i = 0; i < m->n_slots; i++) {
		struct slot *s = &m->slots[i];

		if (s->used && s->index >= first && s->index <= last)
			continue;
		if (!s->used)
			return s;
		if (!best || s->stamp < best->stamp)
			best = s;
	}
	return best;
}

static uint32_t block_len(const struct mount *m, uint64_t index)
{
	uint64_t off = index * m->block_size;

	return m->size - off < m->block_size ? (uint32_t)(m->size - off)
					     : m->block_size;
}

/* Fetches blocks [first, last] that are data and not cached, in GetBlocks
 * requests of up to FY_GET_MAX, and decodes each into a slot. */
static int fetch(struct mount *m, uint64_t first, uint64_t last)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__GetBlocks gb = FERRY__GET_BLOCKS__INIT;
	ProtobufCBinaryData bins[FY_GET_MAX];
	uint64_t want[FY_GET_MAX], i = first;
	int rc;

	while (i <= last) {
		size_t n = 0, k;

		for (; i <= last && n < FY_GET_MAX; i++) {
			if (m->map.hole[i])
				continue;
			/* A cached block is refreshed, so it is not evicted
			 * by the others of this read. */
			if (cache_find(m, i))
				continue;
			want[n] = i;
			bins[n].data = m->map.digest[i];
			bins[n].len = FY_DIGEST_LEN;
			n++;
		}
		if (!n)
			continue;
		rc = reconnect(m);
		if (rc < 0)
			return rc;
		gb.digests = bins;
		gb.n_digests = n;
		f.body_case = FERRY__FRAME__BODY_GET_BLOCKS;
		f.get_blocks = &gb;
		rc = fy_conn_send(m->conn, &f);
		if (rc == 0)
			rc = fy_conn_flush(m->conn);
		for (k = 0; rc == 0 && k < n; k++) {
			fy_frame *b = NULL;
			struct slot *s;
			char hex[FY_DIGEST_HEX];

			rc = fy_conn_recv(m->conn, &b);
			if (rc < 0)
				break;
			if (b->body_case == FERRY__FRAME__BODY_ERROR) {
				rc = fy_err_set(b->error->code < 0
							? b->error->code
							: -EIO,
						"repository: %s",
						b->error->message);
			} else if (b->body_case != FERRY__FRAME__BODY_BLOCK ||
				   b->block->digest.len != FY_DIGEST_LEN ||
				   memcmp(b->block->digest.data, bins[k].data,
					  FY_DIGEST_LEN)) {
				rc = fy_err_set(-EPROTO, "repository sent %s "
						"for another block",
						fy_frame_name(b));
			} else if (b->block->plain_size !=
				   block_len(m, want[k])) {
				fy_hex(bins[k].data, FY_DIGEST_LEN, hex);
				rc = fy_err_set(-EIO, "block %s is %u bytes, "
						"not %u", hex,
						b->block->plain_size,
						block_len(m, want[k]));
			} else {
				s = cache_victim(m, first, last);
				s->used = false;
				rc = fy_block_decode(
					(enum fy_codec)b->block->codec,
					b->block->data.data, b->block->data.len,
					b->block->plain_size, bins[k].data,
					s->data, m->block_size);
				if (rc == 0) {
					s->used = true;
					s->index = want[k];
					s->stamp = ++m->clock;
					m->fetched++;
				}
				/* A corrupt block leaves the stream in
				 * order: the next answers are still good. */
			}
			fy_frame_free(b);
			if (rc == -EBADMSG)
				return fy_err_wrap(-EIO, "block %" PRIu64
						   " of the disk",
						   want[k]);
		}
		if (rc < 0) {
			/* The stream is out of step or closed: start again
			 * on the next read. */
			fy_conn_close(m->conn);
			m->conn = NULL;
			return rc;
		}
	}
	return 0;
}

static int mount_read(void *opaque, uint64_t offset, uint32_t len, void *buf)
{
	struct mount *m = opaque;
	uint64_t first = offset / m->block_size;
	uint64_t last = (offset + len - 1) / m->block_size;
	uint64_t i, pos = offset, end = offset + len;
	uint8_t *out = buf;
	int rc;

	/* A read must fit the cache with room to spare: the NBD server
	 * caps reads at 32 MiB, and the cache holds more (mount_run). */
	pthread_mutex_lock(&m->lock);
	rc = fetch(m, first, last);
	for (i = first; rc == 0 && i <= last; i++) {
		uint64_t bstart = i * m->block_size;
		uint64_t from = pos - bstart;
		uint64_t n = block_len(m, i) - from;
		struct slot *s;

		if (n > end - pos)
			n = end - pos;
		if (m->map.hole[i]) {
			memset(out, 0, n);
		} else if ((s = cache_find(m, i))) {
			memcpy(out, s->data + from, n);
		} else {
			rc = fy_err_set(-EIO, "block %" PRIu64 " was not "
					"fetched", i);
			break;
		}
		out += n;
		pos += n;
	}
	pthread_mutex_unlock(&m->lock);
	if (rc < 0)
		fy_warn("mount: read of %u bytes at %" PRIu64 ": %s", len,
			offset, fy_err_msg());
	return rc;
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
		.max_clients = 16, .on_ready = print_ready,
		.ready_opaque = (void *)o,
	};
	const struct fy_nbd_export_ops ops = { .read = mount_read,
					       .extent = mount_extent };
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t cache_bytes;
	unsigned i;
	int rc;

	pthread_mutex_init(&m.lock, NULL);
	rc = fy_repo_connect(s, "ferry " FERRY_VERSION, &m.conn, NULL, 0);
	if (rc < 0)
		return rc;
	/* size 0: take the backup's own size and block size. */
	rc = fy_client_get_map(m.conn, o->backup_id, o->disk, 0, 0, &m.map);
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
	m.slots = calloc(m.n_slots, sizeof(*m.slots));
	if (!m.slots) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
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
	fy_info("mount: %" PRIu64 " blocks fetched, %" PRIu64 " cache hits",
		m.fetched, m.hits);
out:
	/* Client threads may still be reading when a signal ends the
	 * export: the process exits right after, so the cache stays. */
	if (rc < 0) {
		for (i = 0; m.slots && i < m.n_slots; i++)
			free(m.slots[i].data);
		free(m.slots);
		fy_parent_map_free(&m.map);
		fy_conn_close(m.conn);
	}
	return rc;
}
