/*
 * Manifests: what one backup is. A file holds a framed ManifestHeader
 * message, then each disk's block map (one digest per block, zeros for a
 * hole), then a SHA-256 of all of it; docs/FORMAT.md has the layout.
 *
 * Maps can be large (a 64 TiB disk in 64 KiB blocks has 2^30 entries, 32
 * GiB of map), so neither the reader nor the builder ever holds a whole map:
 * the reader streams the checksum and later preads what is asked for, the
 * builder spools each disk's map to its own temporary file.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "image/image_private.h"
#include "proto/manifest.pb-c.h"

/* Bytes per read while streaming maps: large enough for sequential speed,
 * small enough to stay out of the way. Also holds a whole header. */
#define STREAM_CHUNK (1u << 20)
/* Digests per read when walking maps for callers. */
#define WALK_ENTRIES 2048u

static const uint8_t zero_digest[FY_DIGEST_LEN];

bool fy_digest_is_hole(const uint8_t digest[FY_DIGEST_LEN])
{
	return memcmp(digest, zero_digest, FY_DIGEST_LEN) == 0;
}

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

static int pread_exact(int fd, void *buf, size_t len, uint64_t off,
		       const char *name)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fy_err_set(-errno, "%s: read at %" PRIu64 ": %s",
					  name, off, strerror(errno));
		}
		if (n == 0)
			return fy_err_set(-EBADMSG,
					  "%s: ends at %" PRIu64
					  " (shrank after it was opened?)",
					  name, off);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- reading ----------------------------------------------------------- */

struct manifest_priv {
	int fd;             /* -1 when parsed from memory */
	const uint8_t *mem; /* the caller's buffer (parse_mem) */
	uint64_t *map_off;  /* where disk i's map starts */
	char name[PATH_MAX + 16];
};

/* Where a manifest being parsed comes from. */
struct src {
	const char *name;
	int fd;
	const uint8_t *mem;
	uint64_t len;
	uint8_t *buf; /* STREAM_CHUNK bytes, for fd reads */
};

/* Points *p at n (<= STREAM_CHUNK) bytes at off, known to be in range. */
static int src_view(struct src *s, uint64_t off, size_t n, const uint8_t **p)
{
	int rc;

	if (s->mem) {
		*p = s->mem + off;
		return 0;
	}
	rc = pread_exact(s->fd, s->buf, n, off, s->name);
	if (rc)
		return rc;
	*p = s->buf;
	return 0;
}

