/* The progress line: fitted to the terminal by dropping fields from the
 * end, its percentage from finished blocks (a backup) or bytes written (a
 * restore), not from what was read or asked. */
#include <string.h>

#include "agent/agent.h"
#include "check.h"

#define MiB (1024ull * 1024)

int main(void)
{
	static const unsigned widths[] = { 20, 40, 60, 80, 120, 300 };
	struct fy_disk_stats b = { .size = 100 * MiB, .bytes_read = 100 * MiB,
				   .bytes_dedup = 30 * MiB,
				   .bytes_new = 20 * MiB,
				   .bytes_sent = 9 * MiB, .seconds = 2 };
	/* 30 MiB written, 10 MiB of zeros written, 10 MiB of holes left:
	 * half done. bytes_sent is not what the percent counts. */
	struct fy_disk_stats r = { .size = 100 * MiB, .bytes_read = 30 * MiB,
				   .bytes_zero = 10 * MiB,
				   .bytes_unchanged = 10 * MiB,
				   .bytes_sent = 90 * MiB, .seconds = 1,
				   .restore = true };
	char line[512];
	size_t i;

	for (i = 0; i < sizeof(widths) / sizeof(widths[0]); i++) {
		fy_progress_format(line, sizeof(line), widths[i], "disk 1/2",
				   &b, false);
		CHECK(strlen(line) < widths[i]);
		if (widths[i] >= 40)
			CHECK(!strncmp(line, "disk 1/2   50% of 100", 21));
		fy_progress_format(line, sizeof(line), widths[i], "disk 2/2",
				   &r, false);
		CHECK(strlen(line) < widths[i]);
	}
	/* Wide enough: every field, the ETA from the finished rate. */
	fy_progress_format(line, sizeof(line), 300, "disk 1/2", &b, false);
	CHECK(strstr(line, "ETA 2s") && strstr(line, "read 100") &&
	      strstr(line, "dedup 30") && strstr(line, "zero 0"));
	/* Too narrow for the disk and the percent: the percent stays. */
	fy_progress_format(line, sizeof(line), 20, "disk 10/12", &b, false);
	CHECK(!strncmp(line, " 50% of 100", 11) && strlen(line) < 20);
	/* At 40 columns the counters go first, the percent stays. */
	fy_progress_format(line, sizeof(line), 40, "disk 1/2", &b, false);
	CHECK(strstr(line, "50%") && !strstr(line, "dedup"));
	/* A restore: written plus zeros, and its own counters. */
	fy_progress_format(line, sizeof(line), 300, "disk 2/2", &r, false);
	CHECK(strstr(line, " 50% of 100") && strstr(line, "wrote 30") &&
	      strstr(line, "ETA 1s") && !strstr(line, "dedup"));
	/* Rounded down: 99.6% is not 100%. No rate yet: no ETA. */
	b.bytes_new = 20 * MiB - 400 * 1024;
	b.bytes_dedup = 0;
	b.bytes_zero = 80 * MiB;
	fy_progress_format(line, sizeof(line), 300, NULL, &b, false);
	CHECK(!strncmp(line, " 99% of 100", 11));
	b.seconds = 0;
	fy_progress_format(line, sizeof(line), 300, NULL, &b, false);
	CHECK(strstr(line, "ETA ?") != NULL);
	b.seconds = 2;
	b.bytes_zero = 0;
	b.bytes_dedup = 30 * MiB;
	/* Done: the time taken instead of an ETA; never over 100%. */
	b.bytes_new = 90 * MiB;
	fy_progress_format(line, sizeof(line), 300, NULL, &b, true);
	CHECK(!strncmp(line, "100% of 100", 11) && strstr(line, "in 2.0s"));
	/* A buffer smaller than the line: cut at a field, terminated. */
	fy_progress_format(line, 16, 300, "disk 1/2", &b, false);
	CHECK(strlen(line) < 16);
	CHECK_DONE();
}
