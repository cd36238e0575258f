/* Frame decoding and the bounds every received frame is checked against. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire.h"
#include "check.h"
#include "../fuzz/block_view_diff.h"

static size_t pack(const Ferry__Frame *f, uint8_t **out)
{
	size_t len = ferry__frame__get_packed_size(f);

	*out = malloc(len ? len : 1);
	ferry__frame__pack(f, *out);
	return len;
}

static int decode_rc(const Ferry__Frame *f)
{
	uint8_t *buf;
	size_t len = pack(f, &buf);
	fy_frame *out = NULL;
	int rc = fy_frame_decode(buf, len, &out);

	fy_frame_free(out);
	free(buf);
	return rc;
}

/* fy_put_block_head followed by the data is byte for byte what
 * protobuf-c packs for the same PutBlock, and decodes to it: sizes across
 * the varint boundaries, both codecs, a zero plain size. */
static void test_put_block_head(void)
{
	static const size_t sizes[] = { 0, 1, 127, 128, 16383, 16384,
					 65536, 1048576, 2097151, 2097152,
					 8388608 };
	static const uint32_t plains[] = { 0, 1, 127, 128, 1048576 };
	uint8_t digest[FY_DIGEST_LEN];
	uint8_t *data = malloc(8388608);
	size_t i, k, c;

	CHECK(data != NULL);
	for (i = 0; i < sizeof(digest); i++)
		digest[i] = (uint8_t)(0xa0 + i);
	for (i = 0; i < 8388608; i++)
		data[i] = (uint8_t)(i * 7);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (k = 0; k < sizeof(plains) / sizeof(plains[0]); k++)
			for (c = 0; c < 2; c++) {
				Ferry__Frame f = FERRY__FRAME__INIT;
				Ferry__PutBlock put = FERRY__PUT_BLOCK__INIT;
				uint8_t head[FY_PUT_HEAD_MAX], *want, *got;
				size_t wlen, hlen;
				fy_frame *out = NULL;

				put.digest.data = digest;
				put.digest.len = sizeof(digest);
				put.plain_size = plains[k];
				put.codec = (Ferry__Codec)c;
				put.data.data = data;
				put.data.len = sizes[i];
				f.body_case = FERRY__FRAME__BODY_PUT_BLOCK;
				f.put_block = &put;
				wlen = pack(&f, &want);
				hlen = fy_put_block_head(head, digest, plains[k],
							 (uint32_t)c, sizes[i]);
				CHECK(hlen <= FY_PUT_HEAD_MAX);
				CHECK(hlen + sizes[i] == wlen);
				got = malloc(wlen);
				CHECK(got != NULL);
				memcpy(got, head, hlen);
				memcpy(got + hlen, data, sizes[i]);
				CHECK(!memcmp(got, want, wlen));
				out = ferry__frame__unpack(NULL, wlen, got);
				CHECK(out && out->body_case ==
						     FERRY__FRAME__BODY_PUT_BLOCK);
				CHECK(out->put_block->data.len == sizes[i]);
				CHECK(out->put_block->plain_size == plains[k]);
				CHECK(out->put_block->codec == (Ferry__Codec)c);
				ferry__frame__free_unpacked(out, NULL);
				free(got);
				free(want);
			}
	free(data);
}


/* A Block frame as protobuf-c packs it. */
static size_t pack_block(const uint8_t *digest, size_t dlen, uint32_t plain,
			 int codec, const uint8_t *data, size_t len,
			 uint8_t **out)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__Block b = FERRY__BLOCK__INIT;

	b.digest.data = (uint8_t *)digest;
	b.digest.len = dlen;
	b.plain_size = plain;
	b.codec = (Ferry__Codec)codec;
	b.data.data = (uint8_t *)data;
	b.data.len = len;
	f.body_case = FERRY__FRAME__BODY_BLOCK;
	f.block = &b;
	return pack(&f, out);
}

