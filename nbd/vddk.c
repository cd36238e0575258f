/*
 * The VDDK path: nbdkit's vddk plugin (which needs VMware's proprietary
 * VDDK, installed by the admin) serves one disk of a VM on a Unix socket
 * only this process can reach, and the NBD client reads it.
 *
 *   nbdkit --exit-with-parent -r --tls=off -U DIR/nbdkit.sock
 *          -P DIR/nbdkit.pid vddk libdir=... server=... user=...
 *          password=+DIR/password thumbprint=... vm=moref=vm-42
 *          transports=nbdssl file='[ds1] vm/vm.vmdk'
 *
 * DIR is a fresh mkdtemp directory (0700): nobody else can connect to the
 * socket, so TLS would add nothing on it. nbdkit writes its pid file once
 * it accepts connections; until then we watch for it to exit (its log,
 * DIR/nbdkit.log, then says why) and give up after start_timeout_ms.
 * --exit-with-parent makes nbdkit die with us if we crash (Linux ties it
 * to the thread that started it, which is the caller's: open from a
 * thread that outlives the source). Closing the source sends SIGTERM,
 * waits, then SIGKILL, reaps the process and removes DIR.
 *
 * Depends on common only, and on this folder's NBD source.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "nbd/nbd.h"
#include "nbd/vddk_int.h"

extern char **environ;

#define LOG_TAIL 600
#define STOP_WAIT_MS 5000
#define DUMP_PLUGIN_WAIT_MS 10000
/* A writer's nbdkit closes the disk (VDDK completes its writes) and exits
 * by itself; this long at most. */
#define WRITER_EXIT_WAIT_MS 120000

struct vddk_source {
	struct fy_source base;
	struct fy_source *nbd;
	pid_t pid;
	char dir[256];
};

static const struct fy_source_ops vddk_nbd_ops, vddk_nbdssl_ops;

void fy_nbd_vddk_opts_default(struct fy_nbd_vddk_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->start_timeout_ms = 30000;
}

int fy_nbd_vddk_opts_from_config(struct fy_nbd_vddk_opts *o,
				 const struct fy_config *cfg)
{
	int64_t v;
	int rc;

	o->libdir = fy_config_get(cfg, "libDir");
	if (fy_config_get(cfg, "ferry.nbd.vddkPlugin"))
		o->plugin = fy_config_get(cfg, "ferry.nbd.vddkPlugin");
	o->plugin_args = fy_config_get(cfg, "ferry.nbd.vddkPluginArgs");
	if (fy_config_get(cfg, "ferry.nbd.nbdkit"))
		o->nbdkit = fy_config_get(cfg, "ferry.nbd.nbdkit");
	rc = fy_config_get_int(cfg, "ferry.nbd.vddkStartTimeoutSeconds",
			       o->start_timeout_ms ? o->start_timeout_ms / 1000
						   : 30,
			       1, 600, &v);
	if (rc < 0)
		return rc;
	o->start_timeout_ms = (unsigned)v * 1000;
	o->server = fy_config_get(cfg, "ferry.vcenter.server");
	o->user = fy_config_get(cfg, "ferry.vcenter.user");
	o->password_file = fy_config_get(cfg, "ferry.vcenter.passwordFile");
	if (!o->password_file)
		o->password = getenv("FERRY_VCENTER_PASSWORD");
	o->cfg = cfg;
	return 0;
}

/* VDDK's VixDiskLib_InitEx configuration keys as its documentation lists
 * them; what Ferry reads itself (timeouts of its NBD client, log level,
 * certificate checks) VDDK reads too. */
static const char *const vddk_keys[] = {
	"tmpDirectory",
	"vixDiskLib.transport.LogLevel",
	"vixDiskLib.disklib.EnableCache",
	"vixDiskLib.linuxSSL.verifyCertificates",
	"vixDiskLib.nfc.AcceptTimeoutMs",
	"vixDiskLib.nfc.RequestTimeoutMs",
	"vixDiskLib.nfc.ReadTimeoutMs",
	"vixDiskLib.nfc.ReadTimeoutsMs",
	"vixDiskLib.nfc.WriteTimeoutMs",
	"vixDiskLib.nfc.WriteTimeoutsMs",
	"vixDiskLib.nfcFssrvr.TimeoutMs",
	"vixDiskLib.nfcFssrvrWrite.TimeoutMs",
	"vixDiskLib.nfc.LogLevel",
	"vixDiskLib.nfcAio.Session.BufSizeIn64KB",
	"vixDiskLib.nfcAio.Session.BufCount",
	"vixDiskLib.transport.hotadd.NoNfcSession",
	"vixDiskLib.transport.san.blacklist",
	"vixDiskLib.transport.san.whitelist",
	NULL,
};