static int read_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
	uint64_t r = 0;
	unsigned shift;

	for (shift = 0; shift < 64; shift += 7) {
		if (*i >= len)
			return -1;
		r |= (uint64_t)(p[*i] & 0x7f) << shift;
		if (!(p[(*i)++] & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -1;
}

int fy_pb_next_field(const uint8_t *p, size_t len, size_t *i, uint64_t *key)
{
	uint64_t v;

	if (read_varint(p, len, i, key))
		return -1;
	switch (*key & 7) {
	case 0: /* varint */
		return read_varint(p, len, i, &v);
	case 1: /* 64-bit */
		if (len - *i < 8)
			return -1;
		*i += 8;
		return 0;
	case 2: /* length-delimited */
		if (read_varint(p, len, i, &v) || v > len - *i)
			return -1;
		*i += (size_t)v;
		return 0;
	case 5: /* 32-bit */
		if (len - *i < 4)
			return -1;
		*i += 4;
		return 0;
	default:
		return -1;
	}
}

/*
 * Counts the disks a header lists before protobuf-c unpacks it: the
 * unpacker allocates every repeated entry first, and a 1 MiB header can
 * list hundreds of thousands of empty ones.
 */
static int count_disks(const struct src *s, const uint8_t *p, size_t len)
{
	uint32_t disks = 0;
	size_t i = 0;

	while (i < len) {
		size_t at = i;
		uint64_t key;

		if (fy_pb_next_field(p, len, &i, &key))
			goto bad;
		if ((key >> 3) == 7 && ++disks > FY_DISKS_MAX)
			return fy_err_set(-EBADMSG,
					  "%s: header lists more than %u disks",
					  s->name, FY_DISKS_MAX);
		continue;
bad:
		return fy_err_set(-EBADMSG,
				  "%s: header is not a ManifestHeader message "
				  "(malformed field at byte %zu)",
				  s->name, at);
	}
	return 0;
}

static int copy_str(const struct src *s, const char *what, char *dst,
		    size_t dstlen, const char *src)
{
	size_t n;

	if (!src)
		src = "";
	n = strlen(src);
	if (n >= dstlen)
		return fy_err_set(-EBADMSG,
				  "%s: %s of %zu bytes is longer than %zu",
				  s->name, what, n, dstlen - 1);
	memcpy(dst, src, n + 1);
	return 0;
}

static int check_id(const struct src *s, const char *what, const char *id,
		    bool may_be_empty)
{
	if (may_be_empty && !*id)
		return 0;
	if (!fy_id_valid(id))
		return fy_err_set(-EBADMSG,
				  "%s: %s \"%.*s\" is not a valid backup id",
				  s->name, what, FY_ID_MAX, id);
	return 0;
}

static int fill_disk(const struct src *s, uint32_t i,
		     const Ferry__ManifestDisk *pd, uint32_t block_size,
		     struct fy_manifest_disk *d)
{
	char what[64];
	uint64_t want;
	int rc;

	if (!pd)
		return fy_err_set(-EBADMSG, "%s: disk %u is empty", s->name, i);
	if (pd->index != i)
		return fy_err_set(-EBADMSG,
				  "%s: disk %u of the list has index %u "
				  "(disks must be listed in index order)",
				  s->name, i, pd->index);
	d->index = i;
	snprintf(what, sizeof(what), "disk %u label", i);
	rc = copy_str(s, what, d->label, sizeof(d->label), pd->label);
	if (rc)
		return rc;
	snprintf(what, sizeof(what), "disk %u change id", i);
	rc = copy_str(s, what, d->change_id, sizeof(d->change_id),
		      pd->change_id);
	if (rc)
		return rc;
	snprintf(what, sizeof(what), "disk %u transport", i);
	rc = copy_str(s, what, d->transport, sizeof(d->transport),
		      pd->transport);
	if (rc)
		return rc;
	snprintf(what, sizeof(what), "disk %u id", i);
	rc = copy_str(s, what, d->disk_id, sizeof(d->disk_id), pd->disk_id);
	if (rc)
		return rc;
	if (pd->size > FY_DISK_SIZE_MAX)
		return fy_err_set(-EBADMSG,
				  "%s: disk %u size %" PRIu64
				  " exceeds the largest disk (%llu)",
				  s->name, i, pd->size, FY_DISK_SIZE_MAX);
	d->size = pd->size;
	want = (pd->size + block_size - 1) / block_size;
	if (pd->block_count != want)
		return fy_err_set(-EBADMSG,
				  "%s: disk %u has %" PRIu64
				  " blocks, but %" PRIu64
				  " bytes in blocks of %u make %" PRIu64,
				  s->name, i, pd->block_count, pd->size,
				  block_size, want);
	d->block_count = want;
	if (pd->data_blocks > want ||
	    pd->hole_blocks != want - pd->data_blocks)
		return fy_err_set(-EBADMSG,
				  "%s: disk %u has %" PRIu64
				  " data and %" PRIu64 " hole blocks, which "
				  "do not add up to %" PRIu64,
				  s->name, i, pd->data_blocks, pd->hole_blocks,
				  want);
	d->data_blocks = pd->data_blocks;
	d->hole_blocks = pd->hole_blocks;
	return 0;
}

/* The record is kept as the bytes stored, but only once it decodes and
 * its backup disks are this manifest's. */
static int fill_vm_config(const struct src *s, const Ferry__ManifestHeader *h,
			  struct fy_manifest *m)
{
	struct fy_vmconfig *c = NULL;
	int rc;

	if (!h->vm_config.len)
		return 0;
	if (strcmp(m->source_kind, "vm"))
		return fy_err_set(-EBADMSG, "%s: a VM configuration record on "
				  "a backup of kind '%.31s'", s->name,
				  m->source_kind);
	rc = fy_vmconfig_decode(h->vm_config.data, h->vm_config.len, &c);
	if (rc == 0)
		rc = fy_vmconfig_check_backup(c, m->disk_count);
	fy_vmconfig_free(c);
	if (rc < 0)
		return fy_err_wrap(-EBADMSG, "%s", s->name);
	m->vm_config = malloc(h->vm_config.len);
	if (!m->vm_config)
		return fy_err_set(-ENOMEM, "%s: out of memory", s->name);
	memcpy(m->vm_config, h->vm_config.data, h->vm_config.len);
	m->vm_config_len = h->vm_config.len;
	return 0;
}

static int fill_header(const struct src *s, const Ferry__ManifestHeader *h,
		       struct fy_manifest *m)
{
	uint32_t i;
	int rc;

	rc = copy_str(s, "backup id", m->id, sizeof(m->id), h->id);
	if (!rc)
		rc = check_id(s, "backup id", m->id, false);
	if (!rc)
		rc = copy_str(s, "source", m->source, sizeof(m->source),
			      h->source);
	if (!rc)
		rc = copy_str(s, "source kind", m->source_kind,
			      sizeof(m->source_kind), h->source_kind);
	if (!rc)
		rc = copy_str(s, "parent id", m->parent_id,
			      sizeof(m->parent_id), h->parent_id);
	if (!rc)
		rc = check_id(s, "parent id", m->parent_id, true);
	if (!rc)
		rc = copy_str(s, "owner", m->owner, sizeof(m->owner), h->owner);
	if (!rc)
		rc = copy_str(s, "namespace", m->namespace_,
			      sizeof(m->namespace_), h->namespace_);
	if (!rc && m->namespace_[0] && !fy_namespace_valid(m->namespace_))
		rc = fy_err_set(-EBADMSG, "%s: namespace '%s': %s", s->name,
				m->namespace_, FY_NAMESPACE_RULE);
	if (rc)
		return rc;
	m->created_unix = h->created_unix;
	if (!is_pow2(h->block_size) || h->block_size < FY_BLOCK_MIN ||
	    h->block_size > FY_BLOCK_MAX)
		return fy_err_set(-EBADMSG,
				  "%s: block size %u is not a power of two in "
				  "%u..%u",
				  s->name, h->block_size, FY_BLOCK_MIN,
				  FY_BLOCK_MAX);
	m->block_size = h->block_size;
	/* count_disks() bounded it already; this keeps the bound local. */
	if (h->n_disks > FY_DISKS_MAX)
		return fy_err_set(-EBADMSG, "%s: %zu disks, at most %u",
				  s->name, h->n_disks, FY_DISKS_MAX);
	m->disks = calloc(h->n_disks ? h->n_disks : 1, sizeof(*m->disks));
	if (!m->disks)
		return fy_err_set(-ENOMEM, "%s: out of memory", s->name);
	m->disk_count = (uint32_t)h->n_disks;
	for (i = 0; i < m->disk_count; i++) {
		rc = fill_disk(s, i, h->disks[i], m->block_size,
			       &m->disks[i]);
		if (rc)
			return rc;
	}
	return fill_vm_config(s, h, m);
}

/* Counts holes of the maps while they stream past, one digest at a time. */
struct hole_count {
	const struct fy_manifest *m;
	uint32_t disk;
	uint64_t left; /* entries left in disk */
	uint64_t holes[FY_DISKS_MAX];
};

static void holes_next_disk(struct hole_count *hc)
{
	while (hc->disk < hc->m->disk_count &&
	       !(hc->left = hc->m->disks[hc->disk].block_count))
		hc->disk++;
}

static void holes_feed(struct hole_count *hc, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + FY_DIGEST_LEN <= n; i += FY_DIGEST_LEN) {
		if (fy_digest_is_hole(p + i))
			hc->holes[hc->disk]++;
		if (!--hc->left) {
			hc->disk++;
			holes_next_disk(hc);
		}
	}
}

static int parse(struct src *s, struct manifest_priv *priv,
		 struct fy_manifest **out)
{
	const uint64_t min_len = FY_MANIFEST_PREAMBLE_LEN + 1 + FY_DIGEST_LEN;
	Ferry__ManifestHeader *h = NULL;
	struct fy_manifest *m = NULL;
	struct hole_count *hc = NULL;
	EVP_MD_CTX *md = NULL;
	uint8_t pre[FY_MANIFEST_PREAMBLE_LEN];
	uint8_t sum[FY_DIGEST_LEN];
	const uint8_t *p;
	uint32_t version, header_len, i;
	uint64_t total, off, end;
	size_t n;
	int rc;

	if (s->len < min_len) {
		rc = fy_err_set(-EBADMSG,
				"%s: %" PRIu64 " bytes is shorter than the "
				"smallest manifest (%" PRIu64 ")",
				s->name, s->len, min_len);
		goto out;
	}
	rc = src_view(s, 0, sizeof(pre), &p);
	if (rc)
		goto out;
	memcpy(pre, p, sizeof(pre));
	if (memcmp(pre, FY_MANIFEST_MAGIC, 8)) {
		rc = fy_err_set(-EBADMSG, "%s: not a manifest (bad magic)",
				s->name);
		goto out;
	}
	version = fy_get_be32(pre + 8);
	if (version != FY_MANIFEST_VERSION) {
		rc = fy_err_set(-EBADMSG,
				"%s: manifest version %u, this build reads %u",
				s->name, version, FY_MANIFEST_VERSION);
		goto out;
	}
	header_len = fy_get_be32(pre + 12);
	if (header_len < 1 || header_len > FY_MANIFEST_HEADER_MAX) {
		rc = fy_err_set(-EBADMSG,
				"%s: header length %u is outside 1..%u",
				s->name, header_len, FY_MANIFEST_HEADER_MAX);
		goto out;
	}
	if (header_len > s->len - min_len + 1) {
		rc = fy_err_set(-EBADMSG,
				"%s: header of %u bytes does not fit in "
				"%" PRIu64 " bytes",
				s->name, header_len, s->len);
		goto out;
	}
	rc = src_view(s, FY_MANIFEST_PREAMBLE_LEN, header_len, &p);
	if (rc)
		goto out;

	md = EVP_MD_CTX_new();
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(md, pre, sizeof(pre)) ||
	    !EVP_DigestUpdate(md, p, header_len)) {
		rc = fy_err_set(-ENOMEM, "%s: cannot set up SHA-256",
				s->name);
		goto out;
	}
	rc = count_disks(s, p, header_len);
	if (rc)
		goto out;
	h = ferry__manifest_header__unpack(NULL, header_len, p);
	if (!h) {
		rc = fy_err_set(-EBADMSG,
				"%s: header is not a valid ManifestHeader "
				"message",
				s->name);
		goto out;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		rc = fy_err_set(-ENOMEM, "%s: out of memory", s->name);
		goto out;
	}
	rc = fill_header(s, h, m);
	if (rc)
		goto out;
	priv->map_off = calloc(m->disk_count ? m->disk_count : 1,
			       sizeof(*priv->map_off));
	if (!priv->map_off) {
		rc = fy_err_set(-ENOMEM, "%s: out of memory", s->name);
		goto out;
	}

	/* Each count is bounded by the disk size, so this cannot wrap today;
	 * the checks keep it so if the bounds ever grow. */
	total = FY_MANIFEST_PREAMBLE_LEN + (uint64_t)header_len;
	for (i = 0; i < m->disk_count; i++) {
		uint64_t bytes;

		priv->map_off[i] = total;
		if (__builtin_mul_overflow(m->disks[i].block_count,
					   (uint64_t)FY_DIGEST_LEN, &bytes) ||
		    __builtin_add_overflow(total, bytes, &total)) {
			rc = fy_err_set(-EBADMSG, "%s: maps too large",
					s->name);
			goto out;
		}
	}
	if (__builtin_add_overflow(total, (uint64_t)FY_DIGEST_LEN, &total) ||
	    total != s->len) {
		rc = fy_err_set(-EBADMSG,
				"%s: %" PRIu64 " bytes, but its header (%u "
				"disks) makes %" PRIu64,
				s->name, s->len, m->disk_count, total);
		goto out;
	}

	/* Stream the maps through the checksum, counting holes as they go:
	 * the header's data/hole counts must describe the maps it frames. */
	hc = calloc(1, sizeof(*hc));
	if (!hc) {
		rc = fy_err_set(-ENOMEM, "%s: out of memory", s->name);
		goto out;
	}
	hc->m = m;
	holes_next_disk(hc);
	end = s->len - FY_DIGEST_LEN;
	for (off = FY_MANIFEST_PREAMBLE_LEN + (uint64_t)header_len; off < end;
	     off += n) {
		n = end - off > STREAM_CHUNK ? STREAM_CHUNK
					     : (size_t)(end - off);
		rc = src_view(s, off, n, &p);
		if (rc)
			goto out;
		if (!EVP_DigestUpdate(md, p, n)) {
			rc = fy_err_set(-EIO, "%s: SHA-256 failed", s->name);
			goto out;
		}
		holes_feed(hc, p, n);
	}
	if (!EVP_DigestFinal_ex(md, sum, NULL)) {
		rc = fy_err_set(-EIO, "%s: SHA-256 failed", s->name);
		goto out;
	}
	rc = src_view(s, end, FY_DIGEST_LEN, &p);
	if (rc)
		goto out;
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	if (memcmp(sum, p, FY_DIGEST_LEN)) {
		rc = fy_err_set(-EBADMSG,
				"%s: checksum mismatch (the file is damaged)",
				s->name);
		goto out;
	}
#endif
	for (i = 0; i < m->disk_count; i++) {
		if (hc->holes[i] != m->disks[i].hole_blocks) {
			rc = fy_err_set(-EBADMSG,
					"%s: disk %u map has %" PRIu64
					" holes, its header says %" PRIu64,
					s->name, i, hc->holes[i],
					m->disks[i].hole_blocks);
			goto out;
		}
	}

	m->priv = priv;
	*out = m;
	m = NULL;
out:
	if (m) {
		free(m->vm_config);
		free(m->disks);
		free(m);
	}
	free(hc);
	EVP_MD_CTX_free(md);
	ferry__manifest_header__free_unpacked(h, NULL);
	return rc;
}

