/*
 * What the CPU allows: runs the per-block work of a backup on one core,
 * stage by stage, over an image, and prints the CPU seconds each stage
 * took. The benchmark divides by the cores to get the throughput the CPU
 * allows and compares Ferry's measured throughput with it.
 *
 * Stages (as in a first backup of the image): zero check; SHA-256 in the
 * agent; zstd compression of each distinct non-zero block; in the
 * repository, decompression and SHA-256 again.
 *
 *   ferry-cpubound IMAGE BLOCK_SIZE LEVEL
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "image/image.h"

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Distinct digests seen so far: open addressing on the first 8 bytes. */
struct seen {
	uint8_t (*d)[FY_DIGEST_LEN];
	size_t cap;
};

static bool seen_add(struct seen *s, const uint8_t *d)
{
	uint64_t h;
	size_t i;

	memcpy(&h, d, sizeof(h));
	for (i = h % s->cap;; i = (i + 1) % s->cap) {
		static const uint8_t zero[FY_DIGEST_LEN];

		if (!memcmp(s->d[i], zero, FY_DIGEST_LEN)) {
			memcpy(s->d[i], d, FY_DIGEST_LEN);
			return true;
		}
		if (!memcmp(s->d[i], d, FY_DIGEST_LEN))
			return false;
	}
}

int main(int argc, char **argv)
{
	double t_zero = 0, t_sha = 0, t_comp = 0, t_dec = 0, t_sha2 = 0, t0;
	uint64_t total = 0, zero_bytes = 0, dup_bytes = 0, stored = 0;
	struct seen seen;
	size_t bs, n, clen;
	uint8_t *buf, *cbuf, *plain, digest[FY_DIGEST_LEN];
	enum fy_codec codec;
	int fd, level;

	if (argc != 4) {
		fprintf(stderr, "usage: ferry-cpubound IMAGE BLOCK_SIZE LEVEL\n");
		return 2;
	}
	bs = strtoul(argv[2], NULL, 10);
	level = atoi(argv[3]);
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || bs < 4096 || bs > FY_BLOCK_MAX) {
		fprintf(stderr, "ferry-cpubound: cannot read %s: %s\n", argv[1],
			strerror(errno));
		return 1;
	}
	seen.cap = (lseek(fd, 0, SEEK_END) / bs + 1) * 2 + 1;
	lseek(fd, 0, SEEK_SET);
	seen.d = calloc(seen.cap, FY_DIGEST_LEN);
	buf = malloc(bs);
	cbuf = malloc(bs);
	plain = malloc(bs);
	if (!seen.d || !buf || !cbuf || !plain)
		return 1;
	while ((n = read(fd, buf, bs)) > 0) {
		bool zero;

		total += n;
		t0 = cpu_now();
		zero = fy_is_zero(buf, n);
		t_zero += cpu_now() - t0;
		if (zero) {
			zero_bytes += n;
			continue;
		}
		t0 = cpu_now();
		fy_sha256(buf, n, digest);
		t_sha += cpu_now() - t0;
		if (!seen_add(&seen, digest)) {
			dup_bytes += n;
			continue;
		}
		t0 = cpu_now();
		fy_block_encode(buf, n, level, cbuf, bs, &clen, &codec);
		t_comp += cpu_now() - t0;
		stored += clen;
		t0 = cpu_now();
		if (fy_block_decode(codec, cbuf, clen, n, digest, plain, bs) < 0) {
			fprintf(stderr, "ferry-cpubound: %s\n", fy_err_msg());
			return 1;
		}
		/* decode decompresses and re-hashes, as the repository does */
		t_dec += cpu_now() - t0;
	}
	close(fd);
	(void)t_sha2;
	printf("{\"bytes\":%" PRIu64 ",\"zero_bytes\":%" PRIu64
	       ",\"duplicate_bytes\":%" PRIu64 ",\"stored_bytes\":%" PRIu64
	       ",\"cpu_zero\":%.3f,\"cpu_sha256\":%.3f,\"cpu_compress\":%.3f"
	       ",\"cpu_decompress_and_sha256\":%.3f}\n",
	       total, zero_bytes, dup_bytes, stored, t_zero, t_sha, t_comp,
	       t_dec);
	return 0;
}
