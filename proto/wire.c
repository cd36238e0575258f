/*
 * Frame decoding and the bounds every received frame must meet. Nothing a
 * peer sends reaches the rest of Ferry before fy_frame_check passed it.
 */
#include <errno.h>
#include <string.h>

#include "proto/wire.h"

/* protobuf-c allocates each field as it decodes; a frame is at most
 * FY_FRAME_MAX bytes, so its decoded form is bounded by a small multiple. */

static int check_string(const char *s, const char *what)
{
	if (s && strnlen(s, FY_STRING_MAX + 1) > FY_STRING_MAX)
		return fy_err_set(-EBADMSG, "%s is longer than %d bytes", what,
				  FY_STRING_MAX);
	return 0;
}

static int check_digest(ProtobufCBinaryData d, bool hole_ok, const char *what)
{
	if (d.len == FY_DIGEST_LEN || (hole_ok && d.len == 0))
		return 0;
	return fy_err_set(-EBADMSG, "%s digest has %zu bytes, not %d", what,
			  d.len, FY_DIGEST_LEN);
}

static int check_digests(const ProtobufCBinaryData *d, size_t n, size_t max,
			 bool hole_ok, const char *what)
{
	size_t i;
	int rc;

	if (n > max)
		return fy_err_set(-EBADMSG, "%s carries %zu digests, more than %zu",
				  what, n, max);
	for (i = 0; i < n; i++) {
		rc = check_digest(d[i], hole_ok, what);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A listed backup: its strings and a bounded number of disks. */
static int check_summary(const Ferry__BackupSummary *b)
{
	int rc = check_string(b->id, "BackupSummary.id");

	if (!rc)
		rc = check_string(b->source, "BackupSummary.source");
	if (!rc)
		rc = check_string(b->source_kind, "BackupSummary.source_kind");
	if (!rc)
		rc = check_string(b->parent_id, "BackupSummary.parent_id");
	if (!rc && b->vm_config.len > FY_VM_CONFIG_WIRE_MAX)
		rc = fy_err_set(-EBADMSG, "BackupSummary.vm_config of %zu bytes "
				"is over %u", b->vm_config.len,
				FY_VM_CONFIG_WIRE_MAX);
	if (!rc && b->n_disks > 256)
		rc = fy_err_set(-EBADMSG, "BackupSummary lists %zu disks",
				b->n_disks);
	for (size_t i = 0; !rc && i < b->n_disks; i++) {
		rc = check_string(b->disks[i]->label, "DiskSummary.label");
		if (!rc)
			rc = check_string(b->disks[i]->change_id,
					  "DiskSummary.change_id");
		if (!rc)
			rc = check_string(b->disks[i]->transport,
					  "DiskSummary.transport");
		if (!rc)
			rc = check_string(b->disks[i]->disk_id,
					  "DiskSummary.disk_id");
	}
	return rc;
}

/* The largest block the protocol carries, plain or encoded. */
#define BLOCK_LIMIT (8u << 20)

static int check_block(ProtobufCBinaryData digest, uint32_t plain_size,
		       Ferry__Codec codec, ProtobufCBinaryData data,
		       const char *what)
{
	int rc = check_digest(digest, false, what);

	if (rc < 0)
		return rc;
	if (plain_size == 0 || plain_size > BLOCK_LIMIT)
		return fy_err_set(-EBADMSG, "%s plain size %u is outside 1..%u",
				  what, plain_size, BLOCK_LIMIT);
	if (data.len > BLOCK_LIMIT)
		return fy_err_set(-EBADMSG, "%s data of %zu bytes is over %u",
				  what, data.len, BLOCK_LIMIT);
	if (codec != FERRY__CODEC__CODEC_NONE && codec != FERRY__CODEC__CODEC_ZSTD)
		return fy_err_set(-EBADMSG, "%s has unknown codec %d", what, codec);
	if (codec == FERRY__CODEC__CODEC_NONE && data.len != plain_size)
		return fy_err_set(-EBADMSG, "%s: raw data of %zu bytes for a "
				  "%u-byte block", what, data.len, plain_size);
	return 0;
}

int fy_frame_check(const fy_frame *f)
{
	int rc = 0;

	switch (f->body_case) {
	case FERRY__FRAME__BODY_HELLO:
		rc = check_string(f->hello->software, "Hello.software");
		if (!rc && f->hello->n_features > 64)
			rc = fy_err_set(-EBADMSG, "Hello lists %zu features",
					f->hello->n_features);
		for (size_t i = 0; !rc && i < f->hello->n_features; i++)
			rc = check_string(f->hello->features[i], "Hello.features");
		break;
	case FERRY__FRAME__BODY_HELLO_REPLY:
		rc = check_string(f->hello_reply->software, "HelloReply.software");
		if (!rc)
			rc = check_string(f->hello_reply->repository_id,
					  "HelloReply.repository_id");
		if (!rc && f->hello_reply->n_features > 64)
			rc = fy_err_set(-EBADMSG, "HelloReply lists %zu features",
					f->hello_reply->n_features);
		for (size_t i = 0; !rc && i < f->hello_reply->n_features; i++)
			rc = check_string(f->hello_reply->features[i],
					  "HelloReply.features");
		break;
	case FERRY__FRAME__BODY_BEGIN_BACKUP:
		rc = check_string(f->begin_backup->source, "BeginBackup.source");
		if (!rc)
			rc = check_string(f->begin_backup->source_kind,
					  "BeginBackup.source_kind");
		if (!rc)
			rc = check_string(f->begin_backup->parent_id,
					  "BeginBackup.parent_id");
		break;
	case FERRY__FRAME__BODY_BACKUP_STARTED:
		rc = check_string(f->backup_started->backup_id,
				  "BackupStarted.backup_id");
		break;
	case FERRY__FRAME__BODY_BEGIN_DISK:
		rc = check_string(f->begin_disk->label, "BeginDisk.label");
		if (!rc)
			rc = check_string(f->begin_disk->change_id,
					  "BeginDisk.change_id");
		if (!rc)
			rc = check_string(f->begin_disk->transport,
					  "BeginDisk.transport");
		if (!rc)
			rc = check_string(f->begin_disk->disk_id,
					  "BeginDisk.disk_id");
		break;
	case FERRY__FRAME__BODY_QUERY_BLOCKS:
		rc = check_digests(f->query_blocks->digests,
				   f->query_blocks->n_digests, FY_QUERY_MAX, false,
				   "QueryBlocks");
		break;
	case FERRY__FRAME__BODY_QUERY_REPLY:
		if (f->query_reply->missing.len > (FY_QUERY_MAX + 7) / 8)
			rc = fy_err_set(-EBADMSG, "QueryReply bitmap of %zu bytes",
					f->query_reply->missing.len);
		break;
	case FERRY__FRAME__BODY_PUT_BLOCK:
		rc = check_block(f->put_block->digest, f->put_block->plain_size,
				 f->put_block->codec, f->put_block->data,
				 "PutBlock");
		break;
	case FERRY__FRAME__BODY_MAP_CHUNK:
		rc = check_digests(f->map_chunk->digests, f->map_chunk->n_digests,
				   FY_MAP_CHUNK_MAX, true, "MapChunk");
		break;
	case FERRY__FRAME__BODY_COMMITTED:
		rc = check_string(f->committed->backup_id, "Committed.backup_id");
		break;
	case FERRY__FRAME__BODY_LIST_BACKUPS:
		rc = check_string(f->list_backups->after_id, "ListBackups.after_id");
		if (!rc)
			rc = check_string(f->list_backups->id, "ListBackups.id");
		break;
	case FERRY__FRAME__BODY_BACKUP_LIST:
		if (f->backup_list->n_backups > FY_LIST_PAGE)
			rc = fy_err_set(-EBADMSG, "BackupList page of %zu backups",
					f->backup_list->n_backups);
		for (size_t i = 0; !rc && i < f->backup_list->n_backups; i++)
			rc = check_summary(f->backup_list->backups[i]);
		break;
	case FERRY__FRAME__BODY_GET_MAP:
		rc = check_string(f->get_map->backup_id, "GetMap.backup_id");
		break;
	case FERRY__FRAME__BODY_GET_BLOCKS:
		rc = check_digests(f->get_blocks->digests, f->get_blocks->n_digests,
				   FY_GET_MAX, false, "GetBlocks");
		break;
	case FERRY__FRAME__BODY_BLOCK:
		rc = check_block(f->block->digest, f->block->plain_size,
				 f->block->codec, f->block->data, "Block");
		break;
	case FERRY__FRAME__BODY_ERROR:
		rc = check_string(f->error->message, "Error.message");
		break;
	case FERRY__FRAME__BODY_COMMIT:
		if (f->commit->vm_config.len > FY_VM_CONFIG_WIRE_MAX)
			rc = fy_err_set(-EBADMSG, "Commit.vm_config of %zu bytes "
					"is over %u", f->commit->vm_config.len,
					FY_VM_CONFIG_WIRE_MAX);
		break;
	case FERRY__FRAME__BODY_END_DISK:
	case FERRY__FRAME__BODY_MAP_END:
		break;
	default:
		rc = fy_err_set(-EBADMSG, "frame of unknown type %d",
				(int)f->body_case);
	}
	return rc;
}

int fy_frame_decode(const uint8_t *buf, size_t len, fy_frame **out)
{
	fy_frame *f;
	int rc;

	if (len == 0 || len > FY_FRAME_MAX)
		return fy_err_set(-EMSGSIZE, "frame of %zu bytes is outside 1..%u",
				  len, FY_FRAME_MAX);
	f = ferry__frame__unpack(NULL, len, buf);
	if (!f)
		return fy_err_set(-EBADMSG, "malformed frame (%zu bytes) that "
				  "does not decode", len);
	rc = fy_frame_check(f);
	if (rc < 0) {
		ferry__frame__free_unpacked(f, NULL);
		return rc;
	}
	*out = f;
	return 0;
}

void fy_frame_free(fy_frame *f)
{
	if (f)
		ferry__frame__free_unpacked(f, NULL);
}

const char *fy_frame_name(const fy_frame *f)
{
	switch (f->body_case) {
	case FERRY__FRAME__BODY_HELLO: return "Hello";
	case FERRY__FRAME__BODY_HELLO_REPLY: return "HelloReply";
	case FERRY__FRAME__BODY_BEGIN_BACKUP: return "BeginBackup";
	case FERRY__FRAME__BODY_BACKUP_STARTED: return "BackupStarted";
	case FERRY__FRAME__BODY_BEGIN_DISK: return "BeginDisk";
	case FERRY__FRAME__BODY_QUERY_BLOCKS: return "QueryBlocks";
	case FERRY__FRAME__BODY_QUERY_REPLY: return "QueryReply";
	case FERRY__FRAME__BODY_PUT_BLOCK: return "PutBlock";
	case FERRY__FRAME__BODY_MAP_CHUNK: return "MapChunk";
	case FERRY__FRAME__BODY_END_DISK: return "EndDisk";
	case FERRY__FRAME__BODY_COMMIT: return "Commit";
	case FERRY__FRAME__BODY_COMMITTED: return "Committed";
	case FERRY__FRAME__BODY_LIST_BACKUPS: return "ListBackups";
	case FERRY__FRAME__BODY_BACKUP_LIST: return "BackupList";
	case FERRY__FRAME__BODY_GET_MAP: return "GetMap";
	case FERRY__FRAME__BODY_MAP_END: return "MapEnd";
	case FERRY__FRAME__BODY_GET_BLOCKS: return "GetBlocks";
	case FERRY__FRAME__BODY_BLOCK: return "Block";
	case FERRY__FRAME__BODY_ERROR: return "Error";
	default: return "unknown";
	}
}

/* Protocol buffers' base-128 varint. */
static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static size_t varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Field tags: (number << 3) | wire type; 2 is length-delimited, 0 varint. */
#define TAG_LEN(n) ((uint8_t)((n) << 3 | 2))
#define TAG_VARINT(n) ((uint8_t)((n) << 3 | 0))
_Static_assert(FERRY__FRAME__BODY_PUT_BLOCK < 16, "a one-byte tag");

size_t fy_put_block_head(uint8_t *out, const uint8_t digest[FY_DIGEST_LEN],
			 uint32_t plain_size, uint32_t codec, size_t dlen)
{
	/* As protobuf-c packs proto3: fields in number order, a zero
	 * scalar or empty bytes left out. */
	size_t inner = 2 + FY_DIGEST_LEN + dlen;
	size_t n = 0;

	if (dlen)
		inner += 1 + varint_len(dlen);
	if (plain_size)
		inner += 1 + varint_len(plain_size);
	if (codec)
		inner += 1 + varint_len(codec);
	out[n++] = TAG_LEN(FERRY__FRAME__BODY_PUT_BLOCK);
	n += put_varint(out + n, inner);
	out[n++] = TAG_LEN(1);
	out[n++] = FY_DIGEST_LEN;
	memcpy(out + n, digest, FY_DIGEST_LEN);
	n += FY_DIGEST_LEN;
	if (plain_size) {
		out[n++] = TAG_VARINT(2);
		n += put_varint(out + n, plain_size);
	}
	if (codec) {
		out[n++] = TAG_VARINT(3);
		n += put_varint(out + n, codec);
	}
	if (dlen) {
		out[n++] = TAG_LEN(4);
		n += put_varint(out + n, dlen);
	}
	return n;
}

/* ---- a Block frame read in place ------------------------------------- */

/* A varint of at most max_bytes bytes at *p (< end); false if it is longer,
 * runs past end, or is not the shortest form protobuf-c writes (a last
 * byte of 0 after the first): those are left to protobuf-c. */
static bool get_varint(const uint8_t **p, const uint8_t *end,
		       unsigned max_bytes, uint64_t *v)
{
	const uint8_t *q = *p;
	uint64_t x = 0;
	unsigned i;

	for (i = 0; i < max_bytes && q < end; i++) {
		uint8_t b = *q++;

		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			if (i > 0 && b == 0)
				return false;
			*p = q;
			*v = x;
			return true;
		}
	}
	return false;
}

/* One length-delimited field's bytes at *p: false past end. */
static bool get_bytes(const uint8_t **p, const uint8_t *end,
		      const uint8_t **data, size_t *len)
{
	uint64_t n;

	if (!get_varint(p, end, 5, &n) || n > (uint64_t)(end - *p))
		return false;
	*data = *p;
	*len = (size_t)n;
	*p += n;
	return true;
}

int fy_block_view_parse(const uint8_t *buf, size_t len,
			struct fy_block_view *v)
{
	const uint8_t *p = buf, *end = buf + len, *body;
	size_t blen;
	uint64_t tag, x;
	unsigned seen = 0;
	ProtobufCBinaryData digest, data;

	if (len > FY_FRAME_MAX)
		return 0;
	/* The frame: field 18 (block), length-delimited, and nothing else. */
	if (!get_varint(&p, end, 2, &tag) ||
	    tag != ((uint64_t)FERRY__FRAME__BODY_BLOCK << 3 | 2) ||
	    !get_bytes(&p, end, &body, &blen) || p != end)
		return 0;
	memset(v, 0, sizeof(*v));
	p = body;
	end = body + blen;
	while (p < end) {
		unsigned field;

		if (!get_varint(&p, end, 1, &tag))
			return 0;
		field = (unsigned)(tag >> 3);
		/* Each known field once, in the form protobuf-c writes it;
		 * anything else (unknown fields, a field twice, a wider
		 * varint) goes to protobuf-c, which knows every rule. */
		if (field < 1 || field > 4 || (seen & 1u << field))
			return 0;
		seen |= 1u << field;
		switch (tag) {
		case 1 << 3 | 2:
			if (!get_bytes(&p, end, &v->digest, &v->digest_len))
				return 0;
			break;
		case 2 << 3 | 0:
			if (!get_varint(&p, end, 5, &x) || x > UINT32_MAX)
				return 0;
			v->plain_size = (uint32_t)x;
			break;
		case 3 << 3 | 0:
			if (!get_varint(&p, end, 5, &x) || x > INT32_MAX)
				return 0;
			v->codec = (int)x;
			break;
		case 4 << 3 | 2:
			if (!get_bytes(&p, end, &v->data, &v->data_len))
				return 0;
			break;
		default:
			return 0;
		}
	}
	/* The bounds fy_frame_check puts on a decoded Block. */
	digest.data = (uint8_t *)v->digest;
	digest.len = v->digest_len;
	data.data = (uint8_t *)v->data;
	data.len = v->data_len;
	if (check_block(digest, v->plain_size, (Ferry__Codec)v->codec, data,
			"Block") < 0)
		return -EBADMSG;
	return 1;
}

void fy_block_view_of(const Ferry__Block *b, struct fy_block_view *v)
{
	v->digest = b->digest.data;
	v->digest_len = b->digest.len;
	v->plain_size = b->plain_size;
	v->codec = (int)b->codec;
	v->data = b->data.data;
	v->data_len = b->data.len;
}
