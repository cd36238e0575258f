/*
 * The block codec: zstd, or the plain bytes when zstd does not shrink them.
 *
 * Compression contexts are large (a level-3 ZSTD_CCtx is over 1 MiB) and
 * slow to set up, while the server compresses from many threads at once. So
 * each thread keeps one compression and one decompression context in a
 * pthread key, created on first use and freed by the key's destructor when
 * the thread exits.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "image/image_private.h"

static pthread_key_t cctx_key;
static pthread_key_t dctx_key;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;
static int keys_error;

static void free_cctx(void *p)
{
	ZSTD_freeCCtx(p);
}

static void free_dctx(void *p)
{
	ZSTD_freeDCtx(p);
}

static void make_keys(void)
{
	int rc = pthread_key_create(&cctx_key, free_cctx);

	if (rc) {
		keys_error = rc;
		return;
	}
	rc = pthread_key_create(&dctx_key, free_dctx);
	if (rc)
		keys_error = rc;
}

static ZSTD_CCtx *thread_cctx(void)
{
	ZSTD_CCtx *cctx;

	pthread_once(&keys_once, make_keys);
	if (keys_error)
		return NULL;
	cctx = pthread_getspecific(cctx_key);
	if (cctx)
		return cctx;
	cctx = ZSTD_createCCtx();
	if (cctx && pthread_setspecific(cctx_key, cctx)) {
		ZSTD_freeCCtx(cctx);
		cctx = NULL;
	}
	return cctx;
}

static ZSTD_DCtx *thread_dctx(void)
{
	ZSTD_DCtx *dctx;

	pthread_once(&keys_once, make_keys);
	if (keys_error)
		return NULL;
	dctx = pthread_getspecific(dctx_key);
	if (dctx)
		return dctx;
	dctx = ZSTD_createDCtx();
	if (dctx && pthread_setspecific(dctx_key, dctx)) {
		ZSTD_freeDCtx(dctx);
		dctx = NULL;
	}
	return dctx;
}

/*
 * The probe: 16 slices of 2 KiB spread over the block, compressed at
 * level 1 into room for 31/32 of them. When even that does not fit, the
 * block is random-looking (encrypted, already compressed) and zstd's full
 * pass over it would be wasted: it is stored raw. A block that mixes
 * random and compressible parts shows in its slices and is compressed.
 */
#define PROBE_MIN (128u << 10)
#define PROBE_SLICES 16
#define PROBE_SLICE 2048

static bool looks_incompressible(ZSTD_CCtx *cctx, const uint8_t *plain,
				 size_t len)
{
	uint8_t sample[PROBE_SLICES * PROBE_SLICE];
	uint8_t packed[PROBE_SLICES * PROBE_SLICE];
	size_t step = len / PROBE_SLICES, i, n;

	for (i = 0; i < PROBE_SLICES; i++)
		memcpy(sample + i * PROBE_SLICE, plain + i * step, PROBE_SLICE);
	n = ZSTD_compressCCtx(cctx, packed, sizeof(sample) / 32 * 31, sample,
			      sizeof(sample), 1);
	return ZSTD_isError(n);
}

int fy_block_encode(const void *plain, size_t len, int level, void *out,
		    size_t outcap, size_t *outlen, enum fy_codec *codec)
{
	return fy_block_encode_ex(plain, len, level, false, out, outcap,
				  outlen, codec);
}

int fy_block_encode_ex(const void *plain, size_t len, int level, bool probe,
		       void *out, size_t outcap, size_t *outlen,
		       enum fy_codec *codec)
{
	ZSTD_CCtx *cctx;
	size_t n;

	if (len > FY_BLOCK_MAX)
		return fy_err_set(-EINVAL,
				  "block encode: %zu bytes exceed the largest "
				  "block (%u)",
				  len, FY_BLOCK_MAX);
	if (outcap < len)
		return fy_err_set(-EINVAL,
				  "block encode: output buffer of %zu bytes "
				  "is smaller than the block (%zu)",
				  outcap, len);
	if (level < ZSTD_minCLevel())
		level = ZSTD_minCLevel();
	if (level > ZSTD_maxCLevel())
		level = ZSTD_maxCLevel();