int vddk_config_text(const struct fy_nbd_vddk_opts *o, char *buf, size_t len)
{
	size_t n = 0, i;

	if (len)
		buf[0] = '\0';
	for (i = 0; o->cfg && vddk_keys[i]; i++) {
		const char *v = fy_config_get(o->cfg, vddk_keys[i]);
		int w;

		if (!v)
			continue;
		/* VDDK reads quotes off a value as Ferry does. */
		w = snprintf(buf + n, len - n, "%s=\"%s\"\n", vddk_keys[i], v);
		if (w < 0 || (size_t)w >= len - n)
			return fy_err_set(-ENAMETOOLONG, "vddk: VDDK's "
					  "configuration is over %zu bytes",
					  len);
		n += (size_t)w;
	}
	return (int)n;
}

static const char *plugin_of(const struct fy_nbd_vddk_opts *o)
{
	return o->plugin && *o->plugin ? o->plugin : "vddk";
}

static const char *nbdkit_of(const struct fy_nbd_vddk_opts *o)
{
	return o->nbdkit && *o->nbdkit ? o->nbdkit : "nbdkit";
}

static bool is_vddk(const struct fy_nbd_vddk_opts *o)
{
	return !strcmp(plugin_of(o), "vddk");
}

/* ---- the command line -------------------------------------------------- */

static int add_arg(struct vddk_argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int add_arg(struct vddk_argv *a, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	if (a->argc == VDDK_MAX_ARGS)
		return fy_err_set(-E2BIG, "vddk: more than %d nbdkit arguments",
				  VDDK_MAX_ARGS);
	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return fy_err_set(-ENOMEM, "out of memory");
	if (n >= VDDK_ARG_MAX) {
		free(s);
		return fy_err_set(-E2BIG, "vddk: an nbdkit argument is longer "
				  "than %d bytes", VDDK_ARG_MAX);
	}
	a->argv[a->argc++] = s;
	a->argv[a->argc] = NULL;
	return 0;
}

void vddk_argv_release(struct vddk_argv *a)
{
	unsigned i;

	for (i = 0; i < a->argc; i++)
		free(a->argv[i]);
	a->argc = 0;
	a->argv[0] = NULL;
}

/* "https://vc:8443/sdk", "vc:443", "[::1]:443", "vc" -> host, port. */
static int split_server(const char *server, char *host, size_t hostlen,
			char *port, size_t portlen)
{
	const char *h = strstr(server, "://"), *end, *colon = NULL;
	size_t n;

	h = h ? h + 3 : server;
	end = h + strcspn(h, "/?#");
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));

		if (!rb)
			return fy_err_set(-EINVAL, "vddk: server '%s': '[' "
					  "without ']'", server);
		if (rb + 1 < end && rb[1] == ':')
			colon = rb + 1;
		h++;
		n = (size_t)(rb - h);
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		n = (size_t)((colon ? colon : end) - h);
	}
	if (n == 0 || n >= hostlen)
		return fy_err_set(-EINVAL, "vddk: server '%s' has no usable host "
				  "name", server);
	memcpy(host, h, n);
	host[n] = '\0';
	port[0] = '\0';
	if (colon) {
		n = (size_t)(end - colon - 1);
		if (n == 0 || n >= portlen)
			return fy_err_set(-EINVAL, "vddk: server '%s' has a bad "
					  "port", server);
		memcpy(port, colon + 1, n);
		port[n] = '\0';
		for (n = 0; port[n]; n++)
			if (!isdigit((unsigned char)port[n]))
				return fy_err_set(-EINVAL, "vddk: server '%s' has "
						  "a bad port", server);
	}
	return 0;
}

int vddk_build_argv(const struct fy_nbd_vddk_opts *o, const char *dir,
		    struct vddk_argv *a)
{
	const char *p;
	int rc = 0;