int fy_manifest_open(const char *path, struct fy_manifest **out)
{
	struct manifest_priv *priv;
	struct src s = { .fd = -1 };
	struct stat st;
	int rc;

	*out = NULL;
	priv = calloc(1, sizeof(*priv));
	if (!priv)
		return fy_err_set(-ENOMEM, "manifest %s: out of memory", path);
	priv->fd = -1;
	snprintf(priv->name, sizeof(priv->name), "manifest %s", path);
	s.name = priv->name;

	priv->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (priv->fd < 0) {
		rc = fy_err_set(-errno, "%s: %s", s.name, strerror(errno));
		goto out;
	}
	if (fstat(priv->fd, &st)) {
		rc = fy_err_set(-errno, "%s: %s", s.name, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = fy_err_set(-EBADMSG, "%s: not a regular file", s.name);
		goto out;
	}
	s.fd = priv->fd;
	s.len = (uint64_t)st.st_size;
	s.buf = malloc(STREAM_CHUNK);
	if (!s.buf) {
		rc = fy_err_set(-ENOMEM, "%s: out of memory", s.name);
		goto out;
	}
	rc = parse(&s, priv, out);
	if (!rc)
		priv = NULL; /* owned by *out */
out:
	free(s.buf);
	if (priv) {
		if (priv->fd >= 0)
			close(priv->fd);
		free(priv->map_off);
		free(priv);
	}
	return rc;
}

/* The manifest keeps pointing into data: the caller keeps the buffer alive
 * and unchanged until fy_manifest_free. */
int fy_manifest_parse_mem(const void *data, size_t len,
			  struct fy_manifest **out)
{
	struct manifest_priv *priv;
	struct src s = { .fd = -1 };
	int rc;

	*out = NULL;
	priv = calloc(1, sizeof(*priv));
	if (!priv)
		return fy_err_set(-ENOMEM, "manifest: out of memory");
	priv->fd = -1;
	priv->mem = data;
	snprintf(priv->name, sizeof(priv->name), "manifest in memory");
	s.name = priv->name;
	s.mem = data;
	s.len = len;
	/* parse() reads from mem only when it is non-NULL. */
	if (!data && len == 0)
		s.mem = (const uint8_t *)"";
	rc = parse(&s, priv, out);
	if (rc) {
		free(priv->map_off);
		free(priv);
	}
	return rc;
}

void fy_manifest_free(struct fy_manifest *m)
{
	struct manifest_priv *priv;

	if (!m)
		return;
	priv = m->priv;
	if (priv) {
		if (priv->fd >= 0)
			close(priv->fd);
		free(priv->map_off);
		free(priv);
	}
	free(m->vm_config);
	free(m->disks);
	free(m);
}

int fy_manifest_read_map(struct fy_manifest *m, uint32_t disk, uint64_t first,
			 uint64_t count, uint8_t (*digests)[FY_DIGEST_LEN])
{
	struct manifest_priv *priv = m->priv;
	uint64_t blocks, off;

	if (disk >= m->disk_count)
		return fy_err_set(-EINVAL, "%s: no disk %u (it has %u)",
				  priv->name, disk, m->disk_count);
	blocks = m->disks[disk].block_count;
	if (first > blocks || count > blocks - first)
		return fy_err_set(-EINVAL,
				  "%s: blocks %" PRIu64 "..+%" PRIu64
				  " are outside disk %u's %" PRIu64 " blocks",
				  priv->name, first, count, disk, blocks);
	if (count > SIZE_MAX / FY_DIGEST_LEN)
		return fy_err_set(-EINVAL, "%s: read of %" PRIu64
				  " entries is too large", priv->name, count);
	off = priv->map_off[disk] + first * FY_DIGEST_LEN;
	if (priv->mem) {
		memcpy(digests, priv->mem + off, (size_t)count * FY_DIGEST_LEN);
		return 0;
	}
	return pread_exact(priv->fd, digests, (size_t)count * FY_DIGEST_LEN,
			   off, priv->name);
}

int fy_manifest_for_each(struct fy_manifest *m,
			 int (*cb)(void *opaque, uint32_t disk, uint64_t block,
				   const uint8_t digest[FY_DIGEST_LEN]),
			 void *opaque)
{
	uint8_t (*chunk)[FY_DIGEST_LEN];
	uint32_t disk;
	uint64_t first, n, i;
	int rc = 0;

	chunk = malloc(WALK_ENTRIES * FY_DIGEST_LEN);
	if (!chunk)
		return fy_err_set(-ENOMEM, "manifest %s: out of memory", m->id);
	for (disk = 0; disk < m->disk_count; disk++) {
		uint64_t blocks = m->disks[disk].block_count;

		for (first = 0; first < blocks; first += n) {
			n = blocks - first;
			if (n > WALK_ENTRIES)
				n = WALK_ENTRIES;
			rc = fy_manifest_read_map(m, disk, first, n, chunk);
			if (rc)
				goto out;
			for (i = 0; i < n; i++) {
				if (fy_digest_is_hole(chunk[i]))
					continue;
				rc = cb(opaque, disk, first + i, chunk[i]);
				if (rc)
					goto out;
			}
		}
	}
out:
	free(chunk);
	return rc;
}

/* ---- building ---------------------------------------------------------- */

struct builder_disk {
	struct fy_manifest_disk d;
	char path[PATH_MAX]; /* this disk's map so far */
	int fd;
	uint64_t added;
	bool ended;
};

/* Not thread-safe: one caller feeds a builder. Disks may be fed
 * interleaved (each has its own spool file). */
struct fy_manifest_builder {
	char tmpdir[PATH_MAX];
	struct fy_manifest hdr; /* disks, disk_count unused */
	struct builder_disk *disks[FY_DISKS_MAX];
	uint32_t disk_count;
	uint8_t *vm_config; /* a checked record, or NULL */
	size_t vm_config_len;
	bool finished;
};

static int make_temp(const char *dir, const char *prefix, char *path,
		     size_t pathlen, int *fd)
{
	int n = snprintf(path, pathlen, "%s/%s.XXXXXX", dir, prefix);

	if (n < 0 || (size_t)n >= pathlen)
		return fy_err_set(-ENAMETOOLONG, "temporary file in %s: path "
				  "too long", dir);
	*fd = mkostemp(path, O_CLOEXEC);
	if (*fd < 0) {
		int rc = -errno;

		fy_err_set(rc, "temporary file in %s: %s", dir,
			   strerror(errno));
		path[0] = 0;
		return rc;
	}
	return 0;
}

static int check_field(const char *what, const char *s, size_t size)
{
	if (strnlen(s, size) >= size)
		return fy_err_set(-EINVAL,
				  "manifest builder: %s is longer than %zu "
				  "bytes",
				  what, size - 1);
	return 0;
}

int fy_manifest_builder_new(const char *tmpdir, const struct fy_manifest *hdr,
			    struct fy_manifest_builder **out)
{
	struct fy_manifest_builder *b;
	int rc;

	*out = NULL;
	rc = check_field("backup id", hdr->id, sizeof(hdr->id));
	if (!rc)
		rc = fy_id_check("manifest builder: backup id", hdr->id);
	if (!rc)
		rc = check_field("source", hdr->source, sizeof(hdr->source));
	if (!rc)
		rc = check_field("source kind", hdr->source_kind,
				 sizeof(hdr->source_kind));
	if (!rc)
		rc = check_field("parent id", hdr->parent_id,
				 sizeof(hdr->parent_id));
	if (!rc && hdr->parent_id[0])
		rc = fy_id_check("manifest builder: parent id",
				 hdr->parent_id);
	if (!rc)
		rc = check_field("owner", hdr->owner, sizeof(hdr->owner));
	if (!rc)
		rc = check_field("namespace", hdr->namespace_,
				 sizeof(hdr->namespace_));
	if (!rc && hdr->namespace_[0] && !fy_namespace_valid(hdr->namespace_))
		rc = fy_err_set(-EINVAL, "manifest builder: namespace '%s': %s",
				hdr->namespace_, FY_NAMESPACE_RULE);
	if (rc)
		return rc;
	if (!is_pow2(hdr->block_size) || hdr->block_size < FY_BLOCK_MIN ||
	    hdr->block_size > FY_BLOCK_MAX)
		return fy_err_set(-EINVAL,
				  "manifest builder: block size %u is not a "
				  "power of two in %u..%u",
				  hdr->block_size, FY_BLOCK_MIN, FY_BLOCK_MAX);
	if (strlen(tmpdir) >= sizeof(b->tmpdir) - 32)
		return fy_err_set(-ENAMETOOLONG,
				  "manifest builder: %s: path too long",
				  tmpdir);

	b = calloc(1, sizeof(*b));
	if (!b)
		return fy_err_set(-ENOMEM, "manifest builder: out of memory");
	strcpy(b->tmpdir, tmpdir);
	memcpy(b->hdr.id, hdr->id, sizeof(b->hdr.id));
	memcpy(b->hdr.source, hdr->source, sizeof(b->hdr.source));
	memcpy(b->hdr.source_kind, hdr->source_kind,
	       sizeof(b->hdr.source_kind));
	memcpy(b->hdr.parent_id, hdr->parent_id, sizeof(b->hdr.parent_id));
	memcpy(b->hdr.owner, hdr->owner, sizeof(b->hdr.owner));
	memcpy(b->hdr.namespace_, hdr->namespace_, sizeof(b->hdr.namespace_));
	b->hdr.created_unix = hdr->created_unix;
	b->hdr.block_size = hdr->block_size;
	*out = b;
	return 0;
}

int fy_manifest_builder_begin_disk(struct fy_manifest_builder *b,
				   const struct fy_manifest_disk *disk)
{
	struct builder_disk *bd = NULL;
	int rc;

	if (b->finished)
		return fy_err_set(-EINVAL, "manifest %s: already finished",
				  b->hdr.id);
	if (b->disk_count >= FY_DISKS_MAX)
		return fy_err_set(-EINVAL, "manifest %s: more than %u disks",
				  b->hdr.id, FY_DISKS_MAX);
	if (disk->index != b->disk_count)
		return fy_err_set(-EINVAL,
				  "manifest %s: disk %u begun, the next disk "
				  "is %u",
				  b->hdr.id, disk->index, b->disk_count);
	if (disk->size > FY_DISK_SIZE_MAX)
		return fy_err_set(-EINVAL,
				  "manifest %s: disk %u size %" PRIu64
				  " exceeds the largest disk (%llu)",
				  b->hdr.id, disk->index, disk->size,
				  FY_DISK_SIZE_MAX);
	rc = check_field("disk label", disk->label, sizeof(disk->label));
	if (!rc)
		rc = check_field("disk change id", disk->change_id,
				 sizeof(disk->change_id));
	if (!rc)
		rc = check_field("disk transport", disk->transport,
				 sizeof(disk->transport));
	if (!rc)
		rc = check_field("disk id", disk->disk_id,
				 sizeof(disk->disk_id));
	if (rc)
		return rc;

	bd = calloc(1, sizeof(*bd));
	if (!bd)
		return fy_err_set(-ENOMEM, "manifest builder: out of memory");
	bd->d = *disk;
	bd->d.block_count =
		(disk->size + b->hdr.block_size - 1) / b->hdr.block_size;
	bd->d.data_blocks = 0;
	bd->d.hole_blocks = 0;
	rc = make_temp(b->tmpdir, "map", bd->path, sizeof(bd->path), &bd->fd);
	if (rc) {
		free(bd);
		return fy_err_wrap(rc, "manifest %s: disk %u map", b->hdr.id,
				   disk->index);
	}
	b->disks[b->disk_count++] = bd;
	return 0;
}

static int get_disk(struct fy_manifest_builder *b, uint32_t disk,
		    struct builder_disk **out)
{
	if (b->finished)
		return fy_err_set(-EINVAL, "manifest %s: already finished",
				  b->hdr.id);
	if (disk >= b->disk_count)
		return fy_err_set(-EINVAL, "manifest %s: disk %u not begun",
				  b->hdr.id, disk);
	if (b->disks[disk]->ended)
		return fy_err_set(-EINVAL, "manifest %s: disk %u already ended",
				  b->hdr.id, disk);
	*out = b->disks[disk];
	return 0;
}

int fy_manifest_builder_add(struct fy_manifest_builder *b, uint32_t disk,
			    uint64_t first,
			    const uint8_t (*digests)[FY_DIGEST_LEN],
			    size_t count)
{
	struct builder_disk *bd = NULL;
	uint64_t holes = 0;
	size_t i;
	int rc;

	rc = get_disk(b, disk, &bd);
	if (rc)
		return rc;
	if (first != bd->added)
		return fy_err_set(-EINVAL,
				  "manifest %s: disk %u entries given from "
				  "block %" PRIu64 ", expected block %" PRIu64,
				  b->hdr.id, disk, first, bd->added);
	if (count > bd->d.block_count - bd->added)
		return fy_err_set(-EINVAL,
				  "manifest %s: disk %u has %" PRIu64
				  " blocks, %zu entries from block %" PRIu64
				  " go past its end",
				  b->hdr.id, disk, bd->d.block_count, count,
				  first);
	if (!count)
		return 0;
	rc = fy_write_all(bd->fd, digests, count * FY_DIGEST_LEN);
	if (rc)
		return fy_err_wrap(rc, "manifest %s: disk %u map spool %s",
				   b->hdr.id, disk, bd->path);
	for (i = 0; i < count; i++)
		holes += fy_digest_is_hole(digests[i]);
	bd->added += count;
	bd->d.hole_blocks += holes;
	bd->d.data_blocks += count - holes;
	return 0;
}

int fy_manifest_builder_end_disk(struct fy_manifest_builder *b, uint32_t disk)
{
	struct builder_disk *bd = NULL;
	int rc;

	rc = get_disk(b, disk, &bd);
	if (rc)
		return rc;
	if (bd->added != bd->d.block_count)
		return fy_err_set(-EINVAL,
				  "manifest %s: disk %u ended after %" PRIu64
				  " of its %" PRIu64 " blocks",
				  b->hdr.id, disk, bd->added,
				  bd->d.block_count);
	bd->ended = true;
	return 0;
}

int fy_manifest_builder_set_vm_config(struct fy_manifest_builder *b,
				      const void *data, size_t len)
{
	struct fy_vmconfig *c = NULL;
	uint8_t *copy;
	int rc;

	if (b->finished)
		return fy_err_set(-EINVAL, "manifest %s: already finished",
				  b->hdr.id);
	rc = fy_vmconfig_decode(data, len, &c);
	fy_vmconfig_free(c);
	if (rc < 0)
		return fy_err_wrap(rc, "manifest %s", b->hdr.id);
	copy = malloc(len);
	if (!copy)
		return fy_err_set(-ENOMEM, "manifest builder: out of memory");
	memcpy(copy, data, len);
	free(b->vm_config);
	b->vm_config = copy;
	b->vm_config_len = len;
	return 0;
}

/* The record's backup disks must be disks of this manifest: checked when
 * every disk has been given. */
static int check_vm_config_disks(struct fy_manifest_builder *b)
{
	struct fy_vmconfig *c = NULL;
	int rc;

	if (!b->vm_config)
		return 0;
	rc = fy_vmconfig_decode(b->vm_config, b->vm_config_len, &c);
	if (rc == 0)
		rc = fy_vmconfig_check_backup(c, b->disk_count);
	fy_vmconfig_free(c);
	if (rc < 0)
		return fy_err_wrap(-EINVAL, "manifest %s", b->hdr.id);
	return 0;
}

int fy_manifest_builder_for_each(struct fy_manifest_builder *b,
				 int (*cb)(void *opaque,
					   const uint8_t digest[FY_DIGEST_LEN]),
				 void *opaque)
{
	uint8_t (*chunk)[FY_DIGEST_LEN];
	uint64_t first, n, i;
	uint32_t disk;
	int rc = 0;

	chunk = malloc(WALK_ENTRIES * FY_DIGEST_LEN);
	if (!chunk)
		return fy_err_set(-ENOMEM, "manifest builder: out of memory");
	for (disk = 0; disk < b->disk_count; disk++) {
		struct builder_disk *bd = b->disks[disk];

		for (first = 0; first < bd->added; first += n) {
			n = bd->added - first;
			if (n > WALK_ENTRIES)
				n = WALK_ENTRIES;
			rc = pread_exact(bd->fd, chunk, n * FY_DIGEST_LEN,
					 first * FY_DIGEST_LEN, bd->path);
			if (rc)
				goto out;
			for (i = 0; i < n; i++) {
				if (fy_digest_is_hole(chunk[i]))
					continue;
				rc = cb(opaque, chunk[i]);
				if (rc)
					goto out;
			}
		}
	}
out:
	free(chunk);
	return rc;
}

/* Writes p to fd and through the checksum. */
static int emit(int fd, EVP_MD_CTX *md, const void *p, size_t n,
		const char *path)
{
	int rc = fy_write_all(fd, p, n);

	if (rc)
		return fy_err_wrap(rc, "manifest %s", path);
	if (!EVP_DigestUpdate(md, p, n))
		return fy_err_set(-EIO, "manifest %s: SHA-256 failed", path);
	return 0;
}

static int pack_header(struct fy_manifest_builder *b, uint8_t **out,
		       size_t *outlen)
{
	Ferry__ManifestHeader h = FERRY__MANIFEST_HEADER__INIT;
	Ferry__ManifestDisk *pd = NULL, **pdp = NULL;
	uint8_t *buf = NULL;
	uint32_t i;
	size_t len;
	int rc;

	if (b->disk_count) {
		pd = calloc(b->disk_count, sizeof(*pd));
		pdp = calloc(b->disk_count, sizeof(*pdp));
		if (!pd || !pdp) {
			rc = fy_err_set(-ENOMEM, "manifest builder: out of "
					"memory");
			goto out;
		}
	}
	/* protobuf-c wants char *, but packing only reads the strings. */
	h.id = b->hdr.id;
	h.source = b->hdr.source;
	h.source_kind = b->hdr.source_kind;
	h.created_unix = b->hdr.created_unix;
	h.parent_id = b->hdr.parent_id;
	h.owner = b->hdr.owner;
	h.namespace_ = b->hdr.namespace_;
	h.block_size = b->hdr.block_size;
	h.n_disks = b->disk_count;
	h.disks = pdp;
	h.vm_config.data = b->vm_config;
	h.vm_config.len = b->vm_config_len;
	for (i = 0; i < b->disk_count; i++) {
		const struct fy_manifest_disk *d = &b->disks[i]->d;

		ferry__manifest_disk__init(&pd[i]);
		pd[i].index = d->index;
		pd[i].label = (char *)d->label;
		pd[i].size = d->size;
		pd[i].change_id = (char *)d->change_id;
		pd[i].transport = (char *)d->transport;
		pd[i].disk_id = (char *)d->disk_id;
		pd[i].block_count = d->block_count;
		pd[i].data_blocks = d->data_blocks;
		pd[i].hole_blocks = d->hole_blocks;
		pdp[i] = &pd[i];
	}
	len = ferry__manifest_header__get_packed_size(&h);
	/* 256 disks of the longest strings pack to about 340 KiB. */
	if (len < 1 || len > FY_MANIFEST_HEADER_MAX) {
		rc = fy_err_set(-EINVAL,
				"manifest %s: header packs to %zu bytes, "
				"outside 1..%u",
				b->hdr.id, len, FY_MANIFEST_HEADER_MAX);
		goto out;
	}
	buf = malloc(len);
	if (!buf) {
		rc = fy_err_set(-ENOMEM, "manifest builder: out of memory");
		goto out;
	}
	ferry__manifest_header__pack(&h, buf);
	*out = buf;
	*outlen = len;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	free(pdp);
	free(pd);
	return rc;
}

int fy_manifest_builder_finish(struct fy_manifest_builder *b, char *path,
			       size_t pathlen)
{
	char tmp[PATH_MAX] = "";
	uint8_t pre[FY_MANIFEST_PREAMBLE_LEN];
	uint8_t sum[FY_DIGEST_LEN];
	uint8_t *hdr = NULL, *chunk = NULL;
	EVP_MD_CTX *md = NULL;
	size_t hdr_len = 0;
	uint32_t i;
	int fd = -1, rc;

	if (b->finished)
		return fy_err_set(-EINVAL, "manifest %s: already finished",
				  b->hdr.id);
	for (i = 0; i < b->disk_count; i++)
		if (!b->disks[i]->ended)
			return fy_err_set(-EINVAL,
					  "manifest %s: disk %u not ended",
					  b->hdr.id, i);
	rc = check_vm_config_disks(b);
	if (rc)
		goto out;
	rc = pack_header(b, &hdr, &hdr_len);
	if (rc)
		goto out;
	chunk = malloc(STREAM_CHUNK);
	md = EVP_MD_CTX_new();
	if (!chunk || !md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		rc = fy_err_set(-ENOMEM, "manifest builder: out of memory");
		goto out;
	}
	rc = make_temp(b->tmpdir, "manifest", tmp, sizeof(tmp), &fd);
	if (rc)
		goto out;
	if (strlen(tmp) >= pathlen) {
		rc = fy_err_set(-ENAMETOOLONG,
				"manifest %s: %s does not fit in %zu bytes",
				b->hdr.id, tmp, pathlen);
		goto out;
	}

	memcpy(pre, FY_MANIFEST_MAGIC, 8);
	fy_put_be32(pre + 8, FY_MANIFEST_VERSION);
	fy_put_be32(pre + 12, (uint32_t)hdr_len);
	rc = emit(fd, md, pre, sizeof(pre), tmp);
	if (!rc)
		rc = emit(fd, md, hdr, hdr_len, tmp);
	for (i = 0; !rc && i < b->disk_count; i++) {
		struct builder_disk *bd = b->disks[i];
		uint64_t bytes = bd->added * FY_DIGEST_LEN, off;
		size_t n;

		for (off = 0; !rc && off < bytes; off += n) {
			n = bytes - off > STREAM_CHUNK ? STREAM_CHUNK
						       : (size_t)(bytes - off);
			rc = pread_exact(bd->fd, chunk, n, off, bd->path);
			if (!rc)
				rc = emit(fd, md, chunk, n, tmp);
		}
	}
	if (rc)
		goto out;
	if (!EVP_DigestFinal_ex(md, sum, NULL)) {
		rc = fy_err_set(-EIO, "manifest %s: SHA-256 failed", tmp);
		goto out;
	}
	rc = fy_write_all(fd, sum, sizeof(sum));
	if (rc) {
		fy_err_wrap(rc, "manifest %s", tmp);
		goto out;
	}
	if (fsync(fd)) {
		rc = fy_err_set(-errno, "manifest %s: fsync: %s", tmp,
				strerror(errno));
		goto out;
	}
	rc = close(fd);
	fd = -1;
	if (rc) {
		rc = fy_err_set(-errno, "manifest %s: close: %s", tmp,
				strerror(errno));
		goto out;
	}
	strcpy(path, tmp);
	b->finished = true;
out:
	if (fd >= 0)
		close(fd);
	if (rc && tmp[0])
		unlink(tmp);
	EVP_MD_CTX_free(md);
	free(chunk);
	free(hdr);
	return rc;
}

/* The finished manifest file is the caller's from finish on (it is renamed
 * away by fy_repo_backup_commit; a name in tmp/ may be reused after that,
 * so free must not touch it). */
void fy_manifest_builder_free(struct fy_manifest_builder *b)
{
	uint32_t i;

	if (!b)
		return;
	for (i = 0; i < b->disk_count; i++) {
		struct builder_disk *bd = b->disks[i];

		close(bd->fd);
		unlink(bd->path);
		free(bd);
	}
	free(b->vm_config);
	free(b);
}

bool fy_namespace_valid(const char *ns)
{
	size_t i, n = strnlen(ns, FY_NAMESPACE_MAX);

	if (n == 0 || n >= FY_NAMESPACE_MAX || ns[0] == '.' || ns[0] == '-')
		return false;
	for (i = 0; i < n; i++)
		if (!(isalnum((unsigned char)ns[i]) || ns[i] == '.' ||
		      ns[i] == '_' || ns[i] == '-'))
			return false;
	return true;
}