/* fy_block_view_parse reads protobuf-c's Block frames in place with the
 * same fields and checks, leaves every other frame and encoding to
 * protobuf-c, and never answers differently from it (block_view_diff). */
static void test_block_view(void)
{
	static const size_t sizes[] = { 1, 127, 128, 16384, 1048576,
					 8388608 };
	uint8_t digest[FY_DIGEST_LEN], *data = malloc(8388608), *buf, *b2;
	struct fy_block_view v;
	size_t i, len, n;
	int c;

	CHECK(data != NULL);
	for (i = 0; i < sizeof(digest); i++)
		digest[i] = (uint8_t)(0x40 + i);
	for (i = 0; i < 8388608; i++)
		data[i] = (uint8_t)(i * 13);
	/* Every size across the varint boundaries, both codecs (NONE is
	 * left out of the encoding: proto3's zero). */
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (c = 0; c < 2; c++) {
			len = pack_block(digest, sizeof(digest),
					 (uint32_t)sizes[i], c, data, sizes[i],
					 &buf);
			CHECK(fy_block_view_parse(buf, len, &v) == 1);
			CHECK(v.digest_len == FY_DIGEST_LEN &&
			      !memcmp(v.digest, digest, FY_DIGEST_LEN));
			CHECK(v.plain_size == sizes[i] && v.codec == c);
			CHECK(v.data == buf + len - sizes[i]);
			CHECK(v.data_len == sizes[i]);
			CHECK(block_view_diff(buf, len) == 1);
			/* Cut anywhere: never a Block, never a disagreement. */
			for (n = 0; n < len && n < 64; n++)
				CHECK(block_view_diff(buf, n) == 0);
			CHECK(block_view_diff(buf, len - 1) == 0);
			free(buf);
		}

	/* Bad fields in the plain encoding fail the checks, as decoded. */
	len = pack_block(digest, 31, 100, 0, data, 100, &buf);
	CHECK(fy_block_view_parse(buf, len, &v) == -EBADMSG);
	CHECK(block_view_diff(buf, len) == -EBADMSG);
	free(buf);
	len = pack_block(digest, sizeof(digest), 99, 0, data, 100, &buf);
	CHECK(block_view_diff(buf, len) == -EBADMSG);
	free(buf);
	len = pack_block(digest, sizeof(digest), (8u << 20) + 1, 1, data, 100,
			 &buf);
	CHECK(block_view_diff(buf, len) == -EBADMSG);
	free(buf);
	len = pack_block(digest, sizeof(digest), 100, 7, data, 100, &buf);
	CHECK(block_view_diff(buf, len) == -EBADMSG);
	free(buf);
	len = pack_block(digest, sizeof(digest), 0, 1, data, 100, &buf);
	CHECK(block_view_diff(buf, len) == -EBADMSG);
	free(buf);

	/* The fields in another order are still read in place. Body of
	 * Frame{block}: tag 0x92 0x01, a one-byte length, then the Block. */
	{
		uint8_t f[3 + 2 + 32 + 3 + 2 + 2 + 4] = { 0x92, 0x01 };
		size_t k = 3;

		f[k++] = 0x22; /* data, 4 bytes */
		f[k++] = 4;
		memcpy(f + k, "abcd", 4);
		k += 4;
		f[k++] = 0x10; /* plain_size 4 */
		f[k++] = 4;
		f[k++] = 0x0a; /* digest */
		f[k++] = FY_DIGEST_LEN;
		memcpy(f + k, digest, FY_DIGEST_LEN);
		k += FY_DIGEST_LEN;
		f[2] = (uint8_t)(k - 3);
		CHECK(block_view_diff(f, k) == 1);
		CHECK(fy_block_view_parse(f, k, &v) == 1 && v.codec == 0 &&
		      v.plain_size == 4 && !memcmp(v.data, "abcd", 4));
		/* A field twice, an unknown field, a long varint, bytes after
		 * the Block, a wire type that does not fit: protobuf-c's. */
		b2 = malloc(k + 8);
		memcpy(b2, f, k);
		b2[k] = 0x10; /* plain_size again */
		b2[k + 1] = 4;
		b2[2] = (uint8_t)(k + 2 - 3);
		CHECK(fy_block_view_parse(b2, k + 2, &v) == 0);
		CHECK(block_view_diff(b2, k + 2) == 0);
		b2[k] = 0x28; /* field 5, varint */
		CHECK(fy_block_view_parse(b2, k + 2, &v) == 0);
		CHECK(block_view_diff(b2, k + 2) == 0);
		b2[k] = 0x1a; /* field 3 (codec, absent so far) as bytes */
		b2[k + 1] = 0;
		CHECK(fy_block_view_parse(b2, k + 2, &v) == 0);
		CHECK(block_view_diff(b2, k + 2) == 0);
		b2[2] = (uint8_t)(k - 3);
		b2[k] = 0x08; /* Frame field 1 after the Block */
		b2[k + 1] = 0;
		CHECK(fy_block_view_parse(b2, k + 2, &v) == 0);
		CHECK(block_view_diff(b2, k + 2) == 0);
		memcpy(b2, f, k);
		/* f[9] is plain_size's tag, f[10] its value. */
		CHECK(b2[9] == 0x10 && b2[10] == 4);
		b2[10] = 0x84; /* 4 as a two-byte varint */
		memmove(b2 + 12, b2 + 11, k - 11);
		b2[11] = 0x00;
		b2[2]++;
		CHECK(fy_block_view_parse(b2, k + 1, &v) == 0);
		CHECK(block_view_diff(b2, k + 1) == 0);
		free(b2);
	}

	/* Other frames are protobuf-c's. */
	{
		Ferry__Frame f = FERRY__FRAME__INIT;
		Ferry__Error e = FERRY__ERROR__INIT;

		e.code = -5;
		e.message = "no such block";
		f.body_case = FERRY__FRAME__BODY_ERROR;
		f.error = &e;
		len = pack(&f, &buf);
		CHECK(fy_block_view_parse(buf, len, &v) == 0);
		CHECK(block_view_diff(buf, len) == 0);
		free(buf);
	}
	free(data);
}

