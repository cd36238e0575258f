/*
 * The progress line on a terminal.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "agent/agent.h"

/* The terminal's width, or 80 when it cannot be told. */
static unsigned term_width(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

void fy_progress_print(void *opaque, const struct fy_disk_stats *st, bool done)
{
	char f[7][48], line[512];
	/* Finished blocks: hashed and then found in the repository, sent,
	 * skipped as zeros or taken from the parent. Read but still in the
	 * pipeline does not count, so 100% means done. */
	uint64_t finished = st->bytes_dedup + st->bytes_new + st->bytes_zero +
			    st->bytes_unchanged;
	double bps = st->seconds > 0 ? finished / st->seconds : 0;
	double eta;
	unsigned width = term_width(), i, n = 0;
	size_t len;
	char b1[32], b2[32];

	(void)opaque;
	if (finished > st->size)
		finished = st->size;
	eta = bps > 0 ? (st->size - finished) / bps : 0;
	/* Most important first; what does not fit the terminal is dropped
	 * from the end, so the line never wraps. */
	fy_format_bytes(st->size, b1, sizeof(b1));
	snprintf(f[n++], sizeof(f[0]), "%3.0f%% of %s",
		 st->size ? 100.0 * finished / st->size : 100.0, b1);
	if (done)
		snprintf(f[n++], sizeof(f[0]), "in %.1fs", st->seconds);
	else
		snprintf(f[n++], sizeof(f[0]), "ETA %.0fs", eta);
	fy_format_bytes((uint64_t)bps, b1, sizeof(b1));
	snprintf(f[n++], sizeof(f[0]), "%s/s", b1);
	fy_format_bytes(st->bytes_read, b1, sizeof(b1));
	snprintf(f[n++], sizeof(f[0]), "read %s", b1);
	fy_format_bytes(st->bytes_sent, b1, sizeof(b1));
	snprintf(f[n++], sizeof(f[0]), "sent %s", b1);
	fy_format_bytes(st->bytes_dedup, b1, sizeof(b1));
	fy_format_bytes(st->bytes_zero, b2, sizeof(b2));
	snprintf(f[n++], sizeof(f[0]), "dedup %s", b1);
	snprintf(f[n++], sizeof(f[0]), "zero %s", b2);
	line[0] = '\0';
	len = 0;
	for (i = 0; i < n; i++) {
		size_t add = strlen(f[i]) + (i ? 2 : 0);

		/* One column spare: a line as wide as the terminal wraps on
		 * some terminals. */
		if (len + add >= width)
			break;
		snprintf(line + len, sizeof(line) - len, "%s%s", i ? "  " : "",
			 f[i]);
		len += add;
	}
	fprintf(stderr, "\r\033[K%s%s", line, done ? "\n" : "");
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
