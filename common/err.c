/*
 * Error messages: a failing call records one readable sentence for the
 * calling thread and returns a negative errno; callers add context with
 * fy_err_wrap on the way up.
 */
#include "common/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Thread-local so that concurrent jobs never see each other's messages. */
static _Thread_local char err_buf[FY_ERR_MAX];

int fy_err_set(int code, const char *fmt, ...)
{
	/* Callers often format strerror(errno) after this call returns. */
	int saved_errno = errno;
	char msg[FY_ERR_MAX];
	va_list ap;

	/* Formatted apart first: the arguments may point into err_buf
	 * (fy_err_set(rc, "%s; more", fy_err_msg())), which vsnprintf must
	 * not read while writing it. */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(err_buf, msg, strlen(msg) + 1);
	errno = saved_errno;
	return code;
}

/* Appends s to err_buf, cutting it at the end of the buffer. */
static void append(const char *s)
{
	size_t used = strlen(err_buf);
	size_t room = sizeof(err_buf) - 1 - used;
	size_t len = strnlen(s, room);

	memcpy(err_buf + used, s, len);
	err_buf[used + len] = '\0';
}

int fy_err_wrap(int code, const char *fmt, ...)
{
	int saved_errno = errno;
	char context[FY_ERR_MAX];
	char old[FY_ERR_MAX];
	va_list ap;

	/*
	 * Copy the old message first: the arguments may point into err_buf
	 * (fy_err_wrap(rc, "x: %s", fy_err_msg()) must not read a buffer it
	 * is overwriting).
	 */
	memcpy(old, err_buf, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(context, sizeof(context), fmt, ap);
	va_end(ap);
	/* Built by hand: a message cut at FY_ERR_MAX is expected here. */
	err_buf[0] = '\0';
	append(context);
	if (old[0]) {
		append(": ");
		append(old);
	}
	errno = saved_errno;
	return code;
}

const char *fy_err_msg(void)
{
	return err_buf;
}

void fy_err_clear(void)
{
	err_buf[0] = '\0';
}
