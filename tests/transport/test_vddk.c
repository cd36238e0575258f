/*
 * The VDDK path (nbd/vddk.c) with nbdkit's file plugin standing in for
 * the vddk plugin: VDDK is proprietary and not installed here, so what is
 * tested is everything around it: the nbdkit Ferry starts is the one it
 * reads (a private 0700 directory, a socket nobody else knows), the data
 * is byte-identical, nbdkit is gone and the socket removed after close, a
 * plugin that fails or hangs gives a clear error in bounded time and
 * leaves nothing behind; and the command line the real vddk plugin would
 * get (nbdkit-vddk-plugin(1)).
 *
 * usage: test_vddk WORKDIR     (an empty directory; TMPDIR is set to it)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nbd/vddk_int.h"
#include "tests/unit/check.h"

static char work[512], tmp[600], disk[600];
static uint8_t *data;
static const size_t disk_size = 8 * 1024 * 1024 + 4096;

/* The one ferry-vddk.* directory in TMPDIR, or "" when there is none. */
static void private_dir(char *out, size_t outlen, int *count)
{
	DIR *d = opendir(tmp);
	struct dirent *de;

	out[0] = '\0';
	*count = 0;
	while (d && (de = readdir(d)))
		if (!strncmp(de->d_name, "ferry-vddk", 10)) {
			snprintf(out, outlen, "%s/%s", tmp, de->d_name);
			(*count)++;
		}
	if (d)
		closedir(d);
}

static bool cmdline_has(pid_t pid, const char *word)
{
	char path[64], buf[8192];
	ssize_t n, i;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	for (i = 0; i < n; i++)
		if (!buf[i])
			buf[i] = ' ';
	buf[n] = '\0';
	return strstr(buf, word) != NULL;
}

static void standin(struct fy_nbd_vddk_opts *o, const char *args)
{
	static char argbuf[1024];

	fy_nbd_vddk_opts_default(o);
	o->plugin = "file";
	o->libdir = work;
	snprintf(argbuf, sizeof(argbuf), "%s", args);
	o->plugin_args = argbuf;
	o->start_timeout_ms = 10000;
}