int main(void)
{
	uint8_t digest[FY_DIGEST_LEN] = { 1 }, data[100] = { 0 };
	ProtobufCBinaryData bins[3];
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__PutBlock put = FERRY__PUT_BLOCK__INIT;
	Ferry__QueryBlocks q = FERRY__QUERY_BLOCKS__INIT;
	Ferry__MapChunk mc = FERRY__MAP_CHUNK__INIT;
	Ferry__Hello h = FERRY__HELLO__INIT;
	fy_frame *out = NULL;
	uint8_t garbage[64];
	size_t i;

	/* A good PutBlock round-trips. */
	put.digest.data = digest;
	put.digest.len = sizeof(digest);
	put.plain_size = sizeof(data);
	put.codec = FERRY__CODEC__CODEC_NONE;
	put.data.data = data;
	put.data.len = sizeof(data);
	f.body_case = FERRY__FRAME__BODY_PUT_BLOCK;
	f.put_block = &put;
	CHECK(decode_rc(&f) == 0);

	/* A digest of the wrong length. */
	put.digest.len = 31;
	CHECK(decode_rc(&f) == -EBADMSG);
	put.digest.len = 32;
	/* Raw data whose length is not the plain size. */
	put.plain_size = 99;
	CHECK(decode_rc(&f) == -EBADMSG);
	/* A plain size beyond the largest block. */
	put.plain_size = (8u << 20) + 1;
	put.codec = FERRY__CODEC__CODEC_ZSTD;
	CHECK(decode_rc(&f) == -EBADMSG);
	/* An unknown codec. */
	put.plain_size = 100;
	put.codec = 7;
	CHECK(decode_rc(&f) == -EBADMSG);

	/* Map chunks carry digests or empty holes, nothing else. */
	bins[0].data = digest;
	bins[0].len = 32;
	bins[1].data = digest;
	bins[1].len = 0;
	bins[2].data = digest;
	bins[2].len = 5;
	mc.digests = bins;
	mc.n_digests = 2;
	f.body_case = FERRY__FRAME__BODY_MAP_CHUNK;
	f.map_chunk = &mc;
	CHECK(decode_rc(&f) == 0);
	mc.n_digests = 3;
	CHECK(decode_rc(&f) == -EBADMSG);

	/* A query with a hole is refused: holes are never queried. */
	q.digests = bins;
	q.n_digests = 2;
	f.body_case = FERRY__FRAME__BODY_QUERY_BLOCKS;
	f.query_blocks = &q;
	CHECK(decode_rc(&f) == -EBADMSG);
	q.n_digests = 1;
	CHECK(decode_rc(&f) == 0);

	/* Strings are bounded. */
	{
		char *long_name = malloc(FY_STRING_MAX + 2);

		memset(long_name, 'a', FY_STRING_MAX + 1);
		long_name[FY_STRING_MAX + 1] = 0;
		h.software = long_name;
		f.body_case = FERRY__FRAME__BODY_HELLO;
		f.hello = &h;
		CHECK(decode_rc(&f) == -EBADMSG);
		long_name[10] = 0;
		CHECK(decode_rc(&f) == 0);
		free(long_name);
	}

	/* Garbage, empty and oversized input. */
	for (i = 0; i < sizeof(garbage); i++)
		garbage[i] = (uint8_t)(i * 37 + 11);
	CHECK(fy_frame_decode(garbage, sizeof(garbage), &out) < 0);
	CHECK(fy_frame_decode(garbage, 0, &out) == -EMSGSIZE);
	CHECK(fy_frame_decode(garbage, FY_FRAME_MAX + 1, &out) == -EMSGSIZE);
	/* A frame with no body is of no known type. */
	{
		Ferry__Frame empty = FERRY__FRAME__INIT;

		CHECK(decode_rc(&empty) < 0);
	}
	/* A VM configuration record: at most FY_VM_CONFIG_WIRE_MAX bytes, in
	 * a Commit and in a listed backup alike (its content is image's to
	 * check). */
	{
		static uint8_t rec[FY_VM_CONFIG_WIRE_MAX + 1];
		Ferry__Commit commit = FERRY__COMMIT__INIT;
		Ferry__BackupList bl = FERRY__BACKUP_LIST__INIT;
		Ferry__BackupSummary sum = FERRY__BACKUP_SUMMARY__INIT, *sp = &sum;

		commit.vm_config.data = rec;
		commit.vm_config.len = FY_VM_CONFIG_WIRE_MAX;
		f.body_case = FERRY__FRAME__BODY_COMMIT;
		f.commit = &commit;
		CHECK(decode_rc(&f) == 0);
		commit.vm_config.len = FY_VM_CONFIG_WIRE_MAX + 1;
		CHECK(decode_rc(&f) == -EBADMSG);
		CHECK(strstr(fy_err_msg(), "Commit.vm_config of 65537 bytes"));
		sum.vm_config.data = rec;
		sum.vm_config.len = FY_VM_CONFIG_WIRE_MAX;
		bl.backups = &sp;
		bl.n_backups = 1;
		f.body_case = FERRY__FRAME__BODY_BACKUP_LIST;
		f.backup_list = &bl;
		CHECK(decode_rc(&f) == 0);
		sum.vm_config.len = FY_VM_CONFIG_WIRE_MAX + 1;
		CHECK(decode_rc(&f) == -EBADMSG);
		CHECK(strstr(fy_err_msg(), "BackupSummary.vm_config"));
	}
	test_put_block_head();
	test_block_view();
	CHECK_DONE();
}
