/*
 * The progress line on a terminal.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "agent/agent.h"

unsigned fy_term_width(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

void fy_progress_format(char *line, size_t cap, unsigned width,
			const char *prefix, const struct fy_disk_stats *st,
			bool done)
{
	char f[8][48];
	/* Finished: a backup's blocks hashed and then found in the
	 * repository, sent, skipped as zeros or taken from the parent (read
	 * but still in the pipeline does not count, so 100% means done); a
	 * restore's bytes written, and those left as the disk has them. */
	uint64_t finished = (st->restore ? st->bytes_read
					 : st->bytes_dedup + st->bytes_new) +
			    st->bytes_zero + st->bytes_unchanged;
	double bps = st->seconds > 0 ? finished / st->seconds : 0;
	double eta;
	unsigned i, n = 0;
	size_t len = 0;
	char b1[32], b2[32];

	if (finished > st->size)
		finished = st->size;
	eta = bps > 0 ? (st->size - finished) / bps : 0;
	if (prefix && prefix[0])
		snprintf(f[n++], sizeof(f[0]), "%s", prefix);
	fy_format_bytes(st->size, b1, sizeof(b1));
	/* Rounded down: 100% only once everything is finished. */
	snprintf(f[n++], sizeof(f[0]), "%3u%% of %s",
		 st->size ? (unsigned)(finished * 100 / st->size) : 100u, b1);
	if (done)
		snprintf(f[n++], sizeof(f[0]), "in %.1fs", st->seconds);
	else if (bps > 0)
		snprintf(f[n++], sizeof(f[0]), "ETA %.0fs", eta);
	else
		snprintf(f[n++], sizeof(f[0]), "ETA ?");
	fy_format_bytes((uint64_t)bps, b1, sizeof(b1));
	snprintf(f[n++], sizeof(f[0]), "%s/s", b1);
	fy_format_bytes(st->bytes_read, b1, sizeof(b1));
	fy_format_bytes(st->bytes_zero, b2, sizeof(b2));
	if (st->restore) {
		snprintf(f[n++], sizeof(f[0]), "wrote %s", b1);
		snprintf(f[n++], sizeof(f[0]), "zero %s", b2);
	} else {
		snprintf(f[n++], sizeof(f[0]), "read %s", b1);
		fy_format_bytes(st->bytes_sent, b1, sizeof(b1));
		snprintf(f[n++], sizeof(f[0]), "sent %s", b1);
		fy_format_bytes(st->bytes_dedup, b1, sizeof(b1));
		snprintf(f[n++], sizeof(f[0]), "dedup %s", b1);
		snprintf(f[n++], sizeof(f[0]), "zero %s", b2);
	}
	/* Too narrow for the disk and its percent: the percent first. */
	if (prefix && prefix[0] && strlen(f[0]) + 2 + strlen(f[1]) >= width) {
		char t[sizeof(f[0])];

		memcpy(t, f[0], sizeof(t));
		memcpy(f[0], f[1], sizeof(t));
		memcpy(f[1], t, sizeof(t));
	}
	if (cap)
		line[0] = '\0';
	for (i = 0; i < n; i++) {
		size_t add = strlen(f[i]) + (i ? 2 : 0);

		/* One column spare: a line as wide as the terminal wraps on
		 * some terminals. */
		if (len + add >= width || len + add >= cap)
			break;
		snprintf(line + len, cap - len, "%s%s", i ? "  " : "", f[i]);
		len += add;
	}
}

void fy_progress_print(void *opaque, const struct fy_disk_stats *st, bool done)
{
	char line[512];

	(void)opaque;
	fy_progress_format(line, sizeof(line), fy_term_width(), NULL, st,
			   done);
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
