/*
 * Logging on VDDK's 0..6 scale. Each line is formatted in full and then
 * written with one write(2) per destination, so lines from concurrent
 * threads (and processes sharing a log file) never interleave.
 */
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Longer messages are cut, with "..." marking the cut. */
#define LOG_LINE_MAX 4096

static atomic_int log_level = FY_LOG_WARN;
/* The mutex orders writes and guards both descriptors (and dir_path)
 * against fy_log_set_file and fy_log_set_dir. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;		/* ferry.logFile */
static int dir_fd = -1;		/* tmpDirectory/PROGRAM-PID.log */
static char dir_path[4096];	/* what dir_fd is, "" when closed */

static const char *const level_names[] = {
	[FY_LOG_QUIET] = "quiet",     [FY_LOG_PANIC] = "panic",
	[FY_LOG_ERROR] = "error",     [FY_LOG_WARN] = "warning",
	[FY_LOG_INFO] = "info",	      [FY_LOG_VERBOSE] = "verbose",
	[FY_LOG_TRIVIA] = "trivia",
};

void fy_log_set_level(int level)
{
	if (level < FY_LOG_QUIET)
		level = FY_LOG_QUIET;
	if (level > FY_LOG_TRIVIA)
		level = FY_LOG_TRIVIA;
	atomic_store(&log_level, level);
}

int fy_log_get_level(void)
{
	return atomic_load(&log_level);
}

int fy_log_set_file(const char *path)
{
	int fd = -1, old;

	if (path) {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
			  0640);
		if (fd < 0) {
			int rc = -errno;

			return fy_err_set(rc, "cannot open log file %s: %s",
					  path, strerror(-rc));
		}
	}
	pthread_mutex_lock(&log_lock);
	old = log_fd;
	log_fd = fd;
	pthread_mutex_unlock(&log_lock);
	if (old >= 0)
		close(old);
	return 0;
}

/*
 * The directory may be shared (VDDK's default is under /tmp): the file is
 * opened without following a symbolic link and kept only when it is a
 * regular file of ours with one link, so nobody can make us append
 * elsewhere.
 */
static int open_private_log(const char *path)
{
	struct stat st;
	int fd, rc;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		rc = -errno;
		return fy_err_set(rc, "cannot open log file %s: %s", path,
				  strerror(-rc));
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return fy_err_set(rc, "cannot stat log file %s: %s", path,
				  strerror(-rc));
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    st.st_nlink != 1) {
		close(fd);
		return fy_err_set(-EPERM, "log file %s exists and is not a "
				  "regular file of this user with one link; "
				  "refusing to write to it", path);
	}
	/* An older file of ours with wider permissions is narrowed. */
	if ((st.st_mode & 077) && fchmod(fd, 0600) < 0) {
		rc = -errno;
		close(fd);
		return fy_err_set(rc, "cannot chmod log file %s: %s", path,
				  strerror(-rc));
	}
	return fd;
}

int fy_log_set_dir(const char *dir, const char *program, char *path,
		   size_t pathlen)
{
	char want[sizeof(dir_path)];
	int fd = -1, old, rc, n;
	bool same;

	if (path && pathlen)
		path[0] = '\0';
	if (dir) {
		if (!*dir)
			return fy_err_set(-EINVAL, "tmpDirectory is empty");
		n = snprintf(want, sizeof(want), "%s/%s-%ld.log", dir,
			     program && *program ? program : "ferry",
			     (long)getpid());
		if (n < 0 || (size_t)n >= sizeof(want))
			return fy_err_set(-ENAMETOOLONG, "tmpDirectory %s: "
					  "path too long", dir);
		if (path && pathlen)
			snprintf(path, pathlen, "%s", want);
	}
	pthread_mutex_lock(&log_lock);
	same = dir && dir_fd >= 0 && !strcmp(dir_path, want);
	pthread_mutex_unlock(&log_lock);
	if (same)
		return 0;
	if (dir) {
		/* Logs may hold VM and host names: ours alone. */
		rc = fy_mkdirs(dir, 0700);
		if (rc < 0)
			return fy_err_wrap(rc, "tmpDirectory %s", dir);
		fd = open_private_log(want);
		if (fd < 0)
			return fd;
	}
	pthread_mutex_lock(&log_lock);
	old = dir_fd;
	dir_fd = fd;
	snprintf(dir_path, sizeof(dir_path), "%s", fd >= 0 ? want : "");
	pthread_mutex_unlock(&log_lock);
	if (old >= 0)
		close(old);
	return 0;
}

/* Best effort: a log line that cannot be written has nowhere to go. */
static void write_line(int fd, const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, line, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		line += n;
		len -= (size_t)n;
	}
}

void fy_log(int level, const char *fmt, ...)
{
	int saved_errno = errno;
	char line[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	size_t len;
	va_list ap;
	int n;

	if (level <= FY_LOG_QUIET || level > atomic_load(&log_level))
		return;
	if (level > FY_LOG_TRIVIA)
		level = FY_LOG_TRIVIA;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line + len, sizeof(line) - len, ".%03ldZ ferry[%ld] %s: ",
		     ts.tv_nsec / 1000000, (long)getpid(), level_names[level]);
	len += (size_t)n;

	va_start(ap, fmt);
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(line) - len) {
		/* Keep room for "...\n" after the cut. */
		len = sizeof(line) - 5;
		memcpy(line + len, "...", 3);
		len += 3;
	} else {
		len += (size_t)n;
	}
	/* One line per call, whether or not the caller ended it with \n. */
	while (len > 0 && line[len - 1] == '\n')
		len--;
	line[len++] = '\n';

	pthread_mutex_lock(&log_lock);
	write_line(STDERR_FILENO, line, len);
	if (log_fd >= 0)
		write_line(log_fd, line, len);
	if (dir_fd >= 0)
		write_line(dir_fd, line, len);
	pthread_mutex_unlock(&log_lock);
	errno = saved_errno;
}