	memset(a, 0, sizeof(*a));
#define ADD(...)                                                         \
	do {                                                             \
		if ((rc = add_arg(a, __VA_ARGS__)) < 0)                 \
			goto fail;                                       \
	} while (0)
	ADD("%s", nbdkit_of(o));
	ADD("--exit-with-parent");
	if (!o->writable)
		ADD("--readonly");
	ADD("--tls=off");
	ADD("--unix=%s/nbdkit.sock", dir);
	ADD("--pidfile=%s/nbdkit.pid", dir);
	/* A writer's nbdkit ends once the writer hangs up, after the
	 * plugin's close: that exit is what says the disk was closed. */
	if (o->writable)
		ADD("--filter=exitlast");
	ADD("%s", plugin_of(o));
	if (is_vddk(o)) {
		if (!o->libdir || !*o->libdir || !o->file || !*o->file) {
			rc = fy_err_set(-EINVAL, "vddk: libDir and the disk "
					"file are required");
			goto fail;
		}
		ADD("libdir=%s", o->libdir);
		if (o->server && *o->server) {
			char host[256], port[16];

			if ((rc = split_server(o->server, host, sizeof(host),
					       port, sizeof(port))) < 0)
				goto fail;
			if (!o->vm_moref || !*o->vm_moref) {
				rc = fy_err_set(-EINVAL, "vddk: a remote disk "
						"needs its VM (vm=moref=)");
				goto fail;
			}
			ADD("server=%s", host);
			if (port[0])
				ADD("port=%s", port);
			if (o->user && *o->user)
				ADD("user=%s", o->user);
			if (o->password_file && *o->password_file)
				ADD("password=+%s", o->password_file);
			else if (o->password)
				ADD("password=+%s/password", dir);
			if (o->thumbprint && *o->thumbprint)
				ADD("thumbprint=%s", o->thumbprint);
			ADD("vm=moref=%s", o->vm_moref);
		}
		if (o->snapshot_moref && *o->snapshot_moref) {
			if (o->writable) {
				/* A snapshot's disk is frozen: never written. */
				rc = fy_err_set(-EINVAL, "vddk: a snapshot's "
						"disk is not written");
				goto fail;
			}
			ADD("snapshot=%s", o->snapshot_moref);
		}
		if (o->transports && *o->transports)
			ADD("transports=%s", o->transports);
		ADD("file=%s", o->file);
		{
			char text[VDDK_CONFIG_MAX];

			if ((rc = vddk_config_text(o, text, sizeof(text))) < 0)
				goto fail;
			if (rc > 0)
				ADD("config=%s/vddk.cfg", dir);
		}
	}
	/* Extra arguments, blank-separated KEY=VALUE words. */
	for (p = o->plugin_args; p && *p;) {
		size_t n;

		while (*p == ' ' || *p == '\t')
			p++;
		n = strcspn(p, " \t");
		if (!n)
			break;
		if (!memchr(p, '=', n)) {
			rc = fy_err_set(-EINVAL, "ferry.nbd.vddkPluginArgs: '%.*s' "
					"is not KEY=VALUE", (int)(n < 64 ? n : 64),
					p);
			goto fail;
		}
		ADD("%.*s", (int)n, p);
		p += n;
	}
#undef ADD
	return 0;
fail:
	vddk_argv_release(a);
	return rc;
}

/* ---- processes --------------------------------------------------------- */

/* A fresh 0700 directory under $TMPDIR (or /tmp): mkdtemp's mode. */
static int private_dir(char *out, size_t outlen, const char *stem)
{
	const char *tmp = getenv("TMPDIR");

	if (!tmp || !*tmp || strlen(tmp) > 64)
		tmp = "/tmp";
	snprintf(out, outlen, "%s/%s.XXXXXX", tmp, stem);
	if (!mkdtemp(out)) {
		int rc = fy_err_set(-errno, "vddk: cannot create a directory "
				    "in %s: %s", tmp, strerror(errno));

		out[0] = '\0';
		return rc;
	}
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The last line(s) of a log file, for messages: at most LOG_TAIL bytes,
 * newlines turned into " | ". */
static void log_tail(const char *path, char *out, size_t outlen)
{
	char buf[LOG_TAIL + 1];
	ssize_t n = 0;
	off_t size;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t i, j = 0;

	out[0] = '\0';
	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	if (size > 0) {
		off_t from = size > LOG_TAIL ? size - LOG_TAIL : 0;

		n = pread(fd, buf, LOG_TAIL, from);
	}
	close(fd);
	if (n <= 0)
		return;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	for (i = 0; i < (size_t)n && j + 4 < outlen; i++) {
		if (buf[i] == '\n') {
			memcpy(out + j, " | ", 3);
			j += 3;
		} else if ((unsigned char)buf[i] >= 0x20) {
			out[j++] = buf[i];
		}
	}
	out[j] = '\0';
}

/* Whether pid has exited, without reaping it: while it is a zombie its
 * pid (and so its process group's id) cannot be reused. *status gets the
 * wait status when it has. */
static bool exited(pid_t pid, int *status)
{
	siginfo_t info;

	memset(&info, 0, sizeof(info));
	if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0)
		return errno == ECHILD;
	if (info.si_pid != pid)
		return false;
	*status = info.si_code == CLD_EXITED ? (info.si_status & 0xff) << 8
					       : info.si_status & 0x7f;
	return true;
}

