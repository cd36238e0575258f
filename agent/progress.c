/*
 * The progress line on a terminal.
 */
#include <inttypes.h>
#include <stdio.h>

#include "agent/agent.h"

void fy_progress_print(void *opaque, const struct fy_disk_stats *st, bool done)
{
	char rd[32], zero[32], dedup[32], sent[32], size[32], rate[32];
	uint64_t done_bytes = st->bytes_read + st->bytes_zero +
			      st->bytes_unchanged;
	double bps = st->seconds > 0 ? done_bytes / st->seconds : 0;
	double eta = bps > 0 && st->size > done_bytes
			     ? (st->size - done_bytes) / bps
			     : 0;

	(void)opaque;
	/* Holes are never read, so progress is read plus zero. */
	if (done_bytes > st->size)
		done_bytes = st->size;
	fy_format_bytes(st->bytes_read, rd, sizeof(rd));
	fy_format_bytes(st->bytes_zero, zero, sizeof(zero));
	fy_format_bytes(st->bytes_dedup, dedup, sizeof(dedup));
	fy_format_bytes(st->bytes_sent, sent, sizeof(sent));
	fy_format_bytes(st->size, size, sizeof(size));
	fy_format_bytes((uint64_t)bps, rate, sizeof(rate));
	fprintf(stderr, "\r\033[K%3.0f%% of %s  read %s  zero %s  dedup %s  "
		"sent %s  %s/s  ETA %.0fs%s",
		st->size ? 100.0 * done_bytes / st->size : 100.0, size, rd,
		zero, dedup, sent, rate, eta, done ? "\n" : "");
	fflush(stderr);
}

void fy_disk_stats_json(FILE *f, const struct fy_disk_stats *st)
{
	fprintf(f, "\"size\":%" PRIu64 ",\"blocks\":%" PRIu64
		",\"bytes_read\":%" PRIu64 ",\"bytes_zero\":%" PRIu64
		",\"bytes_deduplicated\":%" PRIu64 ",\"bytes_new\":%" PRIu64
		",\"bytes_sent\":%" PRIu64 ",\"blocks_sent\":%" PRIu64
		",\"bytes_unchanged\":%" PRIu64 ",\"seconds\":%.3f",
		st->size, st->blocks, st->bytes_read, st->bytes_zero,
		st->bytes_dedup, st->bytes_new, st->bytes_sent, st->blocks_sent,
		st->bytes_unchanged, st->seconds);
}
