/*
 * What every command line of Ferry's shares: --help anywhere in a
 * subcommand's arguments, --log-level parsed strictly, one bound for --set.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

bool fy_cli_wants_help(int argc, char *const argv[])
{
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	}
	return false;
}

int fy_cli_log_level(const char *arg, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < FY_LOG_QUIET || v > FY_LOG_TRIVIA)
		return fy_err_set(-EINVAL, "--log-level takes a level in %d..%d "
				  "(VDDK's scale), not '%.32s'", FY_LOG_QUIET,
				  FY_LOG_TRIVIA, arg);
	*out = (int)v;
	return 0;
}
