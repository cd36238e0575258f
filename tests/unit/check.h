/* A tiny assertion harness for Ferry's unit tests: each CHECK that fails
 * prints where and what, and the test exits non-zero at the end. */
#ifndef FERRY_TEST_CHECK_H
#define FERRY_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				__LINE__, #cond);                            \
			check_failures++;                                    \
		}                                                            \
	} while (0)

#define CHECK_RC(expr)                                                       \
	do {                                                                 \
		int check_rc_ = (expr);                                      \
		if (check_rc_ < 0) {                                         \
			fprintf(stderr, "%s:%d: %s returned %d: %s\n",       \
				__FILE__, __LINE__, #expr, check_rc_,        \
				fy_err_msg());                               \
			check_failures++;                                    \
		}                                                            \
	} while (0)

#define CHECK_DONE()                                                         \
	do {                                                                 \
		if (check_failures) {                                        \
			fprintf(stderr, "%d check(s) failed\n",              \
				check_failures);                             \
			return 1;                                            \
		}                                                            \
		printf("all checks passed\n");                               \
		return 0;                                                    \
	} while (0)

#endif