/* Waits up to ms for pid to exit (not reaping it). */
static bool wait_exit(pid_t pid, long ms, int *status)
{
	double end = fy_now() + ms / 1000.0;

	for (;;) {
		if (exited(pid, status))
			return true;
		if (fy_now() >= end)
			return false;
		sleep_ms(10);
	}
}

/* nbdkit runs in a process group of its own (spawn): SIGTERM to the
 * group, a grace period, then SIGKILL to whatever is left of it (a
 * plugin's helper processes too), and the reaping. */
static void stop_child(pid_t pid)
{
	int status;

	if (pid <= 0)
		return;
	kill(-pid, SIGTERM);
	if (!wait_exit(pid, STOP_WAIT_MS, &status))
		fy_warn("vddk: nbdkit (pid %d) ignored SIGTERM for %d s; "
			"killing it", (int)pid, STOP_WAIT_MS / 1000);
	kill(-pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
}

/* Removes what we put in dir, then dir. Only our names: a stray file
 * keeps the directory, which is the safer failure. */
static void remove_dir(const char *dir)
{
	static const char *const names[] = { "nbdkit.sock", "nbdkit.pid",
					     "nbdkit.log", "password", "vddk.cfg" };
	char path[320];
	size_t i;

	if (!dir[0])
		return;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	if (rmdir(dir) < 0 && errno != ENOENT)
		fy_warn("vddk: cannot remove %s: %s", dir, strerror(errno));
}

/* Starts argv with stdin from /dev/null and stdout+stderr into log. */
static int spawn(char *const argv[], const char *log, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, deflt;
	int rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log,
					 O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	/* Our sockets and files are not nbdkit's business. */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	sigemptyset(&none);
	sigemptyset(&deflt);
	sigaddset(&deflt, SIGPIPE);
	sigaddset(&deflt, SIGTERM);
	sigaddset(&deflt, SIGINT);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &deflt);
	/* Its own process group, so that stopping it stops its helpers. */
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
						POSIX_SPAWN_SETSIGDEF |
						POSIX_SPAWN_SETPGROUP);
	rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc)
		return fy_err_set(-rc, "vddk: cannot start %s: %s", argv[0],
				  strerror(rc));
	return 0;
}

/* A program name without '/' is looked for in PATH. */
static bool find_program(const char *name, char *out, size_t outlen)
{
	const char *path = getenv("PATH");
	const char *p;

	if (strchr(name, '/')) {
		snprintf(out, outlen, "%s", name);
		return access(name, X_OK) == 0;
	}
	for (p = path ? path : "/usr/bin:/bin"; *p;) {
		size_t n = strcspn(p, ":");

		snprintf(out, outlen, "%.*s/%s", (int)n, n ? p : ".", name);
		if (access(out, X_OK) == 0)
			return true;
		p += n;
		if (*p == ':')
			p++;
	}
	return false;
}

static bool has_vddk_library(const char *libdir)
{
	char path[4096];
	struct dirent *de;
	bool found = false;
	DIR *d;

	snprintf(path, sizeof(path), "%s/lib64", libdir);
	d = opendir(path);
	if (!d)
		return false;
	while (!found && (de = readdir(d)))
		found = !strncmp(de->d_name, "libvixDiskLib.so",
				 strlen("libvixDiskLib.so"));
	closedir(d);
	return found;
}

