/* The block codec: zstd when it pays, raw otherwise, and a decoder that
 * trusts nothing it is given. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "check.h"

#define LEN (256u << 10)

static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	size_t i;

	for (i = 0; i < len; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		p[i] = (uint8_t)seed;
	}
}

static void fill_text(uint8_t *p, size_t len)
{
	static const char line[] = "ferry backs up virtual disks, block "
				   "by block; ";
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)line[i % (sizeof(line) - 1)];
}

static void test_compressible(void)
{
	uint8_t *plain = malloc(LEN), *enc = malloc(LEN), *dec = malloc(LEN);
	uint8_t digest[FY_DIGEST_LEN];
	enum fy_codec codec = FY_CODEC_NONE;
	size_t n = 0;

	fill_text(plain, LEN);
	fy_sha256(plain, LEN, digest);
	CHECK_RC(fy_block_encode(plain, LEN, 3, enc, LEN, &n, &codec));
	CHECK(codec == FY_CODEC_ZSTD);
	CHECK(n > 0 && n < LEN / 10);
	memset(dec, 0xaa, LEN);
	CHECK_RC(fy_block_decode(codec, enc, n, LEN, digest, dec, LEN));
	CHECK(!memcmp(plain, dec, LEN));

	/* Damage: wrong digest, truncated data, wrong plain size. */
	digest[5] ^= 1;
	fy_err_clear();
	CHECK(fy_block_decode(codec, enc, n, LEN, digest, dec, LEN) ==
	      -EBADMSG);
	CHECK(strstr(fy_err_msg(), "hashes to") != NULL);
	digest[5] ^= 1;
	CHECK(fy_block_decode(codec, enc, n - 7, LEN, digest, dec, LEN) ==
	      -EBADMSG);
	CHECK(strstr(fy_err_msg(), "zstd") != NULL);
	CHECK(fy_block_decode(codec, enc, n, LEN - 1, digest, dec, LEN) ==
	      -EBADMSG);
	CHECK(fy_block_decode(codec, enc, n, LEN + 1, digest, dec, LEN + 1) ==
	      -EBADMSG);
	/* A bigger claimed size than the buffer is the caller's mistake. */
	CHECK(fy_block_decode(codec, enc, n, LEN, digest, dec, LEN - 1) ==
	      -EINVAL);
	/* Out-of-range sizes and codecs. */
	CHECK(fy_block_decode(codec, enc, n, FY_BLOCK_MAX + 1, digest, dec,
			      LEN) == -EBADMSG);
	CHECK(fy_block_decode((enum fy_codec)7, enc, n, LEN, digest, dec,
			      LEN) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "unknown codec") != NULL);
	/* Garbage that is not a zstd frame. */
	CHECK(fy_block_decode(FY_CODEC_ZSTD, plain, 100, LEN, digest, dec,
			      LEN) == -EBADMSG);
	free(plain);
	free(enc);
	free(dec);
}

static void test_random(void)
{
	uint8_t *plain = malloc(LEN), *enc = malloc(LEN), *dec = malloc(LEN);
	uint8_t digest[FY_DIGEST_LEN];
	enum fy_codec codec = FY_CODEC_ZSTD;
	size_t n = 0;

	fill_random(plain, LEN, 42);
	fy_sha256(plain, LEN, digest);
	CHECK_RC(fy_block_encode(plain, LEN, 3, enc, LEN, &n, &codec));
	CHECK(codec == FY_CODEC_NONE);
	CHECK(n == LEN);
	CHECK(!memcmp(plain, enc, LEN));
	CHECK_RC(fy_block_decode(codec, enc, n, LEN, digest, dec, LEN));
	CHECK(!memcmp(plain, dec, LEN));
	/* Raw: the stored length must be the plain size. */
	CHECK(fy_block_decode(codec, enc, n - 1, LEN, digest, dec, LEN) ==
	      -EBADMSG);
	CHECK(fy_block_decode(codec, enc, n - 1, LEN - 1, digest, dec, LEN) ==
	      -EBADMSG);
	enc[100] ^= 0x40;
	CHECK(fy_block_decode(codec, enc, n, LEN, digest, dec, LEN) ==
	      -EBADMSG);
	/* An output buffer smaller than the block is refused. */
	CHECK(fy_block_encode(plain, LEN, 3, enc, LEN - 1, &n, &codec) ==
	      -EINVAL);
	/* Extreme levels are clamped, not refused. */
	CHECK_RC(fy_block_encode(plain, 4096, 1000, enc, LEN, &n, &codec));
	CHECK_RC(fy_block_encode(plain, 4096, -1000000, enc, LEN, &n, &codec));
	free(plain);
	free(enc);
	free(dec);
}

