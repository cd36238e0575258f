/*
 * The log's destinations: tmpDirectory's per-process file (created 0600
 * in a 0700 directory, never through a symbolic link or into a file with
 * other links, narrowed when it was wider), kept on a second call, closed
 * by NULL; and lines written by several threads at once land whole.
 */
#include "common/common.h"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define THREADS 4
#define LINES 2000

static char *read_all(const char *path, size_t *len)
{
	void *data = NULL;

	*len = 0;
	CHECK_RC(fy_read_file(path, 64 << 20, &data, len));
	return data;
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	CHECK(lstat(path, &st) == 0);
	return st.st_mode & 07777;
}

static void *writer(void *arg)
{
	long t = (long)arg;
	int i;

	for (i = 0; i < LINES; i++)
		fy_log(FY_LOG_WARN, "thread %ld line %d %s", t, i,
		       "................................................");
	return NULL;
}

int main(void)
{
	char base[] = "/tmp/ferry_test_log_XXXXXX", dir[256], path[512],
	     want[512], other[512];
	pthread_t th[THREADS];
	size_t len, lines = 0;
	char *text, *p;
	long t;
	int fd;

	CHECK(mkdtemp(base) != NULL);
	/* stderr would get every line too: keep the test's output short. */
	fy_log_set_level(FY_LOG_WARN);

	/* Made on demand: the directory 0700, the file 0600, named by
	 * program and pid. */
	snprintf(dir, sizeof(dir), "%s/logs/ferry", base);
	CHECK_RC(fy_log_set_dir(dir, "prog", path, sizeof(path)));
	snprintf(want, sizeof(want), "%s/prog-%ld.log", dir, (long)getpid());
	CHECK(!strcmp(path, want));
	CHECK(mode_of(dir) == 0700);
	CHECK(mode_of(want) == 0600);
	/* Again for the same directory (a reload): the same file, kept. */
	CHECK_RC(fy_log_set_dir(dir, "prog", path, sizeof(path)));

	/* Lines from several threads at once, each one whole. */
	fd = dup(STDERR_FILENO);
	CHECK(freopen("/dev/null", "w", stderr) != NULL);
	for (t = 0; t < THREADS; t++)
		CHECK(pthread_create(&th[t], NULL, writer, (void *)t) == 0);
	for (t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	dup2(fd, STDERR_FILENO);
	close(fd);
	CHECK_RC(fy_log_set_dir(NULL, NULL, NULL, 0));
	text = read_all(want, &len);
	for (p = text; p && p < text + len;) {
		char *nl = memchr(p, '\n', (size_t)(text + len - p));

		CHECK(nl != NULL);
		if (!nl)
			break;
		*nl = '\0';
		CHECK(strstr(p, " warning: thread ") != NULL);
		CHECK(strlen(strstr(p, "line ")) >= 5 + 1 + 1 + 48);
		lines++;
		p = nl + 1;
	}
	CHECK(lines == THREADS * LINES);
	printf("%zu whole lines from %d threads\n", lines, THREADS);
	free(text);
	/* Closed: nothing more is written there. */
	fy_log(FY_LOG_ERROR, "after close");
	text = read_all(want, &len);
	CHECK(!memmem(text, len, "after close", 11));
	free(text);
	unlink(want);

	/* A symbolic link planted under our name is not followed. */
	snprintf(other, sizeof(other), "%s/victim", base);
	fd = open(other, O_WRONLY | O_CREAT, 0644);
	close(fd);
	CHECK(symlink(other, want) == 0);
	CHECK(fy_log_set_dir(dir, "prog", NULL, 0) < 0);
	CHECK(strstr(fy_err_msg(), want) != NULL);
	fy_log(FY_LOG_ERROR, "must not reach the victim");
	text = read_all(other, &len);
	CHECK(len == 0);
	free(text);
	unlink(want);

	/* Nor a hard link to someone else's file. */
	CHECK(link(other, want) == 0);
	CHECK(fy_log_set_dir(dir, "prog", NULL, 0) == -EPERM);
	CHECK(strstr(fy_err_msg(), "one link") != NULL);
	unlink(want);

	/* An older file of ours that others could read is narrowed. */
	fd = open(want, O_WRONLY | O_CREAT, 0644);
	CHECK(fchmod(fd, 0644) == 0);
	close(fd);
	CHECK_RC(fy_log_set_dir(dir, "prog", NULL, 0));
	CHECK(mode_of(want) == 0600);
	CHECK_RC(fy_log_set_dir(NULL, NULL, NULL, 0));

	/* An empty name is refused, a too long one too. */
	CHECK(fy_log_set_dir("", "prog", NULL, 0) == -EINVAL);
	{
		char *longdir = malloc(5000);

		memset(longdir, 'a', 4999);
		longdir[0] = '/';
		longdir[4999] = '\0';
		CHECK(fy_log_set_dir(longdir, "prog", NULL, 0) ==
		      -ENAMETOOLONG);
		free(longdir);
	}

	unlink(want);
	unlink(other);
	rmdir(dir);
	snprintf(path, sizeof(path), "%s/logs", base);
	rmdir(path);
	rmdir(base);
	CHECK_DONE();
}
