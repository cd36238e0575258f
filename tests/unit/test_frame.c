/* Frame decoding and the bounds every received frame is checked against. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire.h"
#include "check.h"

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
	CHECK_DONE();
}