static void test_small(void)
{
	uint8_t zeros[4096] = { 0 }, enc[4096], dec[4096];
	uint8_t digest[FY_DIGEST_LEN];
	enum fy_codec codec;
	size_t n = 1;

	/* Empty blocks round-trip raw. */
	fy_sha256("", 0, digest);
	CHECK_RC(fy_block_encode(zeros, 0, 3, enc, 0, &n, &codec));
	CHECK(n == 0 && codec == FY_CODEC_NONE);
	CHECK_RC(fy_block_decode(codec, enc, 0, 0, digest, dec, 0));

	fy_sha256(zeros, sizeof(zeros), digest);
	CHECK_RC(fy_block_encode(zeros, sizeof(zeros), 1, enc, sizeof(enc), &n,
				 &codec));
	CHECK(codec == FY_CODEC_ZSTD && n < 64);
	CHECK_RC(fy_block_decode(codec, enc, n, sizeof(zeros), digest, dec,
				 sizeof(dec)));
	CHECK(fy_is_zero(dec, sizeof(dec)));
}

/* Threads compress at once, each with its own cached context. */
static void *worker(void *arg)
{
	uint8_t *plain = malloc(LEN), *enc = malloc(LEN), *dec = malloc(LEN);
	uint8_t digest[FY_DIGEST_LEN];
	enum fy_codec codec;
	intptr_t bad = 0;
	size_t n;
	int i;

	for (i = 0; i < 8; i++) {
		fill_text(plain, LEN);
		fill_random(plain, LEN / 4, (uint64_t)(uintptr_t)arg + i);
		fy_sha256(plain, LEN, digest);
		if (fy_block_encode(plain, LEN, 3, enc, LEN, &n, &codec) ||
		    codec != FY_CODEC_ZSTD ||
		    fy_block_decode(codec, enc, n, LEN, digest, dec, LEN) ||
		    memcmp(plain, dec, LEN))
			bad++;
	}
	free(plain);
	free(enc);
	free(dec);
	return (void *)bad;
}

static void test_threads(void)
{
	pthread_t t[4];
	void *bad;
	int i;

	for (i = 0; i < 4; i++)
		CHECK(!pthread_create(&t[i], NULL, worker,
				      (void *)(uintptr_t)(i + 1)));
	for (i = 0; i < 4; i++) {
		CHECK(!pthread_join(t[i], &bad));
		CHECK(bad == NULL);
	}
}

/* The probe: random data is stored raw without a full zstd pass (same
 * result as without the probe); text, and a block half random and half
 * text, are still compressed; every result decodes. */
static void test_probe(void)
{
	uint8_t *plain = malloc(LEN), *enc = malloc(LEN), *dec = malloc(LEN);
	uint8_t digest[FY_DIGEST_LEN];
	enum fy_codec codec;
	size_t n = 0, whole = 0;

	fill_random(plain, LEN, 7);
	fy_sha256(plain, LEN, digest);
	CHECK_RC(fy_block_encode_ex(plain, LEN, 3, true, enc, LEN, &n, &codec));
	CHECK(codec == FY_CODEC_NONE && n == LEN && !memcmp(plain, enc, LEN));

	fill_text(plain, LEN);
	fy_sha256(plain, LEN, digest);
	CHECK_RC(fy_block_encode_ex(plain, LEN, 3, true, enc, LEN, &n, &codec));
	CHECK(codec == FY_CODEC_ZSTD && n < LEN / 4);
	CHECK_RC(fy_block_decode(codec, enc, n, LEN, digest, dec, LEN));

	fill_random(plain, LEN / 2, 8);
	fy_sha256(plain, LEN, digest);
	CHECK_RC(fy_block_encode(plain, LEN, 3, enc, LEN, &whole, &codec));
	CHECK_RC(fy_block_encode_ex(plain, LEN, 3, true, enc, LEN, &n, &codec));
	CHECK(codec == FY_CODEC_ZSTD && n == whole);
	CHECK_RC(fy_block_decode(codec, enc, n, LEN, digest, dec, LEN));
	CHECK(!memcmp(plain, dec, LEN));
	free(plain);
	free(enc);
	free(dec);
}

int main(void)
{
	test_probe();
	test_compressible();
	test_random();
	test_small();
	test_threads();
	CHECK_DONE();
}