bool fy_nbd_vddk_available(const struct fy_nbd_vddk_opts *o, char *why,
			   size_t whylen)
{
	char prog[4096], dir[256], log[320];
	char tail[LOG_TAIL + 64];
	char *argv[] = { prog, NULL, "--dump-plugin", NULL };
	struct stat sb;
	pid_t pid;
	int status = 0;
	bool ok = false;

	if (!o->libdir || !*o->libdir) {
		snprintf(why, whylen, "VDDK is not configured (libDir is not "
			 "set)");
		return false;
	}
	if (stat(o->libdir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		snprintf(why, whylen, "libDir %s is not a directory",
			 o->libdir);
		return false;
	}
	if (is_vddk(o) && !has_vddk_library(o->libdir)) {
		snprintf(why, whylen, "no VDDK in libDir %s "
			 "(lib64/libvixDiskLib.so* missing)", o->libdir);
		return false;
	}
	if (!find_program(nbdkit_of(o), prog, sizeof(prog))) {
		snprintf(why, whylen, "%s is not installed (Debian package "
			 "nbdkit)", nbdkit_of(o));
		return false;
	}
	if (private_dir(dir, sizeof(dir), "ferry-vddk-check") < 0) {
		snprintf(why, whylen, "%s", fy_err_msg());
		return false;
	}
	snprintf(log, sizeof(log), "%s/nbdkit.log", dir);
	argv[1] = (char *)plugin_of(o);
	if (spawn(argv, log, &pid) < 0) {
		snprintf(why, whylen, "%s", fy_err_msg());
		goto out;
	}
	if (!wait_exit(pid, DUMP_PLUGIN_WAIT_MS, &status)) {
		stop_child(pid);
		snprintf(why, whylen, "%s %s --dump-plugin did not finish in "
			 "%d s", prog, plugin_of(o), DUMP_PLUGIN_WAIT_MS / 1000);
		goto out;
	}
	stop_child(pid);
	ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (!ok) {
		log_tail(log, tail, sizeof(tail));
		snprintf(why, whylen, "nbdkit cannot load its %s plugin%s: %s",
			 plugin_of(o),
			 is_vddk(o) ? " (Debian package nbdkit-plugin-vddk)" : "",
			 tail[0] ? tail : "no message");
	}
out:
	unlink(log);
	rmdir(dir);
	return ok;
}

/* ---- the source -------------------------------------------------------- */

static int vddk_read(struct fy_source *src, void *buf, size_t len,
		     uint64_t offset)
{
	struct vddk_source *s = (struct vddk_source *)src;

	return fy_source_read(s->nbd, buf, len, offset);
}

static int vddk_read_batch(struct fy_source *src, struct fy_io *ios, size_t n)
{
	struct vddk_source *s = (struct vddk_source *)src;

	return fy_source_read_batch(s->nbd, ios, n);
}

static int vddk_extents(struct fy_source *src, uint64_t offset,
			uint64_t length, fy_extent_cb cb, void *opaque)
{
	struct vddk_source *s = (struct vddk_source *)src;

	return fy_source_extents(s->nbd, offset, length, cb, opaque);
}

static void vddk_close(struct fy_source *src)
{
	struct vddk_source *s = (struct vddk_source *)src;

	fy_source_close(s->nbd);
	stop_child(s->pid);
	remove_dir(s->dir);
	free(s);
}

static const struct fy_source_ops vddk_nbd_ops = {
	.name = "nbd",
	.read = vddk_read,
	.read_batch = vddk_read_batch,
	.extents = vddk_extents,
	.close = vddk_close,
};

static const struct fy_source_ops vddk_nbdssl_ops = {
	.name = "nbdssl",
	.read = vddk_read,
	.read_batch = vddk_read_batch,
	.extents = vddk_extents,
	.close = vddk_close,
};

/* Writes the password to dir/password (0600, in a 0700 directory). */
static int write_password(const char *dir, const char *password)
{
	char path[320];
	int fd, rc;

	snprintf(path, sizeof(path), "%s/password", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return fy_err_set(-errno, "vddk: cannot create %s: %s", path,
				  strerror(errno));
	rc = fy_write_all(fd, password, strlen(password));
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc < 0 ? fy_err_set(rc, "vddk: cannot write %s", path) : 0;
}

/* dir/vddk.cfg: VDDK's own keys for its InitEx, when any is set. */
static int write_vddk_config(const char *dir, const struct fy_nbd_vddk_opts *o)
{
	char path[320], text[VDDK_CONFIG_MAX];
	int fd, rc = vddk_config_text(o, text, sizeof(text));

	if (rc <= 0)
		return rc;
	snprintf(path, sizeof(path), "%s/vddk.cfg", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return fy_err_set(-errno, "vddk: cannot create %s: %s", path,
				  strerror(errno));
	rc = fy_write_all(fd, text, strlen(text));
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc < 0 ? fy_err_set(rc, "vddk: cannot write %s", path) : 0;
}

/* Waits until nbdkit wrote its pid file (it accepts connections then),
 * exited, or the time is up. */
static int wait_ready(struct vddk_source *s, const char *plugin,
		      unsigned timeout_ms)
{
	char pidfile[320], log[320], tail[LOG_TAIL + 64];
	double end = fy_now() + timeout_ms / 1000.0;
	struct stat sb;
	int status;

	snprintf(pidfile, sizeof(pidfile), "%s/nbdkit.pid", s->dir);
	snprintf(log, sizeof(log), "%s/nbdkit.log", s->dir);
	for (;;) {
		if (stat(pidfile, &sb) == 0 && sb.st_size > 0)
			return 0;
		if (exited(s->pid, &status)) {
			/* The fail path reaps it. */
			log_tail(log, tail, sizeof(tail));
			if (WIFEXITED(status))
				return fy_err_set(-EIO, "vddk: nbdkit (%s plugin) "
						  "exited with status %d at start: "
						  "%s", plugin, WEXITSTATUS(status),
						  tail[0] ? tail : "no message");
			return fy_err_set(-EIO, "vddk: nbdkit (%s plugin) died of "
					  "signal %d at start: %s", plugin,
					  WTERMSIG(status),
					  tail[0] ? tail : "no message");
		}
		if (fy_now() >= end) {
			log_tail(log, tail, sizeof(tail));
			return fy_err_set(-ETIMEDOUT, "vddk: nbdkit (%s plugin) was "
					  "not ready after %u s "
					  "(ferry.nbd.vddkStartTimeoutSeconds)%s%s",
					  plugin, timeout_ms / 1000,
					  tail[0] ? ": " : "", tail);
		}
		sleep_ms(20);
	}
}

/* Starts nbdkit for o in a fresh private directory and waits until it
 * serves; fills s->pid and s->dir, and uri and opts for reaching it. On
 * failure nothing is left running and the message is kept. */
static int vddk_start(const struct fy_nbd_vddk_opts *o, struct vddk_source *s,
		      char *uri, size_t urilen, struct fy_nbd_opts *no)
{
	struct vddk_argv argv = { 0 };
	char log[320];
	unsigned timeout = o->start_timeout_ms ? o->start_timeout_ms : 30000;
	int rc;

	/* 0700: the socket inside is ours alone. */
	rc = private_dir(s->dir, sizeof(s->dir), "ferry-vddk");
	if (rc < 0)
		goto fail;
	if (is_vddk(o) && o->server && *o->server && !o->password_file &&
	    o->password && (rc = write_password(s->dir, o->password)) < 0)
		goto fail;
	if (is_vddk(o) && (rc = write_vddk_config(s->dir, o)) < 0)
		goto fail;
	rc = vddk_build_argv(o, s->dir, &argv);
	if (rc < 0)
		goto fail;
	snprintf(log, sizeof(log), "%s/nbdkit.log", s->dir);
	rc = spawn(argv.argv, log, &s->pid);
	if (rc < 0)
		goto fail;
	fy_debug("vddk: started %s %s (pid %d) on %s/nbdkit.sock",
		 nbdkit_of(o), plugin_of(o), (int)s->pid, s->dir);
	rc = wait_ready(s, plugin_of(o), timeout);
	if (rc < 0)
		goto fail;
	vddk_argv_release(&argv);
	if (o->nbd)
		*no = *o->nbd;
	else
		fy_nbd_opts_default(no);
	no->tls_required = false;
	no->tls_ca = no->tls_cert = no->tls_key = no->tls_server_name = NULL;
	snprintf(uri, urilen, "nbd+unix:///?socket=%s/nbdkit.sock", s->dir);
	return 0;
fail:
	vddk_argv_release(&argv);
	{
		/* Keep the message: stopping may log. */
		char msg[FY_ERR_MAX];

		snprintf(msg, sizeof(msg), "%s", fy_err_msg());
		stop_child(s->pid);
		remove_dir(s->dir);
		s->pid = 0;
		return fy_err_set(rc, "%s", msg);
	}
}

/* What nbdkit logged, for an error about what it serves. */
static int vddk_wrap(struct vddk_source *s, const char *plugin, int rc,
		     const char *what)
{
	char tail[LOG_TAIL + 64], log[320], msg[FY_ERR_MAX];

	snprintf(log, sizeof(log), "%s/nbdkit.log", s->dir);
	log_tail(log, tail, sizeof(tail));
	rc = fy_err_wrap(rc, "vddk: %s what nbdkit (%s plugin) serves%s%s%s",
			 what, plugin, tail[0] ? " (its log: " : "",
			 tail[0] ? tail : "", tail[0] ? ")" : "");
	snprintf(msg, sizeof(msg), "%s", fy_err_msg());
	stop_child(s->pid);
	remove_dir(s->dir);
	return fy_err_set(rc, "%s", msg);
}

int fy_nbd_vddk_open(const struct fy_nbd_vddk_opts *o, struct fy_source **out)
{
	struct vddk_source *s;
	struct fy_nbd_opts no;
	char uri[512];
	int rc;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = vddk_start(o, s, uri, sizeof(uri), &no);
	if (rc < 0) {
		free(s);
		return rc;
	}
	rc = fy_nbd_source_open(uri, &no, &s->nbd);
	if (rc < 0) {
		rc = vddk_wrap(s, plugin_of(o), rc, "reading");
		free(s);
		return rc;
	}
	s->base.ops = o->transports && !strcmp(o->transports, "nbdssl")
			      ? &vddk_nbdssl_ops
			      : &vddk_nbd_ops;
	s->base.size = s->nbd->size;
	s->base.align = s->nbd->align;
	snprintf(s->base.name, sizeof(s->base.name), "%s",
		 o->file && *o->file ? o->file : s->nbd->name);
	*out = &s->base;
	return 0;
}

/* The writer's release: after a clean disconnect, nbdkit's own exit,
 * status 0, within WRITER_EXIT_WAIT_MS; otherwise (or after a broken
 * stream) it is stopped. Then its directory goes. */
static int vddk_writer_release(void *arg, bool clean)
{
	struct vddk_source *s = arg;
	char log[320], tail[LOG_TAIL + 64];
	int status, rc = 0;

	if (clean && wait_exit(s->pid, WRITER_EXIT_WAIT_MS, &status)) {
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			snprintf(log, sizeof(log), "%s/nbdkit.log", s->dir);
			log_tail(log, tail, sizeof(tail));
			rc = fy_err_set(-EIO, "vddk: nbdkit ended with %s %d "
					"after the writes: %s",
					WIFEXITED(status) ? "status" : "signal",
					WIFEXITED(status) ? WEXITSTATUS(status)
							  : WTERMSIG(status),
					tail[0] ? tail : "no message");
		}
	} else {
		if (clean)
			rc = fy_err_set(-ETIMEDOUT, "vddk: nbdkit did not exit "
					"%d s after the writes ended; the disk "
					"may not be closed",
					WRITER_EXIT_WAIT_MS / 1000);
		stop_child(s->pid);
	}
	remove_dir(s->dir);
	free(s);
	return rc;
}

int fy_nbd_vddk_open_writer(const struct fy_nbd_vddk_opts *o,
			    struct fy_nbd_writer **out)
{
	struct fy_nbd_vddk_opts wo = *o;
	struct vddk_source *s;
	struct fy_nbd_opts no;
	char uri[512];
	int rc;

	*out = NULL;
	wo.writable = true;
	s = calloc(1, sizeof(*s));
	if (!s)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = vddk_start(&wo, s, uri, sizeof(uri), &no);
	if (rc < 0) {
		free(s);
		return rc;
	}
	rc = fy_nbd_writer_open(uri, &no, out);
	if (rc < 0) {
		rc = vddk_wrap(s, plugin_of(o), rc, "writing");
		free(s);
		return rc;
	}
	fy_nbd_writer_set_release(*out, vddk_writer_release, s);
	return 0;
}