static void test_read_and_close(void)
{
	struct fy_nbd_vddk_opts o;
	struct fy_source *src = NULL;
	char dir[700], path[800], args[700], pidtext[32] = "";
	struct stat sb;
	struct fy_io ios[4];
	uint8_t *buf = malloc(disk_size);
	pid_t pid = 0;
	int count, fd;
	size_t i;

	snprintf(args, sizeof(args), "file=%s", disk);
	standin(&o, args);
	o.file = "[ds1] vm/vm.vmdk";
	o.transports = "nbdssl";
	CHECK_RC(fy_nbd_vddk_open(&o, &src));
	if (!src)
		goto out;
	/* The transport name is the VDDK mode asked for. */
	CHECK(!strcmp(src->ops->name, "nbdssl"));
	CHECK(!strcmp(src->name, "[ds1] vm/vm.vmdk"));
	CHECK(src->size == disk_size);

	/* Exactly one private directory, 0700, with the socket and the pid
	 * of the nbdkit that serves our file. */
	private_dir(dir, sizeof(dir), &count);
	CHECK(count == 1);
	CHECK(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0700);
	snprintf(path, sizeof(path), "%s/nbdkit.sock", dir);
	CHECK(stat(path, &sb) == 0 && S_ISSOCK(sb.st_mode));
	snprintf(path, sizeof(path), "%s/nbdkit.pid", dir);
	fd = open(path, O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, pidtext, sizeof(pidtext) - 1);

		pidtext[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	pid = (pid_t)atoi(pidtext);
	CHECK(pid > 0 && kill(pid, 0) == 0);
	CHECK(cmdline_has(pid, "nbdkit"));
	CHECK(cmdline_has(pid, args));
	CHECK(cmdline_has(pid, "--tls=off"));

	/* Byte-identical, through read_batch and read. */
	for (i = 0; i < 4; i++) {
		ios[i].buf = buf + i * (disk_size / 4);
		ios[i].len = disk_size / 4;
		ios[i].offset = i * (disk_size / 4);
	}
	CHECK_RC(fy_source_read_batch(src, ios, 4));
	CHECK(!memcmp(buf, data, disk_size));
	memset(buf, 0, 4096);
	CHECK_RC(fy_source_read(src, buf, 4096, disk_size - 4096));
	CHECK(!memcmp(buf, data + disk_size - 4096, 4096));

	fy_source_close(src);
	/* nbdkit is gone (and reaped: not even a zombie), the socket and
	 * its directory removed. */
	CHECK(kill(pid, 0) < 0 && errno == ESRCH);
	private_dir(dir, sizeof(dir), &count);
	CHECK(count == 0);
out:
	free(buf);
}

static void expect_start_failure(const char *plugin, const char *args,
				 unsigned timeout_ms, int want,
				 const char *words, const char *words2)
{
	struct fy_nbd_vddk_opts o;
	struct fy_source *src = NULL;
	char dir[700];
	int rc, count, status;
	double t0 = fy_now();

	standin(&o, args);
	o.plugin = plugin;
	o.start_timeout_ms = timeout_ms;
	rc = fy_nbd_vddk_open(&o, &src);
	printf("  %s: %.1f s: %s\n", plugin, fy_now() - t0, fy_err_msg());
	if (rc != want || !strstr(fy_err_msg(), words) ||
	    (words2 && !strstr(fy_err_msg(), words2))) {
		fprintf(stderr, "want %d with '%s', got %d: %s\n", want, words,
			rc, fy_err_msg());
		check_failures++;
	}
	CHECK(src == NULL);
	/* Nothing left: no directory, no child (running or zombie). */
	private_dir(dir, sizeof(dir), &count);
	CHECK(count == 0);
	CHECK(waitpid(-1, &status, WNOHANG) < 0 && errno == ECHILD);
	fy_source_close(src);
}

static void test_failures(void)
{
	char script[700], args[800];
	FILE *f;

	expect_start_failure("file", "file=/nonexistent/disk.img", 10000,
			     -EIO, "nbdkit (file plugin) exited with status",
			     "/nonexistent/disk.img");
	expect_start_failure("no-such-plugin", "a=b", 10000, -EIO,
			     "nbdkit (no-such-plugin plugin) exited", NULL);
	/* A plugin that never gets ready: killed after the timeout. */
	snprintf(script, sizeof(script), "%s/hang.sh", work);
	f = fopen(script, "w");
	fprintf(f, "#!/bin/sh\ncase \"$1\" in\n"
		   "  config_complete) sleep 60 ;;\n"
		   "  get_size) echo 1048576 ;;\n"
		   "  *) exit 2 ;;\nesac\n");
	fclose(f);
	chmod(script, 0755);
	snprintf(args, sizeof(args), "script=%s", script);
	expect_start_failure("sh", args, 1000, -ETIMEDOUT,
			     "nbdkit (sh plugin) was not ready after 1 s", NULL);
	/* Bad extra arguments never reach nbdkit. */
	expect_start_failure("file", "file", 10000, -EINVAL,
			     "is not KEY=VALUE", NULL);
}

static void test_available(void)
{
	struct fy_nbd_vddk_opts o;
	char why[1024];

	fy_nbd_vddk_opts_default(&o);
	CHECK(!fy_nbd_vddk_available(&o, why, sizeof(why)));
	CHECK(strstr(why, "libDir is not set") != NULL);
	o.libdir = "/nonexistent/vddk";
	CHECK(!fy_nbd_vddk_available(&o, why, sizeof(why)));
	CHECK(strstr(why, "is not a directory") != NULL);
	/* The real plugin needs VDDK's library in libDir. */
	o.libdir = work;
	CHECK(!fy_nbd_vddk_available(&o, why, sizeof(why)));
	CHECK(strstr(why, "lib64/libvixDiskLib.so") != NULL);
	o.plugin = "file";
	CHECK(fy_nbd_vddk_available(&o, why, sizeof(why)));
	o.plugin = "no-such-plugin";
	CHECK(!fy_nbd_vddk_available(&o, why, sizeof(why)));
	CHECK(strstr(why, "cannot load its no-such-plugin plugin") != NULL);
	o.plugin = "file";
	o.nbdkit = "/nonexistent/nbdkit";
	CHECK(!fy_nbd_vddk_available(&o, why, sizeof(why)));
	CHECK(strstr(why, "is not installed") != NULL);
	printf("  %s\n", why);
}

static bool argv_has(const struct vddk_argv *a, const char *arg)
{
	unsigned i;

	for (i = 0; i < a->argc; i++)
		if (!strcmp(a->argv[i], arg))
			return true;
	return false;
}

/* What nbdkit's vddk plugin would be given. */
static void test_vddk_argv(void)
{
	struct fy_nbd_vddk_opts o;
	struct vddk_argv a;
	unsigned i, plugin_at = 0;

	fy_nbd_vddk_opts_default(&o);
	o.libdir = "/opt/vmware-vix-disklib-distrib";
	o.server = "https://vc.example.com:8443/sdk";
	o.user = "backup@vsphere.local";
	o.password_file = "/etc/ferry/vc.pw";
	o.thumbprint = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";
	o.vm_moref = "vm-42";
	o.snapshot_moref = "snapshot-7";
	o.file = "[ds1] web 01/web01.vmdk";
	o.transports = "nbdssl";
	o.plugin_args = "compression=zlib  unbuffered=true";
	CHECK_RC(vddk_build_argv(&o, "/tmp/d", &a));
	for (i = 0; i < a.argc; i++) {
		printf("  argv[%u] = %s\n", i, a.argv[i]);
		if (!strcmp(a.argv[i], "vddk"))
			plugin_at = i;
	}
	CHECK(!strcmp(a.argv[0], "nbdkit"));
	CHECK(argv_has(&a, "--readonly") && argv_has(&a, "--tls=off") &&
	      argv_has(&a, "--exit-with-parent"));
	CHECK(argv_has(&a, "--unix=/tmp/d/nbdkit.sock"));
	CHECK(argv_has(&a, "--pidfile=/tmp/d/nbdkit.pid"));
	CHECK(plugin_at > 0);
	CHECK(argv_has(&a, "libdir=/opt/vmware-vix-disklib-distrib"));
	CHECK(argv_has(&a, "server=vc.example.com"));
	CHECK(argv_has(&a, "port=8443"));
	CHECK(argv_has(&a, "user=backup@vsphere.local"));
	CHECK(argv_has(&a, "password=+/etc/ferry/vc.pw"));
	CHECK(argv_has(&a, "thumbprint=AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:"
			   "77:88:99:AA:BB:CC:DD"));
	CHECK(argv_has(&a, "vm=moref=vm-42"));
	CHECK(argv_has(&a, "snapshot=snapshot-7"));
	CHECK(argv_has(&a, "transports=nbdssl"));
	/* One argument, spaces and brackets included: no shell between. */
	CHECK(argv_has(&a, "file=[ds1] web 01/web01.vmdk"));
	CHECK(argv_has(&a, "compression=zlib") && argv_has(&a, "unbuffered=true"));
	CHECK(!strcmp(a.argv[a.argc - 1], "unbuffered=true"));
	vddk_argv_release(&a);

	/* No password file: the password goes to a file in the private
	 * directory, never on the command line. */
	o.password_file = NULL;
	o.password = "s3cret";
	o.server = "[fd00::5]";
	CHECK_RC(vddk_build_argv(&o, "/tmp/d", &a));
	CHECK(argv_has(&a, "password=+/tmp/d/password"));
	CHECK(argv_has(&a, "server=fd00::5"));
	for (i = 0; i < a.argc; i++)
		CHECK(strstr(a.argv[i], "s3cret") == NULL);
	vddk_argv_release(&a);

	/* VDDK's own keys (its InitEx list) go to VDDK in config=FILE. */
	{
		struct fy_config *cfg = fy_config_new();
		char text[4096];

		CHECK(cfg != NULL);
		CHECK(!argv_has(&a, "config=/tmp/d/vddk.cfg"));
		CHECK_RC(fy_config_set(cfg, "vixDiskLib.nfcFssrvr.TimeoutMs", "0"));
		CHECK_RC(fy_config_set(cfg, "vixDiskLib.nfcFssrvrWrite.TimeoutMs",
				       "600000"));
		CHECK_RC(fy_config_set(cfg, "ferry.blockSize", "65536"));
		o.cfg = cfg;
		CHECK(vddk_config_text(&o, text, sizeof(text)) > 0);
		printf("  vddk.cfg: %s", text);
		CHECK(strstr(text, "vixDiskLib.nfcFssrvr.TimeoutMs=\"0\"\n"));
		CHECK(strstr(text, "vixDiskLib.nfcFssrvrWrite.TimeoutMs="
				   "\"600000\"\n"));
		CHECK(!strstr(text, "ferry."));
		vddk_argv_release(&a);
		CHECK_RC(vddk_build_argv(&o, "/tmp/d", &a));
		CHECK(argv_has(&a, "config=/tmp/d/vddk.cfg"));
		CHECK(vddk_config_text(&o, text, 16) == -ENAMETOOLONG);
		o.cfg = NULL;
		fy_config_free(cfg);
	}
	vddk_argv_release(&a);
	CHECK_RC(vddk_build_argv(&o, "/tmp/d", &a));
	CHECK(argv_has(&a, "--readonly"));
	CHECK(!argv_has(&a, "--filter=exitlast"));
	vddk_argv_release(&a);

	/* Writing (restore-vm): no --readonly, and never a snapshot's disk. */
	o.writable = true;
	CHECK(o.snapshot_moref && vddk_build_argv(&o, "/tmp/d", &a) == -EINVAL);
	o.snapshot_moref = NULL;
	CHECK_RC(vddk_build_argv(&o, "/tmp/d", &a));
	CHECK(!argv_has(&a, "--readonly"));
	CHECK(argv_has(&a, "--filter=exitlast"));
	CHECK(!argv_has(&a, "snapshot=snapshot-7"));
	vddk_argv_release(&a);
	o.writable = false;

	/* A remote disk needs its VM. */
	o.vm_moref = NULL;
	CHECK(vddk_build_argv(&o, "/tmp/d", &a) == -EINVAL);
	/* A stand-in plugin gets its own arguments only. */
	o.plugin = "file";
	o.plugin_args = "file=/x";
	CHECK_RC(vddk_build_argv(&o, "/tmp/d", &a));
	CHECK(!strcmp(a.argv[a.argc - 2], "file"));
	CHECK(!strcmp(a.argv[a.argc - 1], "file=/x"));
	vddk_argv_release(&a);
}

int main(int argc, char **argv)
{
	size_t i;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
		return 2;
	}
	snprintf(work, sizeof(work), "%s", argv[1]);
	snprintf(tmp, sizeof(tmp), "%s/tmp", work);
	snprintf(disk, sizeof(disk), "%s/disk.img", work);
	mkdir(tmp, 0755);
	setenv("TMPDIR", tmp, 1);
	fy_log_set_level(FY_LOG_ERROR);

	data = malloc(disk_size);
	srand(11);
	for (i = 0; i < disk_size; i++)
		data[i] = (uint8_t)(rand() >> 5);
	fd = open(disk, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || fy_write_all(fd, data, disk_size) < 0)
		return 1;
	close(fd);

	test_vddk_argv();
	test_available();
	test_read_and_close();
	test_failures();
	free(data);
	CHECK_DONE();
}