	if (len == 0)
		goto raw;
	cctx = thread_cctx();
	if (!cctx)
		return fy_err_set(-ENOMEM,
				  "block encode: cannot create a zstd context");
	if (probe && len >= PROBE_MIN && looks_incompressible(cctx, plain, len))
		goto raw;
	/* Capacity len: a result that would not be smaller than the block
	 * is useless, and zstd gives up early instead of finishing it. */
	n = ZSTD_compressCCtx(cctx, out, len, plain, len, level);
	if (ZSTD_isError(n)) {
		if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
			goto raw;
		return fy_err_set(-EIO, "block encode: zstd level %d: %s",
				  level, ZSTD_getErrorName(n));
	}
	if (n >= len)
		goto raw;
	*outlen = n;
	*codec = FY_CODEC_ZSTD;
	return 0;

raw:
	/* A failed attempt may have scribbled on out (which must not overlap
	 * plain), so copy the whole block again. */
	if (len)
		memcpy(out, plain, len);
	*outlen = len;
	*codec = FY_CODEC_NONE;
	return 0;
}

int fy_block_decode(enum fy_codec codec, const void *data, size_t len,
		    uint32_t plain_size, const uint8_t digest[FY_DIGEST_LEN],
		    void *out, size_t outcap)
{
	char hex[FY_DIGEST_HEX];
	uint8_t got[FY_DIGEST_LEN];
	ZSTD_DCtx *dctx;
	size_t n;
	int rc;

	fy_digest_hex(digest, hex);
	if (plain_size > FY_BLOCK_MAX)
		return fy_err_set(-EBADMSG,
				  "block %s: plain size %u exceeds the largest "
				  "block (%u)",
				  hex, plain_size, FY_BLOCK_MAX);
	if (len > FY_STORED_MAX)
		return fy_err_set(-EBADMSG,
				  "block %s: stored size %zu exceeds the "
				  "largest stored block (%u)",
				  hex, len, FY_STORED_MAX);
	if (plain_size > outcap)
		return fy_err_set(-EINVAL,
				  "block %s: output buffer of %zu bytes is "
				  "smaller than the block (%u)",
				  hex, outcap, plain_size);

	switch (codec) {
	case FY_CODEC_NONE:
		if (len != plain_size)
			return fy_err_set(-EBADMSG,
					  "block %s: stored raw with %zu bytes "
					  "but plain size %u",
					  hex, len, plain_size);
		if (len && out != data)
			memmove(out, data, len);
		break;
	case FY_CODEC_ZSTD:
		dctx = thread_dctx();
		if (!dctx)
			return fy_err_set(-ENOMEM,
					  "block %s: cannot create a zstd "
					  "context",
					  hex);
		/* Capacity exactly plain_size: a frame that inflates to more
		 * fails here instead of writing past what we expect. */
		n = ZSTD_decompressDCtx(dctx, out, plain_size, data, len);
		if (ZSTD_isError(n))
			return fy_err_set(-EBADMSG, "block %s: zstd: %s", hex,
					  ZSTD_getErrorName(n));
		if (n != plain_size)
			return fy_err_set(-EBADMSG,
					  "block %s: decompressed to %zu "
					  "bytes, expected %u",
					  hex, n, plain_size);
		break;
	default:
		return fy_err_set(-EBADMSG, "block %s: unknown codec %d", hex,
				  (int)codec);
	}

	rc = fy_sha256(out, plain_size, got);
	if (rc < 0)
		return rc;
	if (memcmp(got, digest, FY_DIGEST_LEN)) {
		char ghex[FY_DIGEST_HEX];

		fy_digest_hex(got, ghex);
		return fy_err_set(-EBADMSG,
				  "block %s: content hashes to %s instead", hex,
				  ghex);
	}
	return 0;
}
